"""Reading what a run left behind: the manifest, the images, the emulator's ledger."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from conftest import TEST_KEY

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


def spawn_run(path: Path, base_url: str, *extra: str) -> subprocess.Popen[str]:
    """``kling-pipeline run`` in a process of its own (to kill it or send it Ctrl-C)."""
    env = {**os.environ, "INFERENCE_API_KEY": TEST_KEY, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "kling_pipeline", "run", str(path), "--base-url", base_url, *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )


def wait_for(condition: Callable[[], bool], proc: subprocess.Popen[str], timeout: float = 30.0) -> None:
    """Until ``condition()`` holds, while ``proc`` still runs."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the run did not get there in time"
        time.sleep(0.05)
