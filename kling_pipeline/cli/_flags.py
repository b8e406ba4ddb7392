"""Flag values checked where argparse reads them: a bad value is a usage error (exit 2, one
line), never a traceback, a retry loop or a silently accepted nonsense."""

from __future__ import annotations

import argparse
import math
from urllib.parse import urlsplit

from ..core.money import parse_usd
from ..core.sweep import DEFAULT_MAX_JOBS

__all__ = ["add_max_job_usd", "add_max_jobs", "http_url", "job_count", "port", "positive_number", "seconds",
           "usd_amount"]


def _number(text: str, what: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{what}, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{what}, got {text!r}")
    return value


def seconds(text: str) -> float:
    """A duration in seconds: a finite number >= 0."""
    value = _number(text, "expected a number of seconds >= 0")
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a number of seconds >= 0, got {text!r}")
    return value


def positive_number(text: str) -> float:
    value = _number(text, "expected a number > 0")
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}")
    return value


def http_url(text: str) -> str:
    """An ``http://`` or ``https://`` URL with a host."""
    try:
        parts = urlsplit(text.strip())
        parts.port  # noqa: B018 - raises ValueError for a port out of range
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a valid URL: {text!r}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise argparse.ArgumentTypeError(f"expected an http:// or https:// URL, got {text!r}")
    return text.strip()


def port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number (0-65535), got {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port number (0-65535), got {text!r}")
    return value


def job_count(text: str) -> int:
    digits = text.strip().replace(",", "").replace("_", "")
    if digits.isdigit() and len(digits) > 18:
        return 10**18  # more jobs than any machine plans: no limit
    try:
        value = int(digits)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of jobs: {text[:40]!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def add_max_jobs(p: argparse.ArgumentParser) -> None:
    p.add_argument("--max-jobs", type=job_count, metavar="N",
                   help=f"refuse a sweep of more than N jobs, counted before it is expanded "
                        f"(default {DEFAULT_MAX_JOBS:,})")


def usd_amount(text: str) -> int:
    """A dollar amount (``0.50``, ``$2``), in microcents."""
    try:
        return parse_usd(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_max_job_usd(p: argparse.ArgumentParser) -> None:
    p.add_argument("--max-job-usd", type=usd_amount, metavar="USD",
                   help="the most one job may cost: reserved for each job of an app whose price is unknown; "
                        "a job that may cost more is an error")
