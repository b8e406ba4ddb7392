"""status, run --detach + collect, the webhook receiver, --shard + merge."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
from conftest import TEST_KEY
from helpers import charges_per_prompt, completed_outputs_intact, manifest, records


def _status(cli, target: str) -> dict:
    result = cli("status", target, "--json")
    assert result.code == 0, result.err
    return json.loads(result.out)


def test_status_reports_counts_spend_and_what_a_resume_would_do(cli, emulator, sweep):
    emu = emulator(task_failure_rate=0.5, seed=3)
    path = sweep(8, budget="0.20", concurrency=2)  # 7 fit
    cli("run", str(path), "--base-url", emu.base_url)
    doc = _status(cli, str(path))
    state = manifest(path.parent / "out")
    completed = sum(1 for j in state if j.state == "completed")
    failed = sum(1 for j in state if j.state == "failed")
    assert doc["format"] == "kling-pipeline.status/1"
    assert doc["jobs"]["planned"] == 8
    assert doc["jobs"]["completed"] == completed and doc["jobs"]["failed"] == failed
    assert doc["jobs"]["not_started"] == 8 - completed - failed
    assert doc["images"] == completed
    assert doc["spend"]["settled_usd"] == f"{completed * 0.028:.3f}".rstrip("0").ljust(4, "0")
    assert doc["spend"]["cap_usd"] == "0.20"
    assert doc["resume"]["submit"] == 8 - completed - failed
    assert doc["resume"]["failed_left"] == failed
    # The output directory alone finds its recipe through the manifest.
    assert _status(cli, str(path.parent / "out"))["jobs"] == doc["jobs"]
    text = cli("status", str(path))
    assert text.code == 0
    assert f"jobs: 8 planned · {completed} done · {failed} failed · 0 unknown · 0 in flight" in text.out


def test_detach_submits_and_exits_then_collect_fetches_everything(cli, emulator, sweep):
    emu = emulator(latency=1.0)
    path = sweep(5)
    out = path.parent / "out"
    detached = cli("run", str(path), "--base-url", emu.base_url, "--detach")
    assert detached.code == 0, detached.err
    assert "detached: 5 tasks running at the service" in detached.err
    state = manifest(out)
    assert {j.state for j in state} == {"submitted"}
    assert emu.ledger()["charges"] == []  # nothing finished yet: the command did not wait
    assert _status(cli, str(path))["jobs"]["in_flight"] == 5
    collected = cli("collect", str(path), "--base-url", emu.base_url)
    assert collected.code == 0, collected.err
    assert completed_outputs_intact(out) == 5
    assert set(charges_per_prompt(emu.ledger()).values()) == {1}
    assert len(emu.ledger()["submissions"]) == 5  # collect sent nothing new
    again = cli("collect", str(path), "--base-url", emu.base_url)
    assert again.code == 0 and "nothing to do" in again.err


def test_collect_never_submits_new_jobs(cli, emulator, sweep):
    emu = emulator()
    path = sweep(3)
    result = cli("collect", str(path), "--base-url", emu.base_url)
    assert result.code == 0
    assert "3 jobs not submitted yet: `kling-pipeline run` sends them" in result.err
    assert emu.tasks() == []


def _receiver(target: Path, base_url: str) -> tuple[subprocess.Popen[str], str]:
    env = {**os.environ, "INFERENCE_API_KEY": TEST_KEY}
    proc = subprocess.Popen([sys.executable, "-m", "kling_pipeline", "webhook-receiver", str(target), "--port", "0",
                             "--base-url", base_url], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.startswith("Webhook receiver listening on http://127.0.0.1:"), proc.communicate()
    return proc, line.split()[4]


def test_webhook_deliveries_are_checked_and_collected(cli, emulator, sweep):
    emu = emulator(latency=1.0)
    path = sweep(4)
    out = path.parent / "out"
    # The webhook URL is decided before the receiver's port is known: reserve one.
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    hook = f"http://127.0.0.1:{port}/hook"
    detached = cli("run", str(path), "--base-url", emu.base_url, "--detach", "--webhook", hook)
    assert detached.code == 0, detached.err
    env = {**os.environ, "INFERENCE_API_KEY": TEST_KEY}
    proc = subprocess.Popen([sys.executable, "-m", "kling_pipeline", "webhook-receiver", str(path), "--port",
                             str(port), "--base-url", emu.base_url], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().startswith(f"Webhook receiver listening on http://127.0.0.1:{port}/")
        deadline = time.monotonic() + 30
        while sum(1 for j in manifest(out) if j.state == "completed") < 4:
            assert time.monotonic() < deadline, "the deliveries were not collected"
            time.sleep(0.1)
        # Forged or stray deliveries are refused and change nothing.
        task = next(iter(manifest(out))).task_id
        token = next(r["webhook_token"] for r in records(out, "run") if r.get("webhook_token"))
        some_key = next(iter(manifest(out).jobs))
        with httpx.Client() as http:
            forged = http.post(f"{hook}?kp=wrong&job={some_key[:32]}", json={"id": task, "status": 10})
            assert forged.status_code == 403
            stray = http.post(f"{hook}?kp={token}&job=ffff", json={"id": task})
            assert stray.status_code == 404
            mismatched = http.post(f"{hook}?kp={token}&job={some_key[:32]}", json={"id": "not-its-task"})
            assert mismatched.status_code == 409
            huge = http.post(f"{hook}?kp={token}&job={some_key[:32]}", content=b"x" * (1024 * 1024 + 10))
            assert huge.status_code == 413
            repeat = http.post(f"{hook}?kp={token}&job={some_key[:32]}",
                               json={"id": manifest(out).jobs[some_key].task_id})
            assert repeat.status_code == 200 and repeat.text == "already collected\n"
    finally:
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=20)
    assert proc.returncode == 0, stderr
    assert "Traceback" not in stderr
    assert completed_outputs_intact(out) == 4
    assert set(charges_per_prompt(emu.ledger()).values()) == {1}
    assert len(records(out, "done")) == 4


def test_shards_cover_every_job_exactly_once_and_merge_round_trips(cli, emulator, sweep):
    emu = emulator()
    path = sweep(12, budget="1.00")
    out = path.parent / "out"
    plans = [json.loads(cli("plan", str(path), "--shard", f"{i}/3", "--json").out) for i in (1, 2, 3)]
    keys = [{j["key"] for j in p["jobs"]} for p in plans]
    full = {j["key"] for j in json.loads(cli("plan", str(path), "--json").out)["jobs"]}
    assert set.union(*keys) == full and sum(len(k) for k in keys) == 12
    # the $1.00 cap split in proportion to each shard's cost, in whole cents, summing to the cap
    shares = [p["budget"]["max_usd"] for p in plans]
    assert all(len(s.split(".")[1]) == 2 for s in shares)
    assert sum(round(float(s) * 100) for s in shares) == 100
    for p, share in zip(plans, shares, strict=True):
        assert abs(float(share) - float(p["totals"]["cost_usd"]) / 0.336) <= 0.01
    for i in (1, 2, 3):
        result = cli("run", str(path), "--base-url", emu.base_url, "--shard", f"{i}/3")
        assert result.code == 0, result.err
        assert (out / f"manifest.shard-{i}-of-3.jsonl").is_file()
    assert not (out / "manifest.jsonl").exists()
    merged = cli("merge", str(out))
    assert merged.code == 0, merged.err
    assert "records added from 3 shard manifests" in merged.out
    doc = _status(cli, str(path))
    assert doc["jobs"]["completed"] == 12
    assert doc["spend"]["settled_usd"] == "0.336"
    again = cli("merge", str(out))
    assert again.out.endswith(": 0 records added from 3 shard manifests\n")
    assert cli("run", str(path), "--base-url", emu.base_url).err.startswith("nothing to do: 12 jobs done")
    assert set(charges_per_prompt(emu.ledger()).values()) == {1}
