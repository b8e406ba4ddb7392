"""records: every kind of manifest record round-trips through its JSON line, and manifests
written by earlier versions (fewer fields, dict-built records) still read and replay."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kling_pipeline.store.journal import read_records
from kling_pipeline.store.records import (
    AcceptedRecord,
    AdoptedRecord,
    DoneRecord,
    IntentRecord,
    NotCreatedRecord,
    OutputEntry,
    Record,
    RunEndRecord,
    RunRecord,
    UnknownRecord,
    UploadRecord,
    encode,
    parse,
)
from kling_pipeline.store.state import ManifestState

EVERY_KIND: list[Record] = [
    RunRecord("r1", "r.yaml", "/abs/r.yaml", ("r.yaml", "base.yaml"), {"commit": "abc", "dirty": False},
              "klingai/image-o1@0pbaxv40", 50_000_000, "kling-pipeline 0.1.0", 42, "detach", "tok", at=1.5),
    IntentRecord("k" * 64, "mug-noir", 2, {"prompt": "a mug", "image": "inf://f1"}, 2_800_000, 1, "mug-noir_k_0",
                 {"subject": "mug", "style": "noir"}, 3, {"image": {"sha256": "ff", "uri": "inf://f1"}}, "r1",
                 "klingai/image-o1", "http://hook?kp=t&job=k", at=2.5),
    AcceptedRecord("k", "task-1", at=3.5),
    AdoptedRecord("k", "task-1", "webhook", at=4.5),
    UnknownRecord("k", "submit: no answer in time", at=5.5),
    NotCreatedRecord("k", "HTTP 422", at=6.5),
    UploadRecord("ff" * 32, "inf://f1", "ref.png", at=7.5),
    DoneRecord("k", "mug-noir", "task-1", "completed", 2_800_000, None,
               (OutputEntry("a.png", "00" * 32, 123, "image/png", "http://f/a", "a.png.json"),), 1,
               {"image": "http://f/a"}, at=8.5),
    DoneRecord("k", "mug-noir", "task-2", "completed", 2_800_000, "download failed: HTTP 500",
               raw_output={"image": "x"}, download_pending=True, at=9.5),
    DoneRecord("k", "mug-noir", "task-2", "completed", 0, None, (), redownload=True, at=10.5),
    DoneRecord("k", "mug-noir", "task-3", "failed", 0, "1303: concurrency limit", at=11.5),
    RunEndRecord("r1", 3, 12.25, {"completed": 3, "not_run": 7}, 8_400_000, 8_400_000, 19_600_000, "budget",
                 None, ("run", "r.yaml", "--budget", "0.10"), at=12.5),
    RunEndRecord("r2", None, 0.5, {"failed": 1}, 0, 8_400_000, 0, "fatal", "the API key was refused", at=13.5),
]


@pytest.mark.parametrize("record", EVERY_KIND, ids=lambda r: f"{r.T}")
def test_each_kind_round_trips_through_its_line(record: Record) -> None:
    line = encode(record)
    assert line.endswith(b"\n") and b"\n" not in line[:-1]
    assert json.loads(line)["t"] == record.T
    assert parse(json.loads(line)) == record


def test_unknown_kinds_and_records_missing_their_key_are_skipped() -> None:
    assert parse({"t": "checkpoint", "key": "k"}) is None
    assert parse({"t": "accepted", "key": "k"}) is None  # no task id: meaningless
    assert parse({"key": "k"}) is None


OLD_MANIFEST = [  # as the version before typed records wrote them: dicts, optional fields left out
    {"t": "run", "run": "a1", "recipe": "r.yaml", "app": "klingai/image-o1@0pbaxv40", "cap_microcents": 10_000_000,
     "at": 1.0},
    {"t": "upload", "sha256": "ab", "uri": "inf://up", "file": "ref.png", "at": 1.5},
    {"t": "intent", "key": "k1", "job": "one", "attempt": 1, "input": {"prompt": "p1"},
     "reserved_microcents": 2_800_000, "units": 1, "output": "one_k1_0", "combination": {"s": "one"}, "at": 2.0},
    {"t": "accepted", "key": "k1", "task": "t1", "at": 2.1},
    {"t": "done", "key": "k1", "job": "one", "task": "t1", "status": "completed", "billed_microcents": 2_800_000,
     "outputs": [{"path": "one_k1_0.png", "sha256": "cd", "size": 10, "content_type": "image/png",
                  "uri": "http://f", "sidecar": "one_k1_0.png.json"}], "raw_output": {"image": "http://f"},
     "error": None, "at": 3.0},
    {"t": "intent", "key": "k2", "reserved_microcents": 2_800_000, "input": {"prompt": "p2"}, "at": 4.0},
    {"t": "unknown", "key": "k2", "reason": "lost", "at": 4.1},
    {"t": "intent", "key": "k3", "job": "three", "reserved_microcents": 5_600_000, "at": 5.0},
    {"t": "not_created", "key": "k3", "reason": "HTTP 422", "at": 5.1},
]


def test_a_manifest_written_by_the_earlier_version_still_replays(tmp_path: Path) -> None:
    path = tmp_path / "manifest.jsonl"
    path.write_bytes(b"".join(json.dumps(r).encode() + b"\n" for r in OLD_MANIFEST))
    state = ManifestState.replay(read_records(path))
    assert {k: j.state for k, j in state.jobs.items()} == {"k1": "completed", "k2": "unknown", "k3": "not_created"}
    one = state.jobs["k1"]
    assert one.done is not None and one.done.outputs[0].path == "one_k1_0.png"
    assert one.intent is not None and one.intent.combination == {"s": "one"}
    two = state.jobs["k2"]
    assert two.intent is not None and (two.intent.job, two.intent.output, two.intent.attempt) == ("k2", "k2", 1)
    assert (state.settled, state.reserved) == (2_800_000, 2_800_000)
    assert state.uploads == {"ab": "inf://up"}
    assert state.runs[0].cap_microcents == 10_000_000


def test_a_run_end_is_folded_by_run_id_and_older_manifests_simply_have_none(tmp_path: Path) -> None:
    path = tmp_path / "manifest.jsonl"
    path.write_bytes(b"".join(json.dumps(r).encode() + b"\n" for r in OLD_MANIFEST))
    assert ManifestState.replay(read_records(path)).ends == {}
    end = RunEndRecord("a1", 0, 2.0, {"completed": 1}, 2_800_000, 2_800_000, at=3.5)
    with path.open("ab") as fh:
        fh.write(encode(end))
    state = ManifestState.replay(read_records(path))
    assert state.ends == {"a1": end}
    assert (state.settled, state.reserved) == (2_800_000, 2_800_000)  # an end record moves no money


def test_a_run_end_written_with_fields_missing_still_reads() -> None:
    assert parse({"t": "run_end", "run": "a1"}) == RunEndRecord("a1", None, 0.0, {}, 0, 0, 0, "", None, (), 0.0)
    assert parse({"t": "run_end"}) is None  # no run id: meaningless
