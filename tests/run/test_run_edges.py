"""A clear answer at every edge: bad flags and output directories are usage errors (exit 2,
one line), an unreachable API ends collect within --connect-grace, and the exit code of a
plan does not depend on whether its reader closed the pipe early."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest
from conftest import TEST_KEY

pytestmark = pytest.mark.slow

DEAD = "http://127.0.0.1:9"  # nothing listens on the discard port here: connections are refused


@pytest.mark.parametrize(("flags", "message"), [
    (["--base-url", "ftp://x"], "argument --base-url: expected an http:// or https:// URL, got 'ftp://x'"),
    (["--reconcile-window", "-5"], "argument --reconcile-window: expected a number of seconds >= 0, got '-5'"),
    (["--drain-timeout", "nan"], "argument --drain-timeout: expected a number of seconds >= 0, got 'nan'"),
    (["--connect-grace", "inf"], "argument --connect-grace: expected a number of seconds >= 0, got 'inf'"),
    (["--rate", "0"], "argument --rate: expected a number > 0, got '0'"),
    (["--webhook", "not a url"], "argument --webhook: expected an http:// or https:// URL, got 'not a url'"),
])
def test_bad_flag_values_are_usage_errors(cli, sweep, capsys, flags, message):
    result = cli("run", str(sweep(2)), *flags)
    assert result.code == 2
    assert capsys.readouterr().err.splitlines()[-1] == f"kling-pipeline run: error: {message}"  # argparse's own


def test_an_output_directory_that_cannot_be_made_is_a_usage_error(cli, sweep, tmp_path):
    (tmp_path / "a-file").write_text("x")
    for out, says in ((tmp_path / "a-file", f"output directory {tmp_path / 'a-file'} is a file, not a directory"),
                      ("/proc/xx", "cannot create the output directory /proc/xx: No such file or directory")):
        result = cli("run", str(sweep(2)), "--out", str(out), "--emulator")
        assert (result.code, result.err) == (2, f"error: {says}\n")


def test_the_emulator_refuses_a_port_out_of_range(cli, capsys):
    result = cli("emulator", "--port", "99999")
    assert result.code == 2
    assert capsys.readouterr().err.splitlines()[-1].endswith("expected a port number (0-65535), got '99999'")


def test_detach_with_the_emulator_is_refused_because_nothing_could_collect(cli, sweep):
    result = cli("run", str(sweep(2)), "--emulator", "--detach")
    assert result.code == 2
    assert result.err.startswith("error: --detach with --emulator leaves tasks that nothing can collect")


def test_the_detach_hint_names_the_collect_command_that_works(cli, emulator, sweep, tmp_path):
    emu = emulator()
    path = sweep(2)
    result = cli("run", str(path), "--detach", "--out", str(tmp_path / "elsewhere"), "--base-url", emu.base_url)
    assert result.code == 0, result.err
    hint = f"kling-pipeline collect {path} --out {tmp_path / 'elsewhere'} --base-url {emu.base_url}"
    assert f"`{hint}` fetches their results" in result.err
    collected = cli(*hint.split()[1:])
    assert collected.code == 0, collected.err


def test_collect_gives_up_on_an_unreachable_api_within_the_connect_grace(cli, emulator, sweep):
    emu = emulator(latency=30.0)
    path = sweep(3)
    assert cli("run", str(path), "--detach", "--base-url", emu.base_url).code == 0
    started = time.monotonic()
    result = cli("collect", str(path), "--base-url", DEAD, "--connect-grace", "1")
    assert time.monotonic() - started < 30  # not the task timeout: the grace (a guard, not a measurement)
    assert result.code == 1
    assert "gave up after 1s without reaching the API" in result.err
    assert "re-attaches to it" in result.err


def test_a_plan_read_by_head_keeps_its_exit_code(sweep):
    path = sweep(300, budget="1")  # over budget: exit 3
    env = {**os.environ, "INFERENCE_API_KEY": TEST_KEY}
    shell = f"{sys.executable} -m kling_pipeline plan {path} | head -1; exit ${{PIPESTATUS[0]}}"
    done = subprocess.run(["bash", "-c", shell], capture_output=True, text=True, env=env, check=False)
    assert done.returncode == 3, done.stderr
    assert "BrokenPipe" not in done.stderr and "Exception ignored" not in done.stderr


def test_the_webhook_receiver_starts_before_any_run_and_needs_no_emulator_hint(cli, sweep, monkeypatch):
    monkeypatch.delenv("INFERENCE_API_KEY")
    result = cli("webhook-receiver", str(sweep(2)), "--port", "0")
    assert result.code == 2
    assert "--emulator" not in result.err
    assert result.err.startswith("error: no API key: export INFERENCE_API_KEY")


def test_shards_split_the_cap_in_proportion_to_their_cost(cli, recipe):
    # 20 jobs of $0.028 ($0.56) under a $0.60 cap: every shard fits, and the shares sum to the cap
    path = recipe("""
        version: 1
        name: shards
        app: klingai/image-o1@0pbaxv40
        matrix: {i: [a, b, c, d, e, f, g, h, i, j, k, l, m, n, o, p, q, r, s, t]}
        input: {prompt: "a photo of {{ i }}"}
        output: {dir: out}
        budget: {max_usd: 0.60}
    """)
    caps = []
    for i in (1, 2, 3):
        result = cli("plan", str(path), "--shard", f"{i}/3", "--json")
        assert result.code == 0, result.err  # within budget
        doc = json.loads(result.out)
        cap = doc["budget"]["max_usd"]
        assert len(cap.split(".")[1]) <= 2  # whole cents
        caps.append(round(float(cap) * 100))
    assert sum(caps) == 60
