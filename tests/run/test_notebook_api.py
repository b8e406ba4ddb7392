"""The Python API against the emulator: typed results, progress, and the command line's errors."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from conftest import TEST_KEY

import kling_pipeline as kp
from kling_pipeline.api.apierrors import AuthFailed
from kling_pipeline.emulator import EmulatorConfig, EmulatorServer, Latency


def mugs(n: int = 3, budget: str = "1") -> dict:
    return {"version": 1, "name": "mugs", "app": "klingai/image-o1@0pbaxv40",
            "matrix": {"subject": [f"mug {i}" for i in range(n)]},
            "input": {"prompt": "a {{ subject }}", "aspect_ratio": "1:1"}, "budget": {"max_usd": budget}}


@pytest.fixture
def here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("INFERENCE_API_KEY", TEST_KEY)
    monkeypatch.delenv("INFERENCE_BASE_URL", raising=False)
    return tmp_path


def test_a_budget_stop_returns_every_job_with_its_outcome(emulator, here):
    emu = emulator()
    result = kp.run_sweep(mugs(4, budget="0.06"), base_url=emu.base_url, concurrency=1, report=False)
    assert [(j.job, j.status, j.cost, len(j.files)) for j in result] == [
        ("mug_0", "completed", 2_800_000, 1), ("mug_1", "completed", 2_800_000, 1),
        ("mug_2", "not_run", 0, 0), ("mug_3", "not_run", 0, 0)]
    assert (result.stop_reason, result.spent, result.not_run_cost, result.cap, result.ok) == (
        "budget", 5_600_000, 5_600_000, 6_000_000, False)
    assert str(result) == ("4 jobs (2 completed, 2 not run); $0.056 this run, $0.056 in all of the $0.06 cap; "
                           "stopped: budget; out/mugs")
    assert [f.parent for f in result.files] == [Path("out/mugs")] * 2
    assert all(f.is_file() for f in result.files)
    (entry,) = kp.history(here / "out" / "mugs")
    assert (entry.exit_code, entry.end.flags if entry.end else None) == (
        None, ("python", "run_sweep", "<dict>", "concurrency=1"))


def test_a_progress_callback_that_raises_does_not_break_the_run(emulator, here):
    emu = emulator()
    calls = []

    def broken(progress: kp.Progress) -> None:
        calls.append(progress.event)
        raise ZeroDivisionError("a bug in the progress bar")

    with pytest.raises(ZeroDivisionError, match="a bug in the progress bar"):
        kp.run_sweep(mugs(3), base_url=emu.base_url, on_progress=broken, report=False)
    assert calls == ["started"]  # not called again
    status = kp.status(mugs(3))
    assert (status.counts["completed"], status.settled) == (3, 3 * 2_800_000)  # the run went on and recorded all


def test_a_refused_key_is_raised_as_the_command_lines_error(here):
    with EmulatorServer(EmulatorConfig(latency=Latency.fixed(0.05), api_key="the-right-key")) as emu:
        with pytest.raises(AuthFailed) as info:
            kp.run_sweep(mugs(2), base_url=emu.base_url, key="inf_wrong_key_0123456789")
        assert emu.ledger()["total_microcents"] == 0
    assert str(info.value) == "app klingai/image-o1: the API key was refused (HTTP 401); check INFERENCE_API_KEY"
    assert isinstance(info.value, kp.ApiError) and isinstance(info.value, kp.KlingError)


def test_the_sync_call_inside_a_running_loop_says_to_await(emulator, here):
    async def inside() -> None:
        with pytest.raises(kp.UsageError) as info:
            kp.run_sweep(mugs(1), emulator=True)
        assert str(info.value) == ("an event loop is already running in this thread (Jupyter, IPython): use "
                                   "`await run_sweep_async(...)` instead")

    asyncio.run(inside())


def test_detach_then_collect_from_python(emulator, here):
    emu = emulator(latency=0.5)
    detached = kp.run_sweep(mugs(2), base_url=emu.base_url, detach=True, report=False)
    assert [j.status for j in detached] == ["submitted", "submitted"]
    collected = kp.collect(mugs(2), base_url=emu.base_url, report=False)
    assert [j.status for j in collected] == ["completed", "completed"]
    assert len(emu.ledger()["charges"]) == 2
    runs = json.loads((here / "out" / "mugs" / "manifest.jsonl").read_text().splitlines()[-1])
    assert (runs["t"], runs["exit_code"], runs["counts"]) == ("run_end", None, {"completed": 2})
