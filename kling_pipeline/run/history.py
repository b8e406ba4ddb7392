"""How a run ended, as its last manifest record (``store.records.RunEndRecord``): the history
that ``runs`` and ``status`` read.

The caller says how it was started (``RunEnding``: the command line, and how a summary
maps to its exit code); ``end_record`` adds what the run did. Words of the command line
that are URLs lose their credentials and query (a webhook's token, a password in a
base URL) before they are written.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

from ..store.records import RunEndRecord
from .budget import LedgerSnapshot
from .outcome import RunSummary

__all__ = ["RunEnding", "end_record", "redact_word"]


def redact_word(word: str) -> str:
    """``word``, or when it holds a URL, that URL without user, password, query and fragment."""
    head, sep, value = word.partition("=") if word.startswith("--") else ("", "", word)
    if "://" not in value:
        return word
    try:
        parts = urlsplit(value)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return f"{head}{sep}<url>"
    netloc = f"{host}{port}" if parts.username is None and parts.password is None else f"…@{host}{port}"
    query = "…" if parts.query else ""
    return f"{head}{sep}{urlunsplit((parts.scheme, netloc, parts.path, query, ''))}"


@dataclass(frozen=True, slots=True)
class RunEnding:
    """What the starter of a run adds to its end record."""

    flags: tuple[str, ...] = ()  # the command line (already redacted: see ``of``)
    exit_code: Callable[[RunSummary], int] | None = None  # None: not a command (a run from Python)

    @classmethod
    def of(cls, words: Iterable[str], exit_code: Callable[[RunSummary], int] | None = None) -> RunEnding:
        return cls(tuple(redact_word(w) for w in words), exit_code)


def end_record(run_id: str, summary: RunSummary, ledger: LedgerSnapshot, seconds: float,
               ending: RunEnding | None = None) -> RunEndRecord:
    """The record of how run ``run_id`` ended, from its summary and the ledger at its end."""
    ending = ending or RunEnding()
    return RunEndRecord(
        run=run_id, exit_code=None if ending.exit_code is None else ending.exit_code(summary),
        seconds=round(seconds, 3), counts=dict(sorted(summary.counts.items())),
        billed_microcents=summary.spent_this_run, settled_microcents=ledger.settled,
        not_run_microcents=summary.not_run_cost, stop=summary.stop_reason,
        error=None if summary.fatal is None else str(summary.fatal), flags=ending.flags)
