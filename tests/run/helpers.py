"""Reading what a run left behind: the manifest, the images, the emulator's ledger."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from pathlib import Path
from typing import Any

from kling_pipeline.store.journal import read_raw, read_records
from kling_pipeline.store.state import ManifestState


def manifest(out: Path) -> ManifestState:
    return ManifestState.replay(read_records(out / "manifest.jsonl"))


def records(out: Path, kind: str | None = None) -> list[dict[str, Any]]:
    """The manifest's lines as written (JSON objects), of one kind."""
    rs = read_raw(out / "manifest.jsonl")
    return [r for r in rs if kind is None or r.get("t") == kind]


def charges_per_prompt(ledger: dict[str, Any]) -> Counter[str]:
    return Counter(str(c["input"]["prompt"]) for c in ledger["charges"])


def completed_outputs_intact(out: Path) -> int:
    """Every completed job's images exist with the recorded sha256; returns how many images."""
    n = 0
    for job in manifest(out):
        if job.state != "completed":
            continue
        assert job.done is not None
        for item in job.done.outputs:
            data = (out / item.path).read_bytes()
            assert hashlib.sha256(data).hexdigest() == item.sha256, item.path
            side = json.loads((out / item.sidecar).read_text())
            assert side["sha256"] == item.sha256
            assert side["task_id"] == job.task_id
            n += 1
    return n
