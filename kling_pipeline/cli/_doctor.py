"""``doctor``: check the setup without spending — the config file and profile, where the key
comes from, whether the API answers and accepts the key, whether its answers carry rate-limit
headers, and for each recipe given: that it is valid, that the service has its pinned app
version, and that the bundled prices agree with the service's estimates. Reads only."""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal, TextIO

from ..api.apierrors import ApiError, AuthFailed, TransportError
from ..api.client import ClientPool, Secret, Timeouts
from ..api.preflight import AppUnavailable, check_app
from ..api.pricecheck import check_prices
from ..config.connection import Connection, choose_profile
from ..config.profiles import PROFILE_ENV, ConfigError, load_config
from ..core.errors import KlingError, RecipeError, UsageError
from ..core.money import format_usd
from ..core.planning import Plan
from ._backend import add_profile, backend, connect, run_async
from ._exit import EXIT_FAILED, EXIT_OK
from ._flags import add_max_jobs, http_url
from ._plan import plan_for_cli

__all__ = ["add_doctor_parser", "cmd_doctor"]

DOCTOR_FORMAT = "kling-pipeline.doctor/1"
Status = Literal["ok", "warn", "fail", "skip"]


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    status: Status
    detail: str


def add_doctor_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("doctor", help="check the setup without spending: config, key, API, rate limits, "
                                      "pinned app versions and prices of the recipes given")
    p.add_argument("recipes", nargs="*", metavar="RECIPE", help="recipes whose app versions and prices to check")
    p.add_argument("--emulator", action="store_true", help="check against the bundled emulator")
    p.add_argument("--base-url", metavar="URL", type=http_url, help="the API endpoint to check")
    add_profile(p)
    add_max_jobs(p)
    p.add_argument("--json", action="store_true", help="one JSON document (format kling-pipeline.doctor/1)")
    p.set_defaults(func=cmd_doctor)


def _config_check(args: argparse.Namespace) -> Check:
    try:
        config = load_config(os.environ)
    except ConfigError as exc:
        return Check("config", "fail", str(exc))
    if not config.exists:
        return Check("config", "ok", f"no config file at {config.path} (optional: profiles, see docs/config.md)")
    names = ", ".join(config.profiles) or "none"
    try:
        chosen, explicit = choose_profile(config, args.profile, os.environ)
    except ConfigError as exc:
        return Check("config", "fail", str(exc))
    using = "; no profile in use" if chosen is None else f"; using {chosen.name}" + (
        " (--profile)" if explicit else f" (${PROFILE_ENV})" if os.environ.get(PROFILE_ENV) else " (default)")
    return Check("config", "ok", f"{config.path}: profiles {names}{using}")


@contextlib.contextmanager
def _endpoint(args: argparse.Namespace, err: TextIO, checks: list[Check]) -> Iterator[tuple[str, Secret] | None]:
    """The base URL and key to check (None when there are none: the failed check says why)."""
    if args.emulator:
        with backend(args, err) as (base_url, key):
            checks.append(Check("key", "ok", "the bundled emulator takes any key (nothing is billed)"))
            yield base_url, key
        return
    try:
        conn: Connection = connect(args)
    except (ConfigError, UsageError) as exc:
        checks.append(Check("key", "fail", str(exc)))
        yield None
        return
    checks.append(Check("key", "ok", f"from {conn.key_from}; base URL {conn.base_url} (from {conn.base_url_from})"))
    yield conn.base_url, conn.key


def _plans(args: argparse.Namespace, checks: list[Check]) -> list[Plan]:
    plans = []
    limits = {} if args.max_jobs is None else {"max_jobs": args.max_jobs}
    for path in args.recipes:
        try:
            p = plan_for_cli(path, **limits)
        except RecipeError as exc:
            checks.append(Check(path, "fail", f"invalid recipe ({exc.total} error{'s' if exc.total != 1 else ''}): "
                                              f"`kling-pipeline validate {path}` lists them"))
            continue
        checks.append(Check(path, "ok", f"valid: {len(p.jobs):,} job{'s' if len(p.jobs) != 1 else ''}, "
                                        f"{format_usd(p.total_cost)}"))
        plans.append(p)
    return plans


