"""Living within the service's rate limits: a 429 is never a failure, and after the first
few they stay rare — against the emulator's token bucket and its fixed window, a limit
that drops mid-run, limited reads, epoch-style resets, and a pre-flight app check."""

from __future__ import annotations

import json
import threading
import time

import pytest
from helpers import charges_per_prompt, completed_outputs_intact, manifest

from kling_pipeline.emulator import Limit, RateLimits

pytestmark = pytest.mark.slow

ROOMY = Limit(500, 1.0, burst=500)  # reads and uploads, when a test limits only runs


def _refused_share(stats: dict[str, dict[str, int]], kind: str = "runs") -> float:
    s = stats[kind]
    return s["refused"] / max(1, s["allowed"] + s["refused"])


@pytest.mark.parametrize("runs", [Limit(10, 1.0, burst=5), Limit(20, 2.0, shape="window")],
                         ids=["bucket-10-per-s-burst-5", "window-20-per-2s"])
def test_a_sweep_bigger_than_the_limit_completes_with_few_429s(cli, emulator, sweep, runs):
    emu = emulator(limits=RateLimits(runs=runs, reads=ROOMY, uploads=ROOMY))
    path = sweep(60, concurrency=32, budget="5")
    result = cli("run", str(path), "--base-url", emu.base_url)
    assert result.code == 0, result.err
    assert "run: 60 completed" in result.err
    assert "failed" not in result.err.split("run: ")[1]
    assert completed_outputs_intact(path.parent / "out") == 60
    assert set(charges_per_prompt(emu.ledger()).values()) == {1}
    stats = emu.limit_stats()
    assert stats["runs"]["allowed"] == 60
    assert _refused_share(stats) <= 0.10, stats


def test_no_job_fails_however_many_429s_it_meets(cli, emulator, sweep):
    # a tiny bucket and far more waiting than it allows: every job waits its turn, none gives up
    emu = emulator(limits=RateLimits(runs=Limit(5, 1.0, burst=2), reads=ROOMY, uploads=ROOMY))
    path = sweep(12, concurrency=12, budget="5")
    result = cli("run", str(path), "--base-url", emu.base_url)
    assert result.code == 0, result.err
    assert manifest(path.parent / "out").settled == 12 * 2_800_000
    assert [j.attempts for j in manifest(path.parent / "out")] == [1] * 12  # a 429 costs no attempt


def test_the_run_adapts_when_the_limit_drops_mid_run(cli, emulator, sweep):
    emu = emulator(limits=RateLimits(runs=Limit(20, 1.0, burst=10), reads=ROOMY, uploads=ROOMY))
    path = sweep(50, concurrency=24, budget="5")

    def drop_when_started() -> None:
        deadline = time.monotonic() + 60
        while emu.limit_stats()["runs"]["allowed"] < 15 and time.monotonic() < deadline:
            time.sleep(0.02)
        emu.set_limits(RateLimits(runs=Limit(5, 1.0, burst=8), reads=ROOMY, uploads=ROOMY))

    dropper = threading.Thread(target=drop_when_started)
    dropper.start()
    result = cli("run", str(path), "--base-url", emu.base_url)
    dropper.join()
    assert result.code == 0, result.err
    assert completed_outputs_intact(path.parent / "out") == 50
    stats = emu.limit_stats()
    assert stats["runs"]["allowed"] == 50
    assert stats["runs"]["refused"] <= 6, stats


def test_limited_reads_are_paced_and_no_job_fails(cli, emulator, sweep):
    # streams, task reads and the listing all count against 40 reads a second
    emu = emulator(latency=0.3, limits=RateLimits(runs=None, reads=Limit(40, 1.0, burst=10), uploads=ROOMY))
    path = sweep(60, concurrency=48, budget="5")
    result = cli("run", str(path), "--base-url", emu.base_url)
    assert result.code == 0, result.err
    assert completed_outputs_intact(path.parent / "out") == 60
    assert _refused_share(emu.limit_stats(), "reads") <= 0.10, emu.limit_stats()


