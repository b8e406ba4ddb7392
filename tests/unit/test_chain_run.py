"""The run's view of a pipeline (run/chain.py, run/pipeline.py), without a server: plan a real
recipe, feed the chain the records a run would write, and look at what it makes of them."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from kling_pipeline.core.chain import TOKEN_PREFIX
from kling_pipeline.core.planning import Plan, plan_file
from kling_pipeline.run.chain import Chain, prepare
from kling_pipeline.run.options import RunOptions
from kling_pipeline.run.pipeline import stage_tally
from kling_pipeline.run.session import decide_run, stage_runs
from kling_pipeline.run.work import Action
from kling_pipeline.store.records import AcceptedRecord, DoneRecord, IntentRecord, OutputEntry
from kling_pipeline.store.state import ManifestState

RECIPE = """
    version: 1
    name: chain
    app: klingai/image-o1@0pbaxv40
    output: {dir: out}
    stages:
      draft:
        matrix:
          subject: [mug, lamp]
        input: {prompt: "A {{ subject }}", resolution: 1k}
      refine:
        needs: draft
        matrix:
          finish: [matte, glossy]
        input: {prompt: "{{ draft.input.prompt }}, {{ finish }}", image: "{{ draft.image }}"}
"""


@pytest.fixture
def plan(tmp_path: Path) -> Plan:
    path = tmp_path / "chain.yaml"
    path.write_text(textwrap.dedent(RECIPE))
    return plan_file(path)


def completed(key: str, job: str, sha: str, at: float = 1e12) -> DoneRecord:
    """A draft's completion: one image at a service URL, with its hash."""
    uri = f"https://files.example/{sha[:8]}.png"
    return DoneRecord(key, job, f"task-{job}", "completed", 2_800_000,
                      outputs=(OutputEntry(f"draft/{job}.png", sha, 10, "image/png", uri, f"draft/{job}.png.json"),),
                      raw_output={"image": uri}, at=at)


def test_downstream_jobs_are_made_with_the_upstream_file_hash_in_their_key(plan: Plan) -> None:
    chain = Chain(plan, stage_runs(plan))
    draft = plan.stages[0].plan.jobs[0]
    planned = [j for j in plan.stages[1].plan.jobs if "mug" in j.id]
    chain.note(completed(draft.key, draft.id, "a" * 64))
    made, missing = chain.make(draft.key)
    assert missing == [] and len(made) == 2
    assert {m.plan_key for m in made} == {j.key for j in planned}
    assert all(m.job.key not in {j.key for j in planned} for m in made)  # real keys differ from the plan's
    assert all(m.request["image"].startswith(TOKEN_PREFIX) for m in made)
    # another file from the same draft job: other keys (a changed draft re-runs its descendants)
    other = Chain(plan, stage_runs(plan))
    other.note(completed(draft.key, draft.id, "b" * 64))
    assert {m.job.key for m in other.make(draft.key)[0]}.isdisjoint({m.job.key for m in made})


class Uploads:
    def __init__(self) -> None:
        self.sent: list[str] = []

    async def upload(self, local: object, value: str) -> str:
        self.sent.append(value)
        return "inf://uploaded"


@pytest.mark.anyio
async def test_a_fresh_url_is_passed_on_and_a_stale_one_replaced_by_the_local_file(plan: Plan, tmp_path: Path) -> None:
    draft = plan.stages[0].plan.jobs[0]
    fresh = Chain(plan, stage_runs(plan), url_ttl=1e10)
    fresh.note(completed(draft.key, draft.id, "a" * 64, at=0.0))
    made = fresh.make(draft.key)[0][0]
    uploads = Uploads()
    rendered, files = await prepare(made, tmp_path, uploads)
    assert rendered.request["image"] == "https://files.example/aaaaaaaa.png" and uploads.sent == []
    assert files["image"]["upstream"] == {"stage": "draft", "job": draft.id, "key": draft.key,
                                          "task": f"task-{draft.id}"}
    stale = Chain(plan, stage_runs(plan), url_ttl=0.0)
    stale.note(completed(draft.key, draft.id, "a" * 64, at=0.0))
    rendered, files = await prepare(stale.make(draft.key)[0][0], tmp_path, uploads)
    assert rendered.request["image"] == "inf://uploaded" and uploads.sent == [str(tmp_path / f"draft/{draft.id}.png")]


def test_a_job_whose_twin_is_made_is_not_made_again(tmp_path: Path) -> None:
    path = tmp_path / "twins.yaml"
    path.write_text(textwrap.dedent("""
        version: 1
        name: twins
        app: klingai/image-o1@0pbaxv40
        output: {dir: out}
        stages:
          draft:
            repeat: 2
            input: {prompt: "A paper boat", resolution: 1k}
          refine:
            needs: draft
            input: {prompt: "The same boat, in ink", image: "{{ draft.image }}"}
        """))
    plan = plan_file(path)
    chain = Chain(plan, stage_runs(plan))
    a, b = plan.stages[0].plan.jobs
    chain.note(completed(a.key, a.id, "d" * 64))
    chain.note(completed(b.key, b.id, "d" * 64))
    (one,) = chain.make(a.key)[0]
    assert chain.make(b.key) == ([], [])  # the same request: not made twice
    state = ManifestState()
    for r in (IntentRecord(a.key, a.id, 1, {}, 1), completed(a.key, a.id, "d" * 64),
              IntentRecord(b.key, b.id, 1, {}, 1), completed(b.key, b.id, "d" * 64),
              IntentRecord(one.job.key, one.job.id, 1, {}, 1), AcceptedRecord(one.job.key, "t"),
              DoneRecord(one.job.key, one.job.id, "t", "completed", 2_800_000)):
        state.apply(r)
    tally = {t.name: (t.planned, t.done, t.waiting) for t in stage_tally(chain, state)}
    assert tally == {"draft": (2, 2, 0), "refine": (2, 2, 0)}


def test_a_resume_decides_downstream_jobs_from_the_drafts_already_done(plan: Plan) -> None:
    mug, _lamp = plan.stages[0].plan.jobs
    state = ManifestState()
    for r in (IntentRecord(mug.key, mug.id, 1, {}, 1), completed(mug.key, mug.id, "e" * 64)):
        state.apply(r)
    (plan.output_dir / "draft").mkdir(parents=True)
    (plan.output_dir / f"draft/{mug.id}.png").write_bytes(b"x" * 10)
    decision, downstream = decide_run(plan, state, RunOptions())
    assert downstream is not None
    actions = sorted((w.action, w.stage) for w in decision.work)
    assert actions == [(Action.SUBMIT, "draft"), (Action.SUBMIT, "refine"), (Action.SUBMIT, "refine")]
    assert (decision.waiting, decision.waiting_cost) == (2, 2 * 2_800_000)  # the lamp's, once its draft exists
