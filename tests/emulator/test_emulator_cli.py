"""``python -m kling_pipeline.emulator``: the listening line, serving, a clean Ctrl-C."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator

import httpx
import pytest

from kling_pipeline.emulator import Faults, Latency
from kling_pipeline.emulator.cli import build_parser, config_from_args, main

from .helpers import KEY

LINE = re.compile(r"^Emulator listening on (http://127\.0\.0\.1:(\d+)) \(Ctrl-C to stop\)$")


@pytest.fixture
def serve() -> Iterator[list[subprocess.Popen[str]]]:
    procs: list[subprocess.Popen[str]] = []
    yield procs
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


def start(procs: list[subprocess.Popen[str]], *args: str, env: dict[str, str] | None = None) -> str:
    command = [sys.executable, "-m", "kling_pipeline.emulator", "--port", "0", "--latency", "0.05", *args]
    proc = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, **(env or {})}
    )
    procs.append(proc)
    assert proc.stdout is not None
    line = proc.stdout.readline().rstrip("\n")
    match = LINE.match(line)
    assert match, f"unexpected first line {line!r}"
    return match.group(1)


def stop(proc: subprocess.Popen[str]) -> tuple[int, str, str]:
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=20)
    return proc.returncode, out, err


@pytest.mark.slow
def test_serves_until_ctrl_c_then_exits_cleanly(serve: list[subprocess.Popen[str]]) -> None:
    url = start(serve)
    headers = {"Authorization": f"Bearer {KEY}"}

    app = httpx.get(f"{url}/apps/klingai/image-o1", headers=headers)
    run = httpx.post(f"{url}/apps/run", json={"app": "klingai/image-o1", "input": {"prompt": "x"}}, headers=headers)
    code, out, err = stop(serve[0])

    assert app.status_code == 200 and run.status_code == 200
    assert code == 0
    assert out == ""  # exactly one line was printed, and it was read above
    assert "Traceback" not in err
    assert KEY not in out + err


@pytest.mark.slow
def test_ctrl_c_with_a_stream_open_still_exits_cleanly(serve: list[subprocess.Popen[str]]) -> None:
    url = start(serve, "--latency", "60")
    headers = {"Authorization": f"Bearer {KEY}"}
    task = httpx.post(f"{url}/apps/run", json={"app": "klingai/image-o1", "input": {"prompt": "x"}}, headers=headers)
    task_id = task.json()["data"]["id"]

    with httpx.stream("GET", f"{url}/tasks/{task_id}/stream", headers=headers) as response:
        lines = response.iter_lines()
        first = next(lines)
        code, _, err = stop(serve[0])
        rest = list(lines)

    assert '"status":7' in first or '"status":2' in first
    assert rest == []
    assert code == 0 and "Traceback" not in err


@pytest.mark.slow
def test_api_key_from_the_environment_is_enforced(serve: list[subprocess.Popen[str]]) -> None:
    url = start(serve, "--api-key-env", "EMU_TEST_KEY", env={"EMU_TEST_KEY": KEY})

    wrong = httpx.get(f"{url}/apps/klingai/image-o1", headers={"Authorization": "Bearer inf_wrong"})
    right = httpx.get(f"{url}/apps/klingai/image-o1", headers={"Authorization": f"Bearer {KEY}"})
    code, out, err = stop(serve[0])

    assert (wrong.status_code, right.status_code, code) == (401, 200, 0)
    assert KEY not in out + err


def test_a_non_loopback_host_needs_allow_remote(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--host", "0.0.0.0"])

    assert exit_info.value.code == 2
    assert "--host 0.0.0.0 is not a loopback address; add --allow-remote" in capsys.readouterr().err


def test_a_missing_key_variable_is_a_usage_error(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("NO_SUCH_VARIABLE_HERE", raising=False)

    with pytest.raises(SystemExit) as exit_info:
        main(["--api-key-env", "NO_SUCH_VARIABLE_HERE"])

    assert exit_info.value.code == 2
    assert "environment variable NO_SUCH_VARIABLE_HERE is not set or empty" in capsys.readouterr().err


def test_a_busy_port_is_reported_without_a_traceback(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]

        code = main(["--port", str(port)])

    assert code == 1
    assert capsys.readouterr().err.startswith(f"error: cannot listen on 127.0.0.1:{port}:")


def test_every_fault_has_a_flag_and_flags_build_the_config() -> None:
    args = build_parser().parse_args(
        [
            "--latency", "lognormal:2,0.5", "--seed", "9", "--image-scale", "4",
            "--task-failure-rate", "0.1", "--provider-limit-rate", "0.2", "--reject-rate", "0.3",
            "--rate-limit-rate", "0.4", "--rate-limit-retry-after", "3", "--requests-per-second", "5",
            "--requests-burst", "7", "--server-error-rate", "0.05", "--server-error-retry-after", "2",
            "--max-running-per-key", "4", "--stream-cut-rate", "0.5", "--download-bytes-per-second", "1000",
            "--response-lost-rate", "0.3", "--index-lag", "0.5",
        ]
    )  # fmt: skip

    cfg = config_from_args(args)

    assert cfg.latency == Latency.lognormal(2, 0.5) and cfg.seed == 9 and cfg.image_scale == 4
    assert cfg.faults == Faults(
        task_failure_rate=0.1, provider_limit_rate=0.2, reject_rate=0.3, rate_limit_rate=0.4,
        rate_limit_retry_after=3, requests_per_second=5, requests_burst=7, server_error_rate=0.05,
        server_error_retry_after=2, max_running_per_key=4, stream_cut_rate=0.5, download_bytes_per_second=1000,
        response_lost_rate=0.3, index_lag=0.5,
    )  # fmt: skip


def test_bad_flag_values_are_usage_errors(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--latency", "soon"])
    assert "bad latency 'soon'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--reject-rate", "1.5"])
    assert "reject_rate must be a probability between 0 and 1, got 1.5" in capsys.readouterr().err
