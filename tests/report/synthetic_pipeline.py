"""A synthetic pipeline's output directory, written as a run leaves it: draft -> refine -> animate.

Each draft is refined in ``finishes``; each glossy refinement is animated. Its records are
shuffled (with a seed) job by job, so that a chain's jobs are scattered over the manifest as
they are when many run at once; each job's own records stay in order. Markup is in a subject
and in the prompts; one refinement fails, one animation is still in flight, and one
refinement names an upstream job the manifest does not have (an orphan).
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .conftest import SCRIPT_SUBJECT
from .synthetic import png

PRICE = 2_800_000
VIDEO_PRICE = 42_000_000
MISSING_UPSTREAM = "f" * 64


@dataclass
class PJob:
    stage: str
    id: str
    key: str
    labels: dict[str, str]
    parent: PJob | None
    outcome: str  # completed | failed | in_flight
    path: str = ""  # its output, relative to the output directory
    seed: int = 0
    kids: list[PJob] = field(default_factory=list)

    @property
    def prompt(self) -> str:
        return f"{self.stage} of {self.id} & <b>bold</b>"


@dataclass
class SyntheticPipeline:
    out_dir: Path
    jobs: list[PJob]

    def stage(self, name: str) -> list[PJob]:
        return [j for j in self.jobs if j.stage == name]

    def roots(self) -> list[PJob]:
        return [j for j in self.jobs if j.parent is None]

    def job(self, stage: str, job_id: str) -> PJob:
        (found,) = [j for j in self.jobs if j.stage == stage and j.id == job_id]
        return found

    def finish(self, job: PJob) -> None:
        """A job in flight completes: its file, then its ``done`` record, appended."""
        job.outcome = "completed"
        with (self.out_dir / "manifest.jsonl").open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(_done(self.out_dir, job)) + "\n")


def _key(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in text).strip("_") or "x"


def build(drafts: int, finishes: tuple[str, ...] = ("matte", "glossy")) -> list[PJob]:
    subjects = [SCRIPT_SUBJECT, *(f"subject {i:03d}" for i in range(1, drafts))][:drafts]
    jobs: list[PJob] = []
    for d, subject in enumerate(subjects):
        draft = PJob("draft", f"d{d:03d}-{_slug(subject)}", _key(f"draft {d}"), {"subject": subject}, None,
                     "completed", seed=len(jobs))
        jobs.append(draft)
        for finish in finishes:
            refine = PJob("refine", f"{draft.id}-{finish}", _key(f"refine {d} {finish}"),
                          {"draft": draft.id, "finish": finish}, draft, "completed", seed=len(jobs))
            draft.kids.append(refine)
            jobs.append(refine)
            if finish == "glossy":
                animate = PJob("animate", refine.id, _key(f"animate {d}"), {"refine": refine.id}, refine,
                               "completed", seed=len(jobs))
                refine.kids.append(animate)
                jobs.append(animate)
    return jobs


def write_pipeline(out_dir: Path, drafts: int = 6, seed: int = 7, *, faults: bool = True) -> SyntheticPipeline:
    out_dir.mkdir(parents=True)
    jobs = build(drafts)
    for job in jobs:
        job.path = f"{job.stage}/{job.id}_{job.key[:10]}_0.{'mp4' if job.stage == 'animate' else 'png'}"
    if faults:
        jobs[1].outcome = "failed"  # the first draft's matte refinement
        next(j for j in jobs if j.stage == "animate").outcome = "in_flight"
        orphan = PJob("refine", "lost-glossy", _key("orphan"), {"draft": "lost", "finish": "glossy"}, None,
                      "completed", seed=len(jobs))
        orphan.path = f"refine/{orphan.id}_0.png"
        jobs.append(orphan)
    # a random order in which each job comes after the job it was made from (as a run writes them)
    rng, ready, lines = random.Random(seed), [j for j in jobs if j.parent is None], [json.dumps(
        {"t": "run", "recipe": "chain.yaml", "app": "klingai/image-o1@0pbaxv40", "cap_microcents": 500_000_000,
         "at": 1_790_000_000})]
    while ready:
        job = ready.pop(rng.randrange(len(ready)))
        lines += [json.dumps(r) for r in _records(out_dir, job)]
        ready += job.kids
    (out_dir / "manifest.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return SyntheticPipeline(out_dir, jobs)


def _records(out_dir: Path, job: PJob) -> list[dict[str, Any]]:
    video = job.stage == "animate"
    intent: dict[str, Any] = {
        "t": "intent", "key": job.key, "job": job.id, "attempt": 1, "stage": job.stage,
        "app": "klingai/video-o1@ef28809a" if video else "klingai/image-o1@0pbaxv40",
        "reserved_microcents": VIDEO_PRICE if video else PRICE, "input": {"prompt": job.prompt},
        "combination": job.labels, "repeat_index": 0, "files": {}}
    if job.stage != "draft":
        up = job.parent
        upstream = {"stage": up.stage, "job": up.id, "key": up.key, "task": f"task-{up.key[:8]}"} if up else \
            {"stage": "draft", "job": "lost", "key": MISSING_UPSTREAM, "task": "task-lost"}
        intent["files"] = {"image": {"source": up.path if up else "draft/lost.png", "sha256": "0" * 64,
                                     "upstream": upstream}}
    records = [intent, {"t": "accepted", "key": job.key, "task": f"task-{job.key[:8]}"}]
    if job.outcome != "in_flight":
        records.append(_done(out_dir, job))
    return records


def _done(out_dir: Path, job: PJob) -> dict[str, Any]:
    video = job.stage == "animate"
    record: dict[str, Any] = {"t": "done", "key": job.key, "job": job.id, "task": f"task-{job.key[:8]}",
                              "status": job.outcome, "outputs": [], "error": None,
                              "billed_microcents": 0 if job.outcome != "completed" else VIDEO_PRICE if video else PRICE}
    if job.outcome == "completed":
        data = b"\x00\x00\x00\x18ftypmp42" + job.key.encode() if video else png(job.seed + 1)
        path = out_dir / job.path
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        record["outputs"] = [{"path": job.path, "sha256": hashlib.sha256(data).hexdigest(), "size": len(data),
                              "content_type": "video/mp4" if video else "image/png"}]
    else:
        record["error"] = "Kling task failed: <b>provider</b> error"
    return record