def test_epoch_style_resets_are_understood(cli, emulator, sweep):
    emu = emulator(limits=RateLimits(runs=Limit(10, 1.0, burst=5), reads=ROOMY, uploads=ROOMY, reset_epoch=True))
    path = sweep(30, concurrency=16, budget="5")
    result = cli("run", str(path), "--base-url", emu.base_url)
    assert result.code == 0, result.err
    assert _refused_share(emu.limit_stats()) <= 0.10, emu.limit_stats()


PACED = RateLimits(runs=Limit(5, 1.0, burst=10), reads=ROOMY, uploads=ROOMY)


def test_json_events_say_when_the_service_sets_the_pace(cli, emulator, sweep):
    emu = emulator(limits=PACED)
    path = sweep(20, concurrency=20, budget="5")
    result = cli("run", str(path), "--base-url", emu.base_url, "--json")
    assert result.code == 0, result.err
    events = [json.loads(line) for line in result.out.splitlines()]
    paced = [e for e in events if e["event"] == "pacing" and e["paced_by_service"]]
    assert paced, "no pacing event"
    assert paced[0]["kind"] == "runs"
    assert set(paced[0]) >= {"per_minute", "limit", "throttles", "eta"}


def test_plain_logs_say_when_the_service_sets_the_pace(cli, emulator, sweep):
    emu = emulator(limits=PACED)
    path = sweep(20, concurrency=20, budget="5")
    result = cli("run", str(path), "--base-url", emu.base_url)
    assert result.code == 0, result.err
    assert "paced by the service: its rate limit on runs, not concurrency, sets the pace" in result.err


def test_rate_stays_an_explicit_ceiling(cli, emulator, sweep):
    emu = emulator()
    path = sweep(12, concurrency=12, budget="5")
    started = time.monotonic()
    result = cli("run", str(path), "--base-url", emu.base_url, "--rate", "20")
    assert result.code == 0, result.err
    assert time.monotonic() - started >= 11 / 20  # 12 submits at most 20 a second: 11 gaps of 50 ms
    assert emu.limit_stats()["runs"]["refused"] == 0


def test_an_unknown_pinned_version_stops_before_anything_is_sent(cli, emulator, recipe, tmp_path):
    # The version was pulled into the project's schema store (beside the recipe) from another service
    other = emulator()
    other.edit_app("klingai/image-o1", version="nosuchver")
    pulled = cli("schema", "pull", "klingai/image-o1@nosuchver", "--base-url", other.base_url,
                 "--schemas", str(tmp_path / "kling-schemas"))
    assert pulled.code == 0, pulled.err
    emu = emulator()
    path = recipe("""
        version: 1
        name: pinned
        app: klingai/image-o1@nosuchver
        matrix: {subject: [a, b, c]}
        input: {prompt: "a {{ subject }}"}
        output: {dir: out}
        budget: {max_usd: 1}
    """)
    result = cli("run", str(path), "--base-url", emu.base_url)
    assert result.code == 2, result.err
    assert f"{path}:3:6: app klingai/image-o1 has no version 'nosuchver' at the service" in result.err
    assert "re-pin the recipe's app, e.g. klingai/image-o1@0pbaxv40" in result.err
    assert emu.limit_stats()["runs"]["allowed"] == 0
    assert emu.ledger()["charges"] == []
    assert not (path.parent / "out" / "manifest.jsonl").exists()


def test_the_bundled_emulator_runs_under_the_published_limits(cli, sweep):
    path = sweep(4, concurrency=4, budget="1")
    result = cli("run", str(path), "--emulator")
    assert result.code == 0, result.err
    assert completed_outputs_intact(path.parent / "out") == 4


def test_plan_says_how_long_the_published_limit_makes_a_big_sweep(cli, sweep):
    result = cli("plan", str(sweep(300, budget="10")), "--rows", "1")
    assert result.code == 0, result.err
    assert ("rate limit: 300 jobs take at least 3:00 to submit at the service's published 100 runs/min "
            "(the run paces itself to it)") in result.out
    small = cli("plan", str(sweep(20, budget="10")), "--rows", "1")
    assert "rate limit" not in small.out
    doc = json.loads(cli("plan", str(sweep(300, budget="10")), "--json").out)
    assert doc["rate_limit"]["runs_per_minute"] == 100
    assert doc["rate_limit"]["min_submit_seconds"] == 180
