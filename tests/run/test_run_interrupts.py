"""kill -9, Ctrl-C and resume, with the run in a real subprocess."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

from helpers import charges_per_prompt, completed_outputs_intact, manifest, records, spawn_run, wait_for

pytestmark = [__import__("pytest").mark.slow]


def _accepted(out: Path) -> int:
    if not (out / "manifest.jsonl").exists():
        return 0
    return len(records(out, "accepted")) + len(records(out, "adopted"))


def test_kill_9_mid_run_then_resume_completes_every_job_exactly_once(cli, emulator, sweep):
    emu = emulator(latency=0.8, response_lost_rate=0.3, index_lag=0.2)
    path = sweep(16, concurrency=4)
    out = path.parent / "out"
    proc = spawn_run(path, emu.base_url, "--reconcile-window", "2")
    wait_for(lambda: len(records(out, "done")) >= 3 and _accepted(out) >= 6, proc)
    proc.kill()
    proc.communicate()
    assert any(j.in_flight or j.unresolved for j in manifest(out)), "the kill should leave work in flight"
    result = cli("run", str(path), "--base-url", emu.base_url, "--reconcile-window", "2")
    assert result.code == 0, result.err
    ledger = emu.ledger()
    assert len(ledger["charges"]) == 16
    assert set(charges_per_prompt(ledger).values()) == {1}
    assert completed_outputs_intact(out) == 16
    assert not list(out.glob(".*.part"))


def test_ctrl_c_stops_submitting_waits_for_running_tasks_and_exits_130(cli, emulator, sweep):
    emu = emulator(latency=1.0)
    path = sweep(30, concurrency=4)
    out = path.parent / "out"
    proc = spawn_run(path, emu.base_url)
    wait_for(lambda: _accepted(out) >= 4, proc)
    proc.send_signal(signal.SIGINT)
    _stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert "interrupted: no new submits; waiting for running jobs" in stderr
    assert "Traceback" not in stderr
    state = manifest(out)
    assert not [j for j in state if j.in_flight or j.unresolved]  # every running task was waited for
    assert len(records(out, "intent")) < 30
    charged = {c["task_id"] for c in emu.ledger()["charges"]}
    assert charged == {j.task_id for j in state if j.state == "completed"}
    # The rest runs on the next invocation, each job paid once.
    result = cli("run", str(path), "--base-url", emu.base_url)
    assert result.code == 0, result.err
    assert set(charges_per_prompt(emu.ledger()).values()) == {1}
    assert completed_outputs_intact(out) == 30


def test_a_second_ctrl_c_quits_at_once_and_the_next_run_reattaches(cli, emulator, sweep):
    emu = emulator(latency=4.0)
    path = sweep(8, concurrency=4)
    out = path.parent / "out"
    proc = spawn_run(path, emu.base_url)
    wait_for(lambda: _accepted(out) >= 4, proc)
    proc.send_signal(signal.SIGINT)
    time.sleep(0.3)
    proc.send_signal(signal.SIGINT)
    _stdout, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr
    running = [j for j in manifest(out) if j.in_flight]
    assert len(running) == 4  # it did not wait for them
    result = cli("run", str(path), "--base-url", emu.base_url)
    assert result.code == 0, result.err
    assert set(charges_per_prompt(emu.ledger()).values()) == {1}
    assert len(emu.ledger()["charges"]) == 8
    assert {t for j in running for t in [j.task_id]} <= {c["task_id"] for c in emu.ledger()["charges"]}


def test_ctrl_c_with_cancel_inflight_cancels_running_tasks(cli, emulator, sweep):
    emu = emulator(latency=5.0)
    path = sweep(6, concurrency=3)
    out = path.parent / "out"
    proc = spawn_run(path, emu.base_url, "--cancel-inflight")
    wait_for(lambda: _accepted(out) >= 3, proc)
    proc.send_signal(signal.SIGINT)
    _stdout, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 130, stderr
    done = records(out, "done")
    assert sorted(r["status"] for r in done) == ["cancelled"] * 3
    assert emu.ledger()["charges"] == []
    assert manifest(out).settled == 0
    assert "failed:" not in stderr and "None" not in stderr
    assert "cancelled: " in stderr and "a plain re-run sends them again" in stderr
    status = cli("status", str(path), "--json")
    assert json.loads(status.out)["resume"]["submit"] == 6  # the 3 cancelled are sent again, with the rest


def _kill_when(proc: subprocess.Popen[str], out: Path, done: int) -> None:
    wait_for(lambda: len(records(out, "done")) >= done, proc)
    proc.kill()
    proc.communicate()


def test_a_resume_settles_lost_submits_from_what_the_listing_proves_not_by_waiting(cli, emulator, sweep):
    # Lost answers leave jobs whose submit may have created a task. The resumed run's own new
    # tasks, once listed, prove the listing has caught up: a lost submit not in it created
    # nothing and is sent again at once — the 120 s window is never waited out.
    from kling_pipeline.emulator import Faults

    emu = emulator(latency=0.3, response_lost_rate=0.3, index_lag=30)  # nothing proven before the kill
    path = sweep(40, concurrency=8)
    out = path.parent / "out"
    proc = spawn_run(path, emu.base_url)
    _kill_when(proc, out, 6)
    assert any(j.unresolved for j in manifest(out)), "the kill should leave lost submits"
    emu.set_faults(Faults())  # no lag, no loss now: what the resumed run reconciles is the crashed run's
    result = cli("run", str(path), "--base-url", emu.base_url)  # the default 120 s window
    assert result.code == 0, result.err
    assert set(charges_per_prompt(emu.ledger()).values()) == {1}
    assert len(emu.ledger()["charges"]) == 40
    assert completed_outputs_intact(out) == 40
    reasons = {r["reason"] for r in records(out, "not_created")}
    assert not any("after the submit" in reason for reason in reasons), reasons  # no window was waited out


def test_staged_jobs_leave_no_intent_behind_a_kill(emulator, sweep):
    # Up to 64 jobs are staged ahead of free slots (money reserved, files uploaded); their
    # intents are written only in their turn to be sent: a kill leaves at most the submits
    # that were on their way, never the staged ones, to reconcile.
    emu = emulator(latency=1.0)
    path = sweep(60, concurrency=4)
    out = path.parent / "out"
    proc = spawn_run(path, emu.base_url)
    wait_for(lambda: _accepted(out) >= 6, proc)
    proc.kill()
    proc.communicate()
    assert len(records(out, "intent")) <= _accepted(out) + 4


def test_a_lagging_listing_never_makes_a_resume_pay_twice(cli, emulator, sweep):
    emu = emulator(latency=0.3, response_lost_rate=0.3, index_lag=1.5)
    path = sweep(24, concurrency=6)
    out = path.parent / "out"
    proc = spawn_run(path, emu.base_url, "--reconcile-window", "5")
    _kill_when(proc, out, 4)
    result = cli("run", str(path), "--base-url", emu.base_url, "--reconcile-window", "5")
    assert result.code == 0, result.err
    assert set(charges_per_prompt(emu.ledger()).values()) == {1}
    assert len(emu.ledger()["charges"]) == 24
    assert completed_outputs_intact(out) == 24
