"""``prune``: the files of jobs the recipe no longer has — listed, and removed with ``--yes``.

Only files the manifest says such a job saved are candidates, and only while they are still
what was saved (same size and sha256) and no job of the recipe recorded the same path. The
manifest is not touched: it is append-only, so the spend of pruned jobs stays in it and keeps
counting against the budget cap. Jobs whose task may still be running, or whose submit is
unresolved, are left alone (a run still follows them).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from ..core.money import format_usd, usd_decimal
from ..core.planning import Plan
from ..store.journal import MANIFEST_NAME, read_records
from ..store.lock import OutputLock
from ..store.state import JobState, ManifestState
from ._exit import EXIT_OK
from ._flags import add_max_jobs
from ._plan import make_plan
from ._report import report_after_run

__all__ = ["add_prune_parser", "cmd_prune", "find_prunable"]

PRUNE_FORMAT = "kling-pipeline.prune/1"


@dataclass(frozen=True, slots=True)
class Candidate:
    job: JobState
    files: tuple[tuple[str, int], ...]  # (path relative to the output directory, size) to remove
    kept: tuple[tuple[str, str], ...]  # (path, why it stays)


def add_prune_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("prune", help="list (and with --yes remove) the files of jobs no longer in the recipe; "
                                     "their spend stays in the manifest")
    p.add_argument("recipe", metavar="RECIPE")
    p.add_argument("--out", metavar="DIR", help="output directory (default: the recipe's output.dir)")
    p.add_argument("--yes", action="store_true", help="remove the files listed (default: only list them)")
    p.add_argument("--json", action="store_true", help="one JSON document (format kling-pipeline.prune/1)")
    add_max_jobs(p)
    p.set_defaults(func=cmd_prune, only=[], budget=None)


def _inside(out_dir: Path, rel: str) -> Path | None:
    """``out_dir/rel`` when it stays inside ``out_dir`` (a hand-edited manifest cannot aim elsewhere)."""
    if not rel or os.path.isabs(rel) or ".." in Path(rel).parts or "\x00" in rel:
        return None
    path = out_dir / rel
    real_dir, real = os.path.realpath(out_dir), os.path.realpath(path)
    return path if os.path.commonpath([real_dir, real]) == real_dir and real != real_dir else None


def _same(path: Path, size: int, sha256: str) -> bool:
    try:
        if not path.is_file() or path.is_symlink() or path.stat().st_size != size:
            return False
        digest = hashlib.sha256()
        with path.open("rb") as fh:
            while chunk := fh.read(1 << 20):
                digest.update(chunk)
    except OSError:
        return False
    return digest.hexdigest() == sha256


def _sidecar_matches(path: Path, sha256: str) -> bool:
    try:
        return bool(json.loads(path.read_text(encoding="utf-8")).get("sha256") == sha256)
    except (OSError, ValueError, AttributeError):
        return False


def _current_keys(plan: Plan, state: ManifestState) -> set[str]:
    """The keys of the recipe's jobs; for a pipeline, with the real keys of the downstream jobs
    made from the upstream results it has (a downstream job's key has its upstream file's hash,
    so one made from a draft that has since changed is no longer current)."""
    keys = {j.key for j in plan.jobs}
    if plan.stages:
        from ..run.options import RunOptions
        from ..run.session import decide_run

        _, downstream = decide_run(plan, state, RunOptions())
        if downstream is not None:
            keys.update(downstream.chain.real_keys().values())
    return keys


def find_prunable(plan: Plan, state: ManifestState) -> tuple[list[Candidate], list[JobState]]:
    """The jobs of the manifest that ``plan`` no longer has, with the files of theirs that may go;
    and those left alone because a task of theirs may still run or their submit is unresolved."""
    out_dir = plan.output_dir
    current = _current_keys(plan, state)
    protected = {p for key in current if (j := state.jobs.get(key)) is not None and j.done is not None
                 for o in j.done.outputs for p in (o.path, o.sidecar)}
    candidates, busy = [], []
    for job in state:
        if job.key in current:
            continue
        if job.in_flight or job.unresolved:
            busy.append(job)
            continue
        files: list[tuple[str, int]] = []
        kept: list[tuple[str, str]] = []
        for o in job.done.outputs if job.done is not None else ():
            path = _inside(out_dir, o.path)
            if path is None:
                kept.append((o.path, "outside the output directory"))
            elif o.path in protected:
                kept.append((o.path, "a job of the recipe saved a file there too"))
            elif not path.exists():
                continue  # gone already
            elif not _same(path, o.size, o.sha256):
                kept.append((o.path, "changed since it was saved"))
            else:
                files.append((o.path, o.size))
                side = _inside(out_dir, o.sidecar) if o.sidecar else None
                if side is not None and o.sidecar not in protected and _sidecar_matches(side, o.sha256):
                    files.append((o.sidecar, side.stat().st_size))
        if files or kept or job.billed:
            candidates.append(Candidate(job, tuple(files), tuple(kept)))
    return candidates, busy


def _remove(out_dir: Path, candidates: list[Candidate]) -> None:
    dirs: set[Path] = set()
    for c in candidates:
        for rel, _size in c.files:
            path = out_dir / rel
            path.unlink(missing_ok=True)
            dirs.update(p for p in path.parents if p != out_dir and out_dir in p.parents)
    for d in sorted(dirs, key=lambda p: len(p.parts), reverse=True):  # empty folders the files were in
        try:
            d.rmdir()
        except OSError:
            pass


def _document(plan: Plan, candidates: list[Candidate], busy: list[JobState], removed: bool) -> dict[str, Any]:
    return {
        "format": PRUNE_FORMAT,
        "recipe": plan.recipe.file,
        "out_dir": str(plan.output_dir),
        "removed": removed,
        "jobs": [{"id": c.job.job_id, "key": c.job.key, "status": c.job.state, "billed_usd": usd_decimal(c.job.billed),
                  "files": [{"path": p, "size": s} for p, s in c.files],
                  "kept": [{"path": p, "why": why} for p, why in c.kept]} for c in candidates],
        "left_alone": [{"id": j.job_id, "key": j.key, "state": j.state} for j in busy],
        "totals": {"files": sum(len(c.files) for c in candidates),
                   "bytes": sum(s for c in candidates for _p, s in c.files),
                   "billed_usd": usd_decimal(sum(c.job.billed for c in candidates))},
    }


def _size(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 100_000 else f"{n / 1e3:.1f} kB"


def _lines(plan: Plan, candidates: list[Candidate], busy: list[JobState], removed: bool) -> list[str]:
    out_dir, recipe = plan.output_dir, plan.recipe.file
    shown = [c for c in candidates if c.files or c.kept]
    bare = [c for c in candidates if not (c.files or c.kept)]
    spent = format_usd(sum(c.job.billed for c in bare))
    gone = (f"{len(bare)} job{'s' if len(bare) != 1 else ''} no longer in {recipe} "
            f"{'have' if len(bare) != 1 else 'has'} no files left (spend {spent}, still counted against the cap)")
    if not shown and not busy:
        why = gone if bare else f"every job in the manifest is in {recipe}"
        return [f"{out_dir}: nothing to prune: {why}"]
    lines = [f"{out_dir}: {len(shown)} job{'s' if len(shown) != 1 else ''} no longer in {recipe} "
             f"{'have' if len(shown) != 1 else 'has'} files here"]
    for c in shown:
        files = ", ".join(p for p, _s in c.files) or "nothing to remove"
        lines.append(f"  {c.job.job_id}  {c.job.key[:10]}  {c.job.state}  {format_usd(c.job.billed)}  {files}")
        lines += [f"    kept {p}: {why}" for p, why in c.kept]
    for j in busy:
        lines.append(f"  left alone: {j.job_id} ({j.key[:10]}): its task may still be running or its submit is "
                     "unresolved; a run follows it")
    if bare:
        lines.append(f"  and {gone}")
    count = sum(len(c.files) for c in shown)
    size = _size(sum(s for c in shown for _p, s in c.files))
    spend = format_usd(sum(c.job.billed for c in shown))
    verb = "removed" if removed else "would remove"
    lines.append(f"{verb} {count} file{'s' if count != 1 else ''} ({size}); their spend ({spend}) stays in the "
                 "manifest and still counts against the budget cap")
    if not removed and count:
        lines.append(f"run again with --yes to remove them: kling-pipeline prune {recipe} --yes")
    return lines


def cmd_prune(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    plan = make_plan(args)
    manifest = plan.output_dir / MANIFEST_NAME
    state = ManifestState.replay(read_records(manifest)) if manifest.is_file() else ManifestState()
    removed = False
    if args.yes and plan.output_dir.is_dir():
        with OutputLock(plan.output_dir):  # no run writes here meanwhile
            state = ManifestState.replay(read_records(manifest)) if manifest.is_file() else ManifestState()
            candidates, busy = find_prunable(plan, state)
            _remove(plan.output_dir, candidates)
            removed = True
        if any(c.files for c in candidates) and (plan.output_dir / "report.html").is_file():
            report_after_run(plan, err)  # the gallery no longer shows them
    else:
        candidates, busy = find_prunable(plan, state)
    if args.json:
        out.write(json.dumps(_document(plan, candidates, busy, removed), indent=2) + "\n")
    else:
        for line in _lines(plan, candidates, busy, removed):
            out.write(line + "\n")
    return EXIT_OK
