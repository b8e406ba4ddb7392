"""work.decide: what a run does for each job, from the plan, the replayed manifest and the flags."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest

from kling_pipeline.core.jobs import Job
from kling_pipeline.core.planning import Plan, plan_file
from kling_pipeline.run.work import Action, Decision, Work, decide
from kling_pipeline.store.records import parse
from kling_pipeline.store.state import ManifestState

RECIPE = """\
version: 1
name: unit
app: klingai/image-o1@0pbaxv40
matrix:
  subject: [{subjects}]
input:
  prompt: "a photo of {{{{ subject }}}}"
  aspect_ratio: "1:1"
output:
  dir: out
budget:
  max_usd: 10
"""


def make_plan(tmp_path: Path, *subjects: str) -> Plan:
    path = tmp_path / "r.yaml"
    path.write_text(RECIPE.format(subjects=", ".join(subjects)), encoding="utf-8")
    return plan_file(path)


@pytest.fixture
def plan(tmp_path: Path) -> Plan:
    return make_plan(tmp_path, "cat", "dog", "fox", "owl")


def replay(records: Iterable[dict[str, Any]]) -> ManifestState:
    """The state of these records as written to a manifest (read back through ``parse``)."""
    return ManifestState.replay(r for r in map(parse, records) if r is not None)


def job(plan: Plan, job_id: str) -> Job:
    return next(j for j in plan.jobs if j.id == job_id)


def intent(j: Job, attempt: int = 1) -> dict[str, Any]:
    return {"t": "intent", "key": j.key, "job": j.id, "attempt": attempt, "reserved_microcents": j.cost,
            "units": j.units, "output": j.output_name, "combination": dict(j.combination.labels),
            "input": {"prompt": f"a photo of {j.id}"}, "at": 1_700_000_000.0}


def accepted(j: Job, task: str) -> dict[str, Any]:
    return {"t": "accepted", "key": j.key, "task": task}


def done(j: Job, task: str, status: str, **extra: Any) -> dict[str, Any]:
    return {"t": "done", "key": j.key, "job": j.id, "task": task, "status": status,
            "billed_microcents": j.cost if status == "completed" else 0, **extra}


def completed(plan: Plan, j: Job, task: str, *, on_disk: bytes | None = b"png bytes", size: int | None = None,
              **extra: Any) -> list[dict[str, Any]]:
    """The records of a completed job, its image written (or not) into the output directory."""
    name = f"{j.output_name}.png"
    if on_disk is not None:
        plan.output_dir.mkdir(parents=True, exist_ok=True)
        (plan.output_dir / name).write_bytes(on_disk)
    outputs = [{"path": name, "size": len(b"png bytes") if size is None else size, "sha256": "x"}]
    return [intent(j), accepted(j, task), done(j, task, "completed", outputs=outputs, **extra)]


def actions(d: Decision) -> list[tuple[Action, str]]:
    return [(w.action, w.job_id) for w in d.work]


def test_no_manifest_submits_every_job_in_plan_order(plan: Plan) -> None:
    d = decide(plan, ManifestState())
    assert actions(d) == [(Action.SUBMIT, "cat"), (Action.SUBMIT, "dog"), (Action.SUBMIT, "fox"),
                          (Action.SUBMIT, "owl")]
    first = d.work[0]
    cat = job(plan, "cat")
    assert first == Work(Action.SUBMIT, cat.key, "cat", cat.output_name, None, cat.cost, cat.units,
                         cat, None, False)
    assert first.labels == {"subject": "cat"}
    assert (d.done, d.failed, d.unknown, d.nothing_to_do, d.count(Action.SUBMIT)) == ([], [], [], False, 4)


@pytest.mark.parametrize("records", [
    lambda j: [intent(j), {"t": "not_created", "key": j.key, "reason": "HTTP 422"}],
    lambda j: [intent(j), accepted(j, "t1"), done(j, "t1", "rejected", error="no balance")],
    lambda j: [{"t": "unrelated", "key": j.key}],  # a kind this version does not know: skipped, the job is new
], ids=["not_created", "rejected", "new"])
def test_jobs_that_never_ran_are_submitted(plan: Plan, records: Any) -> None:
    cat = job(plan, "cat")
    state = replay(records(cat))
    d = decide(plan, state, jobs=[cat])
    assert actions(d) == [(Action.SUBMIT, "cat")]
    assert d.work[0].state is state.jobs.get(cat.key)
    assert d.work[0].job is cat


def test_completed_with_its_images_is_done(plan: Plan) -> None:
    cat = job(plan, "cat")
    state = replay(completed(plan, cat, "t1"))
    d = decide(plan, state)
    assert state.jobs[cat.key] in d.done
    assert (Action.SUBMIT, "cat") not in actions(d)
    assert d.count(Action.SUBMIT) == 3


@pytest.mark.parametrize("kind", ["missing", "wrong size", "download pending", "no outputs"])
def test_completed_without_its_images_is_downloaded_again(plan: Plan, kind: str) -> None:
    cat = job(plan, "cat")
    records = {
        "missing": lambda: completed(plan, cat, "t1", on_disk=None),
        "wrong size": lambda: completed(plan, cat, "t1", size=999),
        "download pending": lambda: completed(plan, cat, "t1", download_pending=True),
        "no outputs": lambda: [intent(cat), accepted(cat, "t1"), done(cat, "t1", "completed", outputs=[])],
    }[kind]()
    state = replay(records)
    d = decide(plan, state, jobs=[cat])
    assert actions(d) == [(Action.REDOWNLOAD, "cat")]
    assert d.work[0].state is state.jobs[cat.key]
    assert d.done == []


def test_failed_jobs_wait_for_retry_failed(plan: Plan) -> None:
    cat = job(plan, "cat")
    state = replay([intent(cat), accepted(cat, "t1"), done(cat, "t1", "failed", error="boom")])
    d = decide(plan, state, jobs=[cat])
    assert (d.work, d.failed) == ([], [state.jobs[cat.key]])
    assert d.nothing_to_do
    d = decide(plan, state, jobs=[cat], retry_failed=True)
    assert actions(d) == [(Action.SUBMIT, "cat")]
    assert d.failed == []


def test_submitted_is_reattached_never_resubmitted(plan: Plan) -> None:
    cat = job(plan, "cat")
    state = replay([intent(cat), accepted(cat, "t1")])
    many: list[dict[str, Any]] = [{}, {"retry_failed": True, "retry_unknown": True}, {"reconcile": False}]
    for flags in many:
        d = decide(plan, state, jobs=[cat], **flags)
        assert actions(d) == [(Action.REATTACH, "cat")]
        assert d.work[0].state is not None and d.work[0].state.task_id == "t1"


@pytest.mark.parametrize("lost", [False, True], ids=["intent only", "unknown"])
@pytest.mark.parametrize(("reconcile", "retry_unknown", "expected"), [
    (True, False, Action.RECONCILE),
    (True, True, Action.RECONCILE),
    (False, True, Action.SUBMIT),
    (False, False, None),
])
def test_unresolved_submits(plan: Plan, lost: bool, reconcile: bool, retry_unknown: bool,
                            expected: Action | None) -> None:
    cat = job(plan, "cat")
    records = [intent(cat)] + ([{"t": "unknown", "key": cat.key, "reason": "timeout"}] if lost else [])
    state = replay(records)
    d = decide(plan, state, jobs=[cat], reconcile=reconcile, retry_unknown=retry_unknown)
    if expected is None:
        assert (d.work, d.unknown) == ([], [state.jobs[cat.key]])
        return
    assert actions(d) == [(expected, "cat")]
    assert d.work[0].retry_unknown is (retry_unknown and expected is Action.RECONCILE)
    assert d.unknown == []


def test_work_that_needs_no_new_money_goes_first(tmp_path: Path) -> None:
    plan = make_plan(tmp_path, "a", "b", "c", "d", "e", "f", "g")
    j = {x: job(plan, x) for x in "abcdefg"}
    state = replay([
        *completed(plan, j["b"], "tb", on_disk=None),  # redownload
        intent(j["c"]),  # reconcile
        intent(j["d"]), accepted(j["d"], "td"),  # reattach
        intent(j["f"]), accepted(j["f"], "tf"),  # reattach
        *completed(plan, j["g"], "tg", on_disk=None),  # redownload
    ])
    d = decide(plan, state)
    assert actions(d) == [(Action.REATTACH, "d"), (Action.REATTACH, "f"), (Action.REDOWNLOAD, "b"),
                          (Action.REDOWNLOAD, "g"), (Action.RECONCILE, "c"), (Action.SUBMIT, "a"),
                          (Action.SUBMIT, "e")]
    assert (d.count(Action.SUBMIT), d.count(Action.REATTACH), d.count(Action.RECONCILE),
            d.count(Action.REDOWNLOAD), d.count(Action.SKIP)) == (2, 2, 1, 2, 0)


def test_jobs_no_longer_in_the_plan(tmp_path: Path) -> None:
    old = make_plan(tmp_path, "cat", "dog", "fox", "owl", "emu")
    cat, dog, fox, owl, emu = (job(old, x) for x in ("cat", "dog", "fox", "owl", "emu"))
    state = replay([
        intent(cat), accepted(cat, "tc"),  # running: still followed
        intent(dog), {"t": "unknown", "key": dog.key, "reason": "lost"},  # unknown: still reconciled
        *completed(old, fox, "tf"),  # finished: left alone
        intent(owl), accepted(owl, "to"), done(owl, "to", "failed"),  # finished: left alone
        intent(emu), {"t": "not_created", "key": emu.key, "reason": "422"},  # nothing happened: left alone
    ])
    new = make_plan(tmp_path, "bee")  # the recipe changed completely
    d = decide(new, state)
    assert actions(d) == [(Action.REATTACH, "cat"), (Action.RECONCILE, "dog"), (Action.SUBMIT, "bee")]
    reattach, reconcile = d.work[0], d.work[1]
    assert reattach == Work(Action.REATTACH, cat.key, "cat", cat.output_name, {"subject": "cat"}, cat.cost, 1, None,
                            state.jobs[cat.key], False)
    assert (reconcile.job, reconcile.state, reconcile.cost) == (None, state.jobs[dog.key], dog.cost)
    assert (d.done, d.failed, d.unknown) == ([], [], [])
    # without reconciliation an orphaned unknown job has nothing to be done with
    assert actions(decide(new, state, reconcile=False)) == [(Action.REATTACH, "cat"), (Action.SUBMIT, "bee")]


def test_orphans_from_a_sparse_intent(tmp_path: Path) -> None:
    state = replay([{"t": "intent", "key": "f" * 64}, {"t": "accepted", "key": "f" * 64, "task": "t"}])
    d = decide(make_plan(tmp_path, "bee"), state)
    orphan = d.work[0]
    assert (orphan.action, orphan.job_id, orphan.output_name, orphan.labels, orphan.cost, orphan.units) == (
        Action.REATTACH, "ffffffffff", "ffffffffff", {}, 0, 1)


def test_jobs_argument_limits_the_plan(plan: Plan) -> None:
    owl = job(plan, "owl")
    d = decide(plan, ManifestState(), jobs=[owl])
    assert actions(d) == [(Action.SUBMIT, "owl")]


def test_a_cancelled_task_is_sent_again_by_a_plain_run(plan: Plan) -> None:
    cat = job(plan, "cat")
    state = replay([intent(cat), accepted(cat, "t1"), done(cat, "t1", "cancelled")])
    d = decide(plan, state, jobs=[cat])
    assert (actions(d), d.failed) == ([(Action.SUBMIT, "cat")], [])


@pytest.mark.parametrize(("sends", "action"), [(1, Action.SUBMIT), (5, Action.SUBMIT), (6, None)])
def test_a_provider_limit_failure_is_sent_again_within_its_retries(plan: Plan, sends: int, action: Action | None
                                                                   ) -> None:
    cat = job(plan, "cat")
    records = []
    for n in range(sends):
        records += [intent(cat, n + 1), accepted(cat, f"t{n}"),
                    done(cat, f"t{n}", "failed", error="Kling 1303: concurrency limit reached")]
    d = decide(plan, replay(records), jobs=[cat])
    assert [w.action for w in d.work] == ([action] if action else [])
    assert len(d.failed) == (0 if action else 1)


def test_other_failures_wait_for_retry_failed(plan: Plan) -> None:
    cat = job(plan, "cat")
    state = replay([intent(cat), accepted(cat, "t1"), done(cat, "t1", "failed", error="content policy")])
    assert decide(plan, state, jobs=[cat]).work == []
