"""``schema pull``: the apps' schemas and prices, read from the service into the project's schema store.

Each app is read with ``GET /apps/{namespace}/{name}`` (``api.schemapull``), compared with
what the project had (the same version pulled before, else the newest pulled, else the
bundled data) and written to ``<store>/<namespace>/<name>/<version>.json``. With
``--check`` nothing is written: the exit code says whether everything the project holds is
what the service serves now (0) or stale (1).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

from ..core.appstore import STORE_DIRNAME, STORE_ENV, SchemaStore, StoredApp, locate_store
from ..core.errors import UsageError
from ..core.schemadiff import app_changes, price_summary
from ..core.schemas import AppRef, known_apps, load_app, parse_app_ref, parse_pricing
from ..store.atomic import write_atomic
from ._backend import DEFAULT_BASE_URL, add_profile, backend, run_async
from ._exit import EXIT_FAILED, EXIT_OK
from ._flags import http_url

__all__ = ["add_schema_parser", "cmd_pull", "schema_store"]


def add_schema_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("schema", help="pull apps' schemas and prices from the service into the project's schema store")
    actions = p.add_subparsers(dest="schema_command", metavar="ACTION", required=True)
    q = actions.add_parser(
        "pull", help="read APP's current version from the service, show what changed, write it to the store",
        description="Read each APP's current version (schemas and price) from the service, print what changed "
                    "against what this project had, and write it to the schema store. --check writes nothing "
                    "and exits 1 when something the project holds is stale.")
    q.add_argument("apps", nargs="*", metavar="APP[@VERSION]",
                   help="namespace/name, e.g. klingai/video-o1 (with --check: default every app held)")
    q.add_argument("--check", action="store_true",
                   help="write nothing; exit 1 when a bundled or stored schema or price differs from the service's")
    q.add_argument("--emulator", action="store_true", help="ask the bundled emulator (no API key needed)")
    q.add_argument("--base-url", metavar="URL", type=http_url,
                   help=f"API endpoint (default: $INFERENCE_BASE_URL or {DEFAULT_BASE_URL})")
    add_profile(q)
    q.add_argument("--schemas", metavar="DIR",
                   help=f"the schema store (default: ${STORE_ENV}, else the nearest {STORE_DIRNAME}/ here or above, "
                        f"else ./{STORE_DIRNAME})")
    q.add_argument("--price-from", choices=("auto", "app", "estimate"), default="auto",
                   help="the price: from the app's price table (app), the estimate endpoint (estimate), or the "
                        "table when the app publishes one (auto, the default)")
    q.set_defaults(func=cmd_pull)


def schema_store(args: argparse.Namespace) -> SchemaStore:
    """``--schemas``, ``$KLING_PIPELINE_SCHEMAS``, the nearest ``kling-schemas/`` up from here, or a new one here."""
    if args.schemas:
        return SchemaStore(Path(args.schemas))
    return locate_store(Path.cwd()) or SchemaStore(Path(STORE_DIRNAME))


@dataclass(frozen=True, slots=True)
class _Held:
    """What the project had for an app: the description, and what it was."""

    app: StoredApp
    what: str


def _held(store: SchemaStore, ref: AppRef, version: str | None) -> _Held | None:
    stored = store.load(ref.name, version) if version else None
    if stored is None and ref.version is None:
        stored = store.newest(ref.name)
    if stored is not None:
        return _Held(stored, f"{_shown(store.file_for(stored.name, stored.version))}, read {stored.read_at}")
    if ref.name in known_apps():
        bundled = StoredApp.from_spec(load_app(ref.name))
        if ref.version in (None, bundled.version):
            return _Held(bundled, "the bundled data")
    return None


def _shown(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def _targets(args: argparse.Namespace, store: SchemaStore) -> list[AppRef]:
    try:
        refs = [parse_app_ref(text) for text in args.apps]
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if refs:
        return refs
    if not args.check:
        raise UsageError("schema pull: name the app(s) to pull, e.g. `kling-pipeline schema pull klingai/video-o1`")
    return [AppRef(name) for name in sorted({*store.apps(), *known_apps()})]


Pulled = tuple[AppRef, StoredApp | str, _Held | None]
"""An app as the service describes it now (or, for ``--check``, why it could not be read) and what the
project had of it."""


def cmd_pull(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from ..api.client import ClientPool
    from ..api.preflight import AppUnavailable
    from ..api.schemapull import pull_app

    store = schema_store(args)
    refs = _targets(args, store)
    now = datetime.now(UTC)
    with backend(args, err) as (base_url, key):

        async def main() -> list[Pulled]:
            found: list[Pulled] = []
            async with ClientPool(base_url, key, 1) as pool:
                for ref in refs:
                    earlier = _held(store, ref, ref.version)
                    try:
                        pulled = await pull_app(pool.api, base_url, ref, now=now, price_from=args.price_from,
                                                earlier=earlier.app if earlier else None)
                    except AppUnavailable as exc:
                        if not args.check:
                            raise
                        found.append((ref, str(exc), earlier))  # the project holds what the service has not
                        continue
                    found.append((ref, pulled, _held(store, ref, pulled.version)))
            return found

        results = run_async(main)
    if args.check:
        return _check(results, out)
    for _ref, pulled, held in results:
        assert isinstance(pulled, StoredApp)
        _write(store, pulled, held, out)
    return EXIT_OK


def _changes(pulled: StoredApp, held: _Held | None) -> list[str]:
    return [] if held is None else app_changes(held.app, pulled)


def _write(store: SchemaStore, pulled: StoredApp, held: _Held | None, out: TextIO) -> None:
    pricing = parse_pricing(pulled.pricing, pulled.input_schema)
    out.write(f"{pulled.name}@{pulled.version}: read from {pulled.read_from} (the current version)\n")
    out.write(f"  price: {price_summary(pricing)}, from the {pulled.price_from}\n")
    if held is None:
        out.write("  new: this project had no schema of it\n")
    else:
        changes = _changes(pulled, held)
        count = "no change" if not changes else f"{len(changes)} change{'s' if len(changes) != 1 else ''}"
        out.write(f"  against version {held.app.version} in {held.what}: {count}\n")
        for line in changes:
            out.write(f"    {line}\n")
    new_store = not store.root.is_dir()
    path = store.file_for(pulled.name, pulled.version)
    write_atomic(path, pulled.encode(), durable=True)
    made = f" (a new schema store: set {STORE_ENV} or keep recipes in this directory or below)" if new_store else ""
    out.write(f"  wrote {_shown(path)}{made}\n")
    out.write(f"  use it: app: {pulled.name}@{pulled.version}\n")


def _check(results: list[Pulled], out: TextIO) -> int:
    stale = 0
    for ref, pulled, held in results:
        if isinstance(pulled, str):
            stale += 1
            out.write(f"{ref.name}: STALE — {pulled}\n")
            continue
        if held is None:
            stale += 1
            out.write(f"{ref.name}: STALE — this project has no schema of it (the service's current version is "
                      f"{pulled.version})\n")
            continue
        changes = _changes(pulled, held)
        if held.app.version != pulled.version:
            stale += 1
            out.write(f"{ref.name}: STALE — the service's current version is {pulled.version}; this project has "
                      f"version {held.app.version} in {held.what}:\n")
        elif changes:
            stale += 1
            out.write(f"{ref.name}: STALE — version {pulled.version} changed at the service since {held.what}:\n")
        else:
            out.write(f"{ref.name}: current (version {pulled.version} in {held.what})\n")
        out.writelines(f"    {line}\n" for line in changes)
    n = len(results)
    apps = f"{n} app{'s' if n != 1 else ''}"
    out.write(f"schema check: {stale} of {apps} stale; `kling-pipeline schema pull APP` updates one\n" if stale
              else f"schema check: {apps} current\n")
    return EXIT_FAILED if stale else EXIT_OK
