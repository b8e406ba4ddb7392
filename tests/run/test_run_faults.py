"""`run` under faults: the money guarantees, checked against the emulator's ledger."""

from __future__ import annotations

import anyio
import pytest
from helpers import charges_per_prompt, completed_outputs_intact, manifest, records
from tests_support import TEST_LIMITS


def _submissions(emu) -> dict[str, int]:
    return {s["input_sha256"]: s["count"] for s in emu.ledger()["submissions"]}


def test_lost_submit_answers_are_adopted_from_the_listing_and_never_paid_twice(cli, emulator, sweep):
    emu = emulator(response_lost_rate=1.0, index_lag=0.3)
    path = sweep(5)
    result = cli("run", str(path), "--base-url", emu.base_url, "--reconcile-window", "10")
    assert result.code == 0, result.err
    out = path.parent / "out"
    assert completed_outputs_intact(out) == 5
    assert set(charges_per_prompt(emu.ledger()).values()) == {1}
    assert set(_submissions(emu).values()) == {1}  # never re-sent
    assert len(records(out, "unknown")) == 5
    assert len(records(out, "adopted")) == 5


def test_without_reconciliation_a_lost_answer_stays_unknown_and_is_reported(cli, emulator, sweep):
    emu = emulator(response_lost_rate=1.0)
    path = sweep(2)
    result = cli("run", str(path), "--base-url", emu.base_url, "--no-reconcile")
    assert result.code == 1
    assert "run: 0 completed, 2 unknown" in result.err
    assert "submit answer lost; reconciliation is off (--retry-unknown re-sends)" in result.err
    state = manifest(path.parent / "out")
    assert {j.state for j in state} == {"unknown"}
    assert state.reserved == 2 * 2_800_000  # an unknown submit stays counted against the budget
    # The next run does not re-send them...
    again = cli("run", str(path), "--base-url", emu.base_url, "--no-reconcile")
    assert again.code == 1
    assert "2 failed or unknown left alone" in again.err
    assert set(_submissions(emu).values()) == {1}
    # ...and a later run with reconciliation on finds the tasks and adopts them: still one charge each.
    adopted = cli("run", str(path), "--base-url", emu.base_url, "--reconcile-window", "2")
    assert adopted.code == 0, adopted.err
    assert set(_submissions(emu).values()) == {1}
    assert completed_outputs_intact(path.parent / "out") == 2


def test_a_submit_absent_from_the_listing_is_sent_again_only_after_the_window(cli, emulator, sweep):
    emu = emulator()
    path = sweep(1)
    out = path.parent / "out"
    # A crash right after the intent record, before the request left: nothing exists at the service.
    from kling_pipeline.core.jobs import content_key  # noqa: F401 - the key comes from the plan below
    from kling_pipeline.core.loading import load_recipe
    from kling_pipeline.core.planning import plan
    from kling_pipeline.store.journal import Journal
    from kling_pipeline.store.records import IntentRecord

    p = plan(load_recipe(path))
    job = p.jobs[0]
    journal = Journal(out / "manifest.jsonl")
    journal.append_now(IntentRecord(job.key, job.id, 1, p.render(job).request, job.cost, 1, job.output_name, at=0.0))
    journal.close()
    result = cli("run", str(path), "--base-url", emu.base_url, "--reconcile-window", "1")
    assert result.code == 0, result.err
    assert [r["reason"] for r in records(out, "not_created")] == ["not in the task listing 1s after the submit"]
    assert set(_submissions(emu).values()) == {1}
    assert manifest(out).jobs[job.key].attempts == 2


def test_a_429_storm_completes_and_charges_each_job_once(cli, emulator, sweep):
    emu = emulator(rate_limit_rate=0.7, rate_limit_retry_after=0.05)
    path = sweep(6, concurrency=3)
    result = cli("run", str(path), "--base-url", emu.base_url)
    assert result.code == 0, result.err
    assert "rate limited:" in result.err
    assert completed_outputs_intact(path.parent / "out") == 6
    assert set(charges_per_prompt(emu.ledger()).values()) == {1}


def test_a_requests_per_second_limit_is_honoured_through_retry_after(cli, emulator, sweep):
    from kling_pipeline.emulator import Limit, RateLimits

    emu = emulator(limits=RateLimits(runs=Limit(20, 1.0, burst=2)))
    path = sweep(8, concurrency=8)
    result = cli("run", str(path), "--base-url", emu.base_url)
    assert result.code == 0, result.err
    assert set(charges_per_prompt(emu.ledger()).values()) == {1}


def test_503_and_500_without_a_task_are_retried_and_paid_once(cli, emulator, sweep):
    emu = emulator(server_error_rate=0.6, server_error_retry_after=0.05)
    path = sweep(6)
    result = cli("run", str(path), "--base-url", emu.base_url)
    assert result.code == 0, result.err
    assert set(charges_per_prompt(emu.ledger()).values()) == {1}
    assert completed_outputs_intact(path.parent / "out") == 6


def test_cut_streams_are_reconciled_with_get_task(cli, emulator, sweep):
    emu = emulator(stream_cut_rate=1.0, latency=0.2)
    path = sweep(4)
    result = cli("run", str(path), "--base-url", emu.base_url)
    assert result.code == 0, result.err
    assert completed_outputs_intact(path.parent / "out") == 4
    assert set(charges_per_prompt(emu.ledger()).values()) == {1}


