"""The store: reading manifest lines, the writer threads, replaying typed records, and the output-directory lock."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from kling_pipeline.store.journal import FileWrite, Journal, ManifestError, read_raw, read_records
from kling_pipeline.store.lock import LockError, OutputLock
from kling_pipeline.store.records import (
    AcceptedRecord,
    AdoptedRecord,
    DoneRecord,
    IntentRecord,
    NotCreatedRecord,
    OutputEntry,
    RunRecord,
    UnknownRecord,
    UploadRecord,
    encode,
)
from kling_pipeline.store.state import JobState, ManifestState

DONE = DoneRecord("k", "job", "t1", "failed", 0, "boom", at=1.0)


def lines(*records: dict[str, Any]) -> bytes:
    return b"".join(encode(r) for r in records)


# --- read_raw: the lines as written ----------------------------------------------------------------------

def test_missing_manifest_is_empty(tmp_path: Path) -> None:
    assert read_raw(tmp_path / "manifest.jsonl") == []


def test_records_in_order_blank_and_non_object_lines_skipped(tmp_path: Path) -> None:
    path = tmp_path / "manifest.jsonl"
    path.write_bytes(lines({"t": "run", "n": 1}) + b"\n   \n[1, 2]\n\"text\"\n" + lines({"t": "intent", "n": "\u00e9"}))
    assert read_raw(path) == [{"t": "run", "n": 1}, {"t": "intent", "n": "\u00e9"}]


@pytest.mark.parametrize("tail", [b'{"t": "done", "key": "k', b"{", b"\x00\x00\x00"])
def test_truncated_last_line_is_ignored_and_repaired(tmp_path: Path, tail: bytes) -> None:
    path = tmp_path / "manifest.jsonl"
    good = lines({"t": "intent", "key": "k"}, {"t": "accepted", "key": "k", "task": "t1"})
    path.write_bytes(good + tail)
    expected = [{"t": "intent", "key": "k"}, {"t": "accepted", "key": "k", "task": "t1"}]
    assert read_raw(path) == expected
    assert path.read_bytes() == good + tail  # reading alone never changes the file
    assert read_raw(path, repair=True) == expected
    assert path.read_bytes() == good  # trimmed: the next append starts on a line of its own
    assert read_raw(path, repair=True) == expected


def test_a_file_that_is_only_a_cut_line(tmp_path: Path) -> None:
    path = tmp_path / "manifest.jsonl"
    path.write_bytes(b'{"t": "int')
    assert read_raw(path, repair=True) == []
    assert path.read_bytes() == b""


def test_corrupt_middle_line_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "manifest.jsonl"
    path.write_bytes(lines({"t": "run"}, {"t": "intent"}) + b"{oops}\n" + lines({"t": "accepted"}))
    with pytest.raises(ManifestError) as info:
        read_raw(path, repair=True)
    assert str(info.value) == (
        f"{path}:3: corrupt manifest line (not JSON); the file was changed by hand? "
        "Move it away to start over (spend recorded in it is then forgotten)")
    assert info.value.__cause__ is None


def test_unreadable_manifest(tmp_path: Path) -> None:
    path = tmp_path / "manifest.jsonl"
    path.mkdir()
    with pytest.raises(ManifestError, match=r"manifest\.jsonl: cannot read the manifest: Is a directory$"):
        read_raw(path)


# --- Journal ----------------------------------------------------------------------------------------------------

@pytest.fixture
def fsyncs(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, bytes]]:
    """Every fsync of the manifest module: (fd, what the file held at that moment)."""
    calls: list[tuple[int, bytes]] = []
    real = os.fsync

    def spy(fd: int) -> None:
        target = Path(os.readlink(f"/proc/self/fd/{fd}"))
        calls.append((fd, target.read_bytes() if target.is_file() else b""))
        real(fd)

    monkeypatch.setattr(os, "fsync", spy)  # the manifest module's os
    return calls


@pytest.mark.anyio
async def test_append_returns_once_the_record_is_synced(tmp_path: Path, fsyncs: list[tuple[int, bytes]]) -> None:
    path = tmp_path / "out" / "manifest.jsonl"
    journal = Journal(path)
    try:
        record = IntentRecord("k", "job", 1, {"prompt": "p"}, 2_800_000, at=1.0)
        line = encode(record)
        await journal.append(record)
        # when append returned, the line had been written and the file fsync'd with it
        assert (journal._fd, line) in fsyncs
        assert path.read_bytes() == line
    finally:
        journal.close()
    assert read_records(path) == [record]


def test_post_queues_flush_writes_in_order(tmp_path: Path) -> None:
    path = tmp_path / "manifest.jsonl"
    journal = Journal(path)
    try:
        for i in range(200):
            journal.post(AcceptedRecord(f"k{i}", f"t{i}"))
        journal.append_now(IntentRecord("last", "job", 1, {}, 0))
        journal.flush()
        records = read_raw(path)
    finally:
        journal.close()
    assert [r["key"] for r in records] == [f"k{i}" for i in range(200)] + ["last"]


def test_files_are_written_with_their_record(tmp_path: Path) -> None:
    out = tmp_path / "out"
    spilled = tmp_path / "out" / ".a.png.part"
    spilled.parent.mkdir()
    spilled.write_bytes(b"spilled image")
    journal = Journal(out / "manifest.jsonl")
    try:
        journal.post(DONE, [FileWrite(out / "sub" / "a.png", source=spilled),
                                                  FileWrite(out / "sub" / "a.png.json", b'{"sha256": "x"}\n'),
                                                  FileWrite(out / "b.png", b"in memory")])
        journal.flush()
        assert (out / "sub" / "a.png").read_bytes() == b"spilled image"
        assert not spilled.exists()
        assert (out / "sub" / "a.png.json").read_bytes() == b'{"sha256": "x"}\n'
        assert (out / "b.png").read_bytes() == b"in memory"
        assert sorted(p.name for p in out.rglob("*")) == ["a.png", "a.png.json", "b.png", "manifest.jsonl", "sub"]
    finally:
        journal.close()


def test_close_writes_everything_queued(tmp_path: Path) -> None:
    path = tmp_path / "manifest.jsonl"
    journal = Journal(path)
    run = RunRecord("r1", at=1.0)
    journal.post(run, [FileWrite(tmp_path / "x.png", b"x")])
    journal.post(DONE)
    journal.close()
    assert read_records(path) == [run, DONE]
    assert (tmp_path / "x.png").read_bytes() == b"x"
    with pytest.raises(ManifestError, match=r"^the manifest is closed$"):
        journal.post(DONE)


def test_appending_to_an_existing_manifest(tmp_path: Path) -> None:
    path = tmp_path / "manifest.jsonl"
    path.write_bytes(lines({"t": "run", "run": "r0"}))
    journal = Journal(path)
    journal.append_now(RunRecord("r1"))
    journal.close()
    assert [r["run"] for r in read_raw(path)] == ["r0", "r1"]


def test_records_are_compact_json_lines() -> None:
    record = {"t": "intent", "prompt": "caf\u00e9 \u2603"}
    assert encode(record) == '{"t":"intent","prompt":"caf\u00e9 \u2603"}\n'.encode()
    with pytest.raises(ValueError, match=r"Out of range float values are not JSON compliant"):
        encode({"x": float("nan")})


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
@pytest.mark.anyio
async def test_a_write_error_surfaces_as_manifest_error(tmp_path: Path) -> None:
    path = tmp_path / "manifest.jsonl"
    path.symlink_to("/dev/full")  # every write: ENOSPC (works as root too)
    journal = Journal(path)
    message = f"{path}: cannot write the manifest: No space left on device"
    try:
        with pytest.raises(ManifestError) as info:
            await journal.append(IntentRecord("k", "job", 1, {}, 0))
        assert str(info.value) == message
        with pytest.raises(ManifestError, match=r"^" + message + "$"):
            journal.post(AcceptedRecord("k", "t"))
        with pytest.raises(ManifestError, match=r"^" + message + "$"):
            journal.append_now(IntentRecord("k2", "job", 1, {}, 0))
    finally:
        with pytest.raises(ManifestError, match=r"^" + message + "$"):
            journal.close()  # the failure is raised again: a run never ends "fine" over a gap
    journal.close()  # closing twice is harmless


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_a_posted_record_that_fails_is_reported_by_flush(tmp_path: Path) -> None:
    path = tmp_path / "manifest.jsonl"
    path.symlink_to("/dev/full")
    journal = Journal(path)
    try:
        journal.post(DONE)
        with pytest.raises(ManifestError, match=r"cannot write the manifest: No space left on device$"):
            journal.flush()
    finally:
        with pytest.raises(ManifestError, match=r"cannot write the manifest: No space left on device$"):
            journal.close()


def test_a_posted_record_that_fails_after_the_last_flush_is_reported_by_close(tmp_path: Path) -> None:
    path = tmp_path / "manifest.jsonl"
    path.symlink_to("/dev/full")
    journal = Journal(path)
    journal.post(DONE)
    with pytest.raises(ManifestError, match=r"cannot write the manifest: No space left on device$"):
        journal.close()


def test_a_file_that_cannot_be_written_surfaces_as_manifest_error(tmp_path: Path) -> None:
    (tmp_path / "blocker").write_bytes(b"a file where a directory should be")
    journal = Journal(tmp_path / "manifest.jsonl")
    target = tmp_path / "blocker" / "a.png"
    try:
        journal.post(DONE, [FileWrite(target, b"img")])
        with pytest.raises(ManifestError) as info:
            journal.flush()
        assert str(info.value).startswith(f"{target}: cannot write: ")
        with pytest.raises(ManifestError):
            journal.post(DONE)
    finally:
        with pytest.raises(ManifestError):
            journal.close()


def test_a_manifest_that_cannot_be_created(tmp_path: Path) -> None:
    (tmp_path / "blocker").write_bytes(b"a file where the output directory should be")
    path = tmp_path / "blocker" / "manifest.jsonl"
    with pytest.raises(ManifestError) as info:
        Journal(path)
    assert str(info.value).startswith(f"{path}: cannot open the manifest: ")


# --- replay -----------------------------------------------------------------------------------------------------

def intent(key: str, reserved: int = 2_800_000, attempt: int = 1) -> IntentRecord:
    return IntentRecord(key, f"job-{key}", attempt, {"prompt": key}, reserved)


def done(key: str, status: str, billed: int = 0, task: str | None = None, **kw: Any) -> DoneRecord:
    return DoneRecord(key, kw.pop("job", ""), task, status, billed, **kw)


def test_replay_each_transition() -> None:
    state = ManifestState()
    state.apply(intent("k", attempt=1))
    j = state.jobs["k"]
    assert (j.state, j.reserved, j.attempts, j.job_id, j.task_id) == ("intent", 2_800_000, 1, "job-k", None)
    assert (j.unresolved, j.in_flight, j.terminal) == (True, False, False)

    state.apply(UnknownRecord("k", "submit: no answer in time (ReadTimeout)"))
    assert (j.state, j.error, j.reserved, j.unresolved) == ("unknown", "submit: no answer in time (ReadTimeout)",
                                                             2_800_000, True)

    state.apply(AdoptedRecord("k", "t1", "listing"))
    assert (j.state, j.task_id, j.task_ids, j.in_flight, j.unresolved) == ("submitted", "t1", ["t1"], True, False)

    state.apply(done("k", "completed", 2_800_000, "t1", outputs=(OutputEntry("a.png", "00", 3),)))
    assert (j.state, j.billed, j.reserved, j.terminal, j.error) == ("completed", 2_800_000, 0, True, None)
    assert j.done is not None and j.done.outputs == (OutputEntry("a.png", "00", 3),)


def test_replay_not_created_releases_the_reservation() -> None:
    state = ManifestState.replay([intent("k"), NotCreatedRecord("k", "HTTP 422")])
    j = state.jobs["k"]
    assert (j.state, j.reserved, j.error, j.terminal, j.unresolved) == ("not_created", 0, "HTTP 422", False, False)
    assert state.reserved == 0


def test_replay_retries_accumulate() -> None:
    state = ManifestState.replay([
        intent("k", attempt=1), AcceptedRecord("k", "t1"), done("k", "failed", 0, "t1", error="1303 limit"),
        intent("k", attempt=2), AcceptedRecord("k", "t2"), done("k", "failed", 1_000, "t2", error="boom"),
        intent("k", attempt=3), AcceptedRecord("k", "t3"), done("k", "completed", 2_800_000, "t3", job="renamed"),
    ])
    j = state.jobs["k"]
    assert (j.state, j.attempts, j.billed, j.task_id, j.task_ids, j.error, j.job_id) == (
        "completed", 3, 2_801_000, "t3", ["t1", "t2", "t3"], None, "renamed")
    assert state.claimed_task_ids() == {"t1", "t2", "t3"}


def test_replay_a_new_intent_clears_the_previous_outcome() -> None:
    state = ManifestState.replay([intent("k"), UnknownRecord("k", "lost"), NotCreatedRecord("k", "not listed"),
                                  intent("k", 5, attempt=2)])
    j = state.jobs["k"]
    assert (j.state, j.error, j.task_id, j.reserved, j.attempts) == ("intent", None, None, 5, 2)


def test_settled_and_reserved_over_all_jobs() -> None:
    state = ManifestState.replay([
        intent("new-intent", 100),
        intent("lost", 200), UnknownRecord("lost", "timeout"),
        intent("running", 400), AcceptedRecord("running", "t-run"),
        intent("nothing", 800), NotCreatedRecord("nothing", "422"),
        intent("ok", 1_600), AcceptedRecord("ok", "t-ok"), done("ok", "completed", 1_600),
        intent("bad", 3_200), AcceptedRecord("bad", "t-bad"), done("bad", "failed", 3_200),
        intent("refused", 6_400), AcceptedRecord("refused", "t-ref"), done("refused", "rejected", 0),
        intent("stopped", 12_800), AcceptedRecord("stopped", "t-stop"), done("stopped", "cancelled"),
    ])
    assert state.settled == 1_600 + 3_200
    assert state.reserved == 100 + 200 + 400  # intent, unknown, submitted: not terminal, not not_created
    assert {j.key: j.state for j in state} == {
        "new-intent": "intent", "lost": "unknown", "running": "submitted", "nothing": "not_created",
        "ok": "completed", "bad": "failed", "refused": "rejected", "stopped": "cancelled"}


def test_replay_uploads_and_runs() -> None:
    state = ManifestState.replay([
        RunRecord("r1", webhook_token="tok1"), UploadRecord("abc", "inf://f1", "ref.png"),
        RunRecord("r2"), UploadRecord("abc", "inf://f2"),
    ])
    assert state.uploads == {"abc": "inf://f2"}
    assert [r.run for r in state.runs] == ["r1", "r2"]
    assert state.webhook_token == "tok1"
    assert state.jobs == {}


def test_stray_lines_in_a_manifest_are_skipped_when_read(tmp_path: Path) -> None:
    path = tmp_path / "manifest.jsonl"
    path.write_bytes(lines({"t": "intent", "key": 5}, {"t": "accepted", "task": "t0"}, {"t": "from-the-future"},
                           {"t": "upload", "sha256": "abc", "uri": "inf://f1"}))
    assert read_records(path) == [IntentRecord("5", "5", 1, {}, 0, output="5", at=0.0),
                                  UploadRecord("abc", "inf://f1", at=0.0)]


def test_a_slim_state_keeps_no_records_of_jobs_completed_while_it_is_live() -> None:
    state = ManifestState.replay([intent("a"), AcceptedRecord("a", "t0"), done("a", "completed", 1, "t0"),
                                  intent("k"), AcceptedRecord("k", "t")], slim=True)
    assert state.jobs["a"].done is not None  # replayed: kept, for deciding what a resume does
    state.apply(done("k", "completed", 1, "t", raw_output={"image": "big"}))
    j = state.jobs["k"]
    assert (j.state, j.billed, j.task_ids, j.intent, j.done) == ("completed", 1, ["t"], None, None)
    state.forget(["a"])
    assert state.jobs["a"].done is None and state.settled == 2


def test_job_creates_on_demand() -> None:
    state = ManifestState()
    assert state.job("k") == JobState("k")
    assert state.job("k") is state.jobs["k"]


# --- OutputLock -------------------------------------------------------------------------------------------------

HOLDER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from kling_pipeline.store.lock import OutputLock
    OutputLock(Path(sys.argv[1])).acquire()
    print("locked", flush=True)
    time.sleep(120)
""")


