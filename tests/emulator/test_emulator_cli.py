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

from kling_pipeline.emulator import Faults, Latency, Limit, RateLimits
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
            "--rate-limit-rate", "0.4", "--rate-limit-retry-after", "3",
            "--server-error-rate", "0.05", "--server-error-retry-after", "2",
            "--max-running-per-key", "4", "--stream-cut-rate", "0.5", "--download-bytes-per-second", "1000",
            "--response-lost-rate", "0.3", "--index-lag", "0.5",
        ]
    )  # fmt: skip

    cfg = config_from_args(args)

    assert cfg.latency == Latency.lognormal(2, 0.5) and cfg.seed == 9 and cfg.image_scale == 4
    assert cfg.faults == Faults(
        task_failure_rate=0.1, provider_limit_rate=0.2, reject_rate=0.3, rate_limit_rate=0.4,
        rate_limit_retry_after=3, server_error_rate=0.05,
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


def test_limits_default_to_the_published_ones() -> None:
    assert config_from_args(build_parser().parse_args([])).limits == RateLimits.published()


def test_limit_flags_set_each_class_its_shape_burst_and_reset_form() -> None:
    args = build_parser().parse_args(
        ["--runs-limit", "window:10/6s", "--reads-limit", "1000/60s", "--reads-burst", "50",
         "--uploads-limit", "off", "--reset-epoch"]
    )  # fmt: skip

    assert config_from_args(args).limits == RateLimits(
        runs=Limit(10, 6.0, "window"), reads=Limit(1000, 60.0, burst=50), uploads=None, reset_epoch=True
    )


def test_a_burst_alone_changes_the_published_bucket() -> None:
    limits = config_from_args(build_parser().parse_args(["--runs-burst", "1"])).limits

    assert limits == RateLimits(runs=Limit(100, 60.0, burst=1), reads=Limit(1000), uploads=Limit(50))


def test_no_limits_turns_every_limit_off() -> None:
    assert config_from_args(build_parser().parse_args(["--no-limits"])).limits == RateLimits.off()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--runs-limit", "fast"], "argument --runs-limit: bad rate limit 'fast': use COUNT/PERIOD with an optional "
                                   "shape, e.g. 100/min, 1000/60s, window:10/6s, bucket:5/s, or off"),
        (["--reads-limit", "0/s"], "argument --reads-limit: bad rate limit '0/s': a limit's count must be a whole "
                                   "number >= 1, got 0"),
        (["--uploads-limit", "leaky:5/s"], "argument --uploads-limit: bad rate limit 'leaky:5/s': the shape is "
                                           "'bucket' or 'window', not 'leaky'"),
        (["--runs-burst", "0"], "argument --runs-burst: bad burst '0': use a whole number of calls >= 1"),
        (["--runs-burst", "x"], "argument --runs-burst: bad burst 'x': use a whole number of calls >= 1"),
        (["--runs-limit", "window:5/s", "--runs-burst", "2"],
         "--runs-burst needs a token-bucket --runs-limit, not 'window:5/s'"),
        (["--uploads-limit", "off", "--uploads-burst", "2"],
         "--uploads-burst needs a token-bucket --uploads-limit, not 'off'"),
        (["--no-limits", "--reads-limit", "5/s"], "--no-limits turns every limit off; it cannot go with --reads-limit"),
        (["--no-limits", "--reset-epoch"], "--no-limits turns every limit off; it cannot go with --reset-epoch"),
    ],
)
def test_bad_limit_flags_are_one_line_usage_errors(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)

    err = capsys.readouterr().err
    assert exit_info.value.code == 2
    assert err.splitlines()[-1] == f"python -m kling_pipeline.emulator: error: {message}"
    assert "Traceback" not in err


@pytest.mark.slow
def test_limit_flags_reach_the_served_emulator(serve: list[subprocess.Popen[str]]) -> None:
    url = start(serve, "--runs-limit", "window:1/1000000000s", "--reset-epoch", "--reads-limit", "off")
    headers = {"Authorization": f"Bearer {KEY}"}
    body = {"app": "klingai/image-o1", "input": {"prompt": "x"}}

    answers = [httpx.post(f"{url}/apps/run", json=body, headers=headers) for _ in range(2)]
    read = httpx.get(f"{url}/apps/klingai/image-o1", headers=headers)
    limits = httpx.get(f"{url}/_emulator/limits").json()["data"]
    code, _, err = stop(serve[0])

    assert [r.status_code for r in answers] == [200, 429]
    assert answers[1].headers["x-ratelimit-reset"] == "2000000000"  # the window turns at 2 * 10^9
    assert "x-ratelimit-limit" not in read.headers
    assert limits["limits"]["runs"] == {"count": 1, "period": 1e9, "shape": "window", "burst": None}
    assert limits["stats"]["runs"] == {"allowed": 1, "refused": 1}
    assert code == 0 and "Traceback" not in err