async def _service_checks(base_url: str, key: Secret, plans: list[Plan]) -> list[Check]:
    checks: list[Check] = []
    async with ClientPool(base_url, key, 2, timeouts=Timeouts(connect=5.0, request=15.0)) as pool:
        since = (dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)).isoformat()
        t0 = time.monotonic()
        try:
            await pool.api.list_tasks(since, limit=1)
        except AuthFailed as exc:
            checks.append(Check("api", "ok", f"{base_url} answered"))
            checks.append(Check("key accepted", "fail", str(exc)))
            return checks
        except TransportError as exc:
            checks.append(Check("api", "fail", f"{base_url} cannot be reached: {exc}"))
            return checks
        except ApiError as exc:
            checks.append(Check("api", "fail", f"{base_url} answered with an error: {exc}"))
            return checks
        checks.append(Check("api", "ok", f"{base_url} answered in {time.monotonic() - t0:.2f} s"))
        checks.append(Check("key accepted", "ok", "the task listing answered (lost submits can be reconciled)"))
        seen: set[str] = set()
        for p in plans:
            ref = str(p.recipe.app)
            if ref in seen:
                continue
            seen.add(ref)
            checks.extend(await _app_checks(pool, p))
        reads = pool.pacing.reads.state
        if reads.limit is not None:
            checks.append(Check("rate limits", "ok", f"the answers carry X-RateLimit-* headers: {reads.limit} reads "
                                                     f"a window, {reads.remaining} left"))
        else:
            checks.append(Check("rate limits", "warn", "no X-RateLimit-* headers on the answers: a run learns the "
                                                       "service's limits from its 429s instead"))
    return checks


async def _app_checks(pool: ClientPool, p: Plan) -> list[Check]:
    ref = p.recipe.app
    name = f"app {ref}"
    try:
        await check_app(pool.api, ref)
    except AppUnavailable as exc:
        return [Check(name, "fail", str(exc))]
    except ApiError as exc:
        return [Check(name, "fail", f"the app could not be read: {exc}")]
    if ref.version is None:
        out = [Check(name, "warn", "not pinned: the service runs whatever version is current")]
    else:
        out = [Check(name, "ok", "the service has this version")]
    try:
        prices = await check_prices(p, pool.api)
    except ApiError as exc:
        return [*out, Check(f"prices of {ref.name}", "fail", f"the estimate endpoint failed: {exc}")]
    for c in prices:
        status: Status = "ok" if c.agrees else "warn" if c.theirs is None else "fail"
        out.append(Check(f"prices of {ref.name}", status, c.line().removeprefix("price check, ")))
    return out


def cmd_doctor(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    checks = [_config_check(args)]
    plans = _plans(args, checks)
    with _endpoint(args, err, checks) as endpoint:
        if endpoint is not None:
            base_url, key = endpoint

            async def main() -> list[Check]:
                return await _service_checks(base_url, key, plans)

            try:
                checks.extend(run_async(main))
            except KlingError as exc:  # anything else the service said: a failed check, not a crash
                checks.append(Check("api", "fail", str(exc)))
        else:
            checks.append(Check("api", "skip", "no key: the service was not asked"))
    if not args.recipes:
        checks.append(Check("recipes", "skip", "none given: `kling-pipeline doctor RECIPE...` also checks their "
                                               "pinned app versions and prices"))
    failed = sum(1 for c in checks if c.status == "fail")
    warned = sum(1 for c in checks if c.status == "warn")
    if args.json:
        doc = {"format": DOCTOR_FORMAT, "healthy": not failed,
               "checks": [{"check": c.name, "status": c.status, "detail": c.detail} for c in checks]}
        out.write(json.dumps(doc, indent=2) + "\n")
    else:
        for c in checks:
            mark = {"ok": "ok  ", "warn": "warn", "fail": "FAIL", "skip": "skip"}[c.status]
            out.write(f"{mark}  {c.name}: {c.detail}\n")
        notes = f" ({warned} warning{'s' if warned != 1 else ''})" if warned else ""
        out.write(f"NOT healthy: {failed} check{'s' if failed != 1 else ''} failed{notes}\n" if failed
                  else f"healthy{notes}\n")
    return EXIT_FAILED if failed else EXIT_OK