def test_a_second_process_is_refused_until_the_holder_dies(tmp_path: Path) -> None:
    out = tmp_path / "out"
    with subprocess.Popen([sys.executable, "-c", HOLDER, str(out)], stdout=subprocess.PIPE, text=True) as holder:
        try:
            assert holder.stdout is not None
            assert holder.stdout.readline() == "locked\n"
            with pytest.raises(LockError) as info:
                OutputLock(out).acquire()
            assert str(info.value) == (f"{out} is in use by another kling-pipeline run (pid {holder.pid}); "
                                       "wait for it to finish or use another output directory")
        finally:
            holder.send_signal(signal.SIGKILL)  # no cleanup of any kind: the kernel drops the lock
            holder.wait()
    assert holder.returncode == -signal.SIGKILL
    with OutputLock(out) as lock:
        assert lock.path.read_text() == str(os.getpid())


def test_a_second_lock_in_the_same_process_is_refused(tmp_path: Path) -> None:
    first = OutputLock(tmp_path)
    first.acquire()
    try:
        with pytest.raises(LockError, match=rf"\(pid {os.getpid()}\)"):
            OutputLock(tmp_path).acquire()
    finally:
        first.release()
    first.release()  # twice is harmless
    with OutputLock(tmp_path):
        pass


def test_lock_file_written_by_a_longer_pid_is_rewritten(tmp_path: Path) -> None:
    (tmp_path / ".kling-pipeline.lock").write_text("99999999999")
    with OutputLock(tmp_path) as lock:
        assert lock.path.read_text() == str(os.getpid())


def test_file_write_leaves_no_temp_file(tmp_path: Path) -> None:
    write = FileWrite(tmp_path / "d" / "x.json", json.dumps({"a": 1}).encode())
    write.commit()
    assert json.loads((tmp_path / "d" / "x.json").read_bytes()) == {"a": 1}
    assert [p.name for p in (tmp_path / "d").iterdir()] == ["x.json"]  # no temp file left
