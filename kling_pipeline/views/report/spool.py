"""A sort that does not hold what it sorts: (key, line) pairs go to disk in sorted runs of ``run_size``
and come back merged (``heapq.merge``), so memory holds one run while adding and one line per run
while reading. Keys are strings that sort as the order wanted (see ``grid.sort_key``)."""

from __future__ import annotations

import heapq
from collections.abc import Iterator
from pathlib import Path

__all__ = ["Spool"]

RUN_SIZE = 4096


class Spool:
    def __init__(self, workdir: Path, name: str, run_size: int = RUN_SIZE) -> None:
        self.workdir = workdir
        self.name = name
        self.run_size = run_size
        self._buffer: list[tuple[str, str]] = []
        self._runs: list[Path] = []

    def add(self, key: str, line: str) -> None:
        """``line`` must hold no newline; ``key`` no tab or newline."""
        self._buffer.append((key, line))
        if len(self._buffer) >= self.run_size:
            self._spill()

    def _spill(self) -> None:
        path = self.workdir / f"{self.name}-{len(self._runs):05d}.run"
        self._buffer.sort()
        with path.open("w", encoding="ascii") as fh:
            fh.writelines(f"{key}\t{line}\n" for key, line in self._buffer)
        self._buffer = []
        self._runs.append(path)

    def __iter__(self) -> Iterator[tuple[str, str]]:
        """Everything added, in key order (a key's lines in the order added), once."""
        self._buffer.sort()
        tail, self._buffer = self._buffer, []
        if not self._runs:
            yield from tail
            return
        files = [path.open("r", encoding="ascii") for path in self._runs]
        try:
            streams = [_pairs(fh) for fh in files]
            yield from heapq.merge(*streams, iter(tail))
        finally:
            for fh in files:
                fh.close()
            for path in self._runs:
                path.unlink(missing_ok=True)
            self._runs = []


def _pairs(lines: Iterator[str]) -> Iterator[tuple[str, str]]:
    for text in lines:
        key, _, line = text.rstrip("\n").partition("\t")
        yield key, line
