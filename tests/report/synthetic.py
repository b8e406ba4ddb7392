"""A synthetic 20,000-job sweep written as a run leaves it: a manifest and one real PNG per completed
job, every PNG different (thumbnails are named by content) yet cheap to make (4x4 pixels)."""

from __future__ import annotations

import hashlib
import json
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .conftest import ATTR_SUBJECT, SCRIPT_SUBJECT

SUBJECTS = (SCRIPT_SUBJECT, ATTR_SUBJECT, *(f"subject {i:03d}" for i in range(2, 100)))
STYLES = tuple(f"style {i:02d}" for i in range(20))
RATIOS = ("16:9", "9:16", "1:1", "4:3", "3:4", "3:2", "2:3", "21:9", "5:4", "4:5")
PRICE = 2_800_000
BROKEN = 3  # this job's image is not an image


def png(seed: int) -> bytes:
    raw = (b"\x00" + bytes((seed & 255, (seed >> 8) & 255, 77)) * 4) * 4

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", 4, 4, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw, 1)) + chunk(b"IEND", b"")


def outcome(i: int) -> str:
    return "failed" if i % 50 == 7 else "in_flight" if i % 100 == 13 else "completed"


@dataclass
class Job:
    index: int
    id: str
    key: str
    labels: dict[str, str]
    path: str  # of its image, relative to the output directory (a space and a '#' in it)


@dataclass
class Synthetic:
    out_dir: Path
    jobs: list[Job]
    in_flight: list[Job] = field(default_factory=list)

    def job(self, index: int) -> Job:
        return self.jobs[index]

    def completed(self) -> list[Job]:
        return [j for j in self.jobs if outcome(j.index) == "completed"]

    def finish_in_flight(self) -> None:
        """The jobs in flight complete: their images are written, then their ``done`` records."""
        with (self.out_dir / "manifest.jsonl").open("a", encoding="utf-8") as fh:
            for job in self.in_flight:
                fh.write(json.dumps(self._done(job, "completed")) + "\n")

    def _done(self, job: Job, status: str) -> dict[str, Any]:
        record: dict[str, Any] = {"t": "done", "key": job.key, "job": job.id, "task": f"task{job.index:06d}",
                                  "status": status, "billed_microcents": PRICE if status == "completed" else 0,
                                  "outputs": [], "error": None}
        if status == "completed":
            data = b"broken" if job.index == BROKEN else png(job.index)
            (self.out_dir / job.path).parent.mkdir(parents=True, exist_ok=True)
            (self.out_dir / job.path).write_bytes(data)
            record["outputs"] = [{"path": job.path, "sha256": hashlib.sha256(data).hexdigest(), "size": len(data),
                                  "content_type": "image/png"}]
        else:
            record["error"] = "Kling task failed: <b>provider</b> error"
        return record


def write_sweep(out_dir: Path) -> Synthetic:
    out_dir.mkdir(parents=True)
    sweep = Synthetic(out_dir, [])
    lines = [json.dumps({"t": "run", "recipe": "synthetic.yaml", "app": "klingai/image-o1@0pbaxv40",
                         "cap_microcents": PRICE * 20_000, "at": 1_790_000_000})]
    for s, subject in enumerate(SUBJECTS):
        for t, style in enumerate(STYLES):
            for r, ratio in enumerate(RATIOS):
                i = len(sweep.jobs)
                job = Job(i, f"s{s}-t{t}-r{r}", hashlib.sha256(b"%d" % i).hexdigest(),
                          {"subject": subject, "style": style, "ratio": ratio}, f"r{r} #/{i:05d} img.png")
                sweep.jobs.append(job)
                lines.append(json.dumps({
                    "t": "intent", "key": job.key, "job": job.id, "attempt": 1, "reserved_microcents": PRICE,
                    "input": {"prompt": f"A {subject} in {style}, {ratio}", "aspect_ratio": ratio},
                    "combination": job.labels, "repeat_index": 0}))
                lines.append(json.dumps({"t": "accepted", "key": job.key, "task": f"task{i:06d}"}))
                if outcome(i) == "in_flight":
                    sweep.in_flight.append(job)
                else:
                    lines.append(json.dumps(sweep._done(job, outcome(i))))
    (out_dir / "manifest.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return sweep