def test_provider_concurrency_failures_are_retried_slower_and_not_billed(cli, emulator, sweep):
    emu = emulator(provider_limit_rate=0.3)
    path = sweep(5)
    result = cli("run", str(path), "--base-url", emu.base_url)
    assert result.code == 0, result.err
    out = path.parent / "out"
    assert completed_outputs_intact(out) == 5
    failed = [r for r in records(out, "done") if r["status"] == "failed"]
    assert failed, "the fault should have failed some tasks"
    assert all(r["billed_microcents"] == 0 for r in failed)
    assert manifest(out).settled == emu.ledger()["total_microcents"] == 5 * 2_800_000


def test_rejected_tasks_stop_the_run_and_cost_nothing(cli, emulator, sweep):
    emu = emulator(reject_rate=1.0)
    path = sweep(3, concurrency=1)
    result = cli("run", str(path), "--base-url", emu.base_url)
    assert result.code == 1
    assert "was rejected by the service" in result.err
    assert emu.ledger()["total_microcents"] == 0
    assert manifest(path.parent / "out").settled == 0


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5])
def test_the_budget_is_never_exceeded_under_random_faults(cli, emulator, sweep, seed):
    """Property: whatever fails, spend by the service's own ledger stays under the cap,
    no input is charged twice, and the manifest's settled spend matches the ledger."""
    emu = emulator(seed=seed, response_lost_rate=0.25, rate_limit_rate=0.2, rate_limit_retry_after=0.05,
                   server_error_rate=0.1, server_error_retry_after=0.05, task_failure_rate=0.15,
                   provider_limit_rate=0.1, stream_cut_rate=0.2, index_lag=0.2)
    path = sweep(24, budget="0.40", concurrency=6)  # 14 jobs fit
    cap = 40_000_000
    out = path.parent / "out"
    for _ in range(3):  # the first run and two resumes
        result = cli("run", str(path), "--base-url", emu.base_url, "--reconcile-window", "3", "--retry-failed")
        assert result.code in (0, 1, 3), result.err
        ledger = emu.ledger()
        assert ledger["total_microcents"] <= cap
        assert max(charges_per_prompt(ledger).values(), default=0) <= 1
        state = manifest(out)
        assert state.settled + state.reserved <= cap
        charged = {c["task_id"] for c in ledger["charges"]}
        recorded = {j.task_id for j in state if j.state == "completed"}
        assert charged == recorded  # every paid task is in the manifest as completed, and only those
    completed_outputs_intact(out)


def test_unknown_submits_holding_the_budget_end_in_a_budget_stop_not_a_hang(cli, emulator, sweep):
    """Lost answers without reconciliation keep their reservations (conservative); the jobs
    waiting for money must see that nobody can free any and stop, not wait forever."""
    emu = emulator(response_lost_rate=0.5, seed=4)
    path = sweep(12, budget="0.10", concurrency=3)  # 3 jobs fit
    result = cli("run", str(path), "--base-url", emu.base_url, "--no-reconcile")
    assert result.code == 3, result.err
    assert "budget stop:" in result.err
    state = manifest(path.parent / "out")
    assert state.settled + state.reserved <= 10_000_000
    assert emu.ledger()["total_microcents"] <= 10_000_000


@pytest.mark.parametrize("seed", range(12))
def test_a_budget_stop_with_staged_jobs_and_failures_always_ends(recipe, seed):
    """Submits are staged ahead of free slots. Money must be reserved in plan order, or a later
    staged job holds what the next one to start waits for, and the run never ends. (Before the
    fix about one run in six of the report's sweep hung; the hang depends on timing, so this
    test is a guard over several seeds, not a certain reproduction.)"""
    import io

    from kling_pipeline.api.client import Secret
    from kling_pipeline.cli._backend import run_async
    from kling_pipeline.core.planning import plan_file
    from kling_pipeline.emulator import EmulatorConfig, EmulatorServer, Faults, Latency
    from kling_pipeline.run.context import RunOptions
    from kling_pipeline.run.session import run_plan
    from kling_pipeline.views.progress import Counters, PlainEvents

    path = recipe("""
        version: 1
        app: klingai/image-o1@0pbaxv40
        matrix:
          subject: ["<b>a</b>", b, c]
          style: [watercolor, film noir]
          ratio: ["1:1", "16:9"]
        repeat: 2
        input:
          prompt: "A {{ subject }} on a table, {{ style }} style"
          aspect_ratio: "{{ ratio }}"
        output:
          dir: out
          filename: "{{ style }} #{{ repeat_index }}/{{ ratio }}/{{ job_id }}_{{ short_key }}"
        budget: {max_usd: 0.40}
        concurrency: 3
    """)
    plan = plan_file(path)
    config = EmulatorConfig(latency=Latency.fixed(0.05), seed=seed, faults=Faults(task_failure_rate=0.25),
                            limits=TEST_LIMITS)
    with EmulatorServer(config) as emu:

        async def bounded():  # a hang becomes a failure, not a stuck CI
            with anyio.fail_after(60):
                return await run_plan(plan, base_url=emu.base_url, key=Secret("k"), options=RunOptions(concurrency=3),
                                      events=PlainEvents(io.StringIO(), Counters(24)))

        summary = run_async(bounded)  # the command's event loop (uvloop), where the hang showed
        charged = emu.ledger()["total_microcents"]
    assert summary.stop_reason in ("budget", "")  # with enough failures everything fits
    assert summary.ledger is not None and summary.ledger.settled + summary.ledger.reserved <= 40_000_000
    assert charged <= 40_000_000
