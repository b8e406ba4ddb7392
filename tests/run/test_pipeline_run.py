"""Pipelines end to end against the emulator: a chain of three apps, priced and capped as one.

image -> image-to-image -> video. Each test reads what was paid from the emulator's own
ledger, never from the tool's account of it.
"""

from __future__ import annotations

import json
import signal
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from helpers import completed_outputs_intact, manifest, records, spawn_run, wait_for

from kling_pipeline.core.planning import plan_file

IMAGE, VIDEO = "klingai/image-o1", "klingai/video-o1"


def pipeline_text(*, subjects: str = "[mug, lamp, vase]", finishes: str = "[matte, glossy]", budget: str = "10",
                  animate_prompt: str = "The {{ refine.subject }} turns slowly", concurrency: int = 4,
                  where: str = "{finish: glossy}") -> str:
    return f"""
version: 1
name: chain
app: klingai/image-o1@0pbaxv40
output: {{dir: out}}
budget: {{max_usd: {budget}}}
concurrency: {concurrency}
stages:
  draft:
    matrix:
      subject: {subjects}
    input:
      prompt: "A product photo of a {{{{ subject }}}}"
      resolution: 1k
  refine:
    needs: draft
    matrix:
      finish: {finishes}
    input:
      prompt: "{{{{ draft.input.prompt }}}}, {{{{ finish }}}} finish"
      image: "{{{{ draft.image }}}}"
      resolution: 2k
  animate:
    app: klingai/video-o1@ef28809a
    needs: refine
    where: {where}
    input:
      prompt: "{animate_prompt}"
      image: "{{{{ refine.image }}}}"
      duration: 3
      mode: std
"""


# 3 drafts + 6 refinements at $0.028; 3 videos of 3 s at $0.084/s (std, no reference video)
FULL_COST = 9 * 2_800_000 + 3 * 3 * 8_400_000


def by_app(ledger: dict[str, Any]) -> Counter[str]:
    return Counter(str(c["app"]).split("@")[0] for c in ledger["charges"])


def charged_once(ledger: dict[str, Any]) -> bool:
    """No input was charged twice (the service's own count of charges per input)."""
    per_input = Counter(c["input_sha256"] for c in ledger["charges"])
    return max(per_input.values(), default=0) <= 1


def test_a_three_stage_pipeline_completes_with_planned_cost_equal_to_billed(cli, emulator, recipe):
    emu = emulator()
    path = recipe(pipeline_text())
    plan = plan_file(path)
    assert [len(sp.plan.jobs) for sp in plan.stages] == [3, 6, 3]
    assert plan.total_cost == FULL_COST
    result = cli("run", str(path), "--base-url", emu.base_url)
    assert result.code == 0, result.err
    ledger = emu.ledger()
    assert ledger["total_microcents"] == plan.total_cost  # planned = billed, exactly
    assert by_app(ledger) == {IMAGE: 9, VIDEO: 3}
    assert charged_once(ledger)
    assert "stages: draft 3/3 done · refine 6/6 done · animate 3/3 done" in result.err
    out = path.parent / "out"
    assert completed_outputs_intact(out) == 12
    assert len(list((out / "draft").glob("*.png"))) == 3
    assert len(list((out / "refine").glob("*.png"))) == 6
    assert len(list((out / "animate").glob("*.mp4"))) == 3
    # upstream files went downstream by the service's URL, without a round trip through an upload
    assert emu.limit_stats()["uploads"]["allowed"] == 0
    tasks = {c["task_id"]: c for c in ledger["charges"]}
    for side_path in (out / "animate").glob("*.mp4.json"):
        side = json.loads(side_path.read_text())
        assert side["stage"] == "animate"
        assert [link["stage"] for link in side["chain"]] == ["draft", "refine"]
        draft, refine = side["chain"]
        assert draft["task"] in tasks and refine["task"] in tasks
        assert tasks[refine["task"]]["input"]["image"].startswith(emu.base_url)  # the draft's URL
        refine_file = next((out / "refine").glob(f"*{side['input_files']['image']['source'].split('/')[-1]}"))
        assert side["input_files"]["image"]["sha256"] == refine["files"]["image"]
        assert side["input"]["image"] == side["input_files"]["image"]["uri"]
        assert refine_file.exists()


def test_changing_the_last_stage_re_runs_only_it(cli, emulator, recipe):
    emu = emulator()
    path = recipe(pipeline_text())
    assert cli("run", str(path), "--base-url", emu.base_url).code == 0
    path.write_text(pipeline_text(animate_prompt="The {{ refine.subject }} spins under a spotlight"))
    result = cli("run", str(path), "--base-url", emu.base_url)
    assert result.code == 0, result.err
    assert "3 completed, 9 done earlier" in result.err
    assert by_app(emu.ledger()) == {IMAGE: 9, VIDEO: 6}  # no new draft or refine task
    assert cli("run", str(path), "--base-url", emu.base_url).err.startswith("nothing to do: 12 jobs done")


def test_a_changed_draft_re_runs_only_its_own_descendants(cli, emulator, recipe):
    emu = emulator()
    path = recipe(pipeline_text())
    assert cli("run", str(path), "--base-url", emu.base_url).code == 0
    path.write_text(pipeline_text(subjects="[mug, lamp, bowl]"))  # vase out, bowl in
    result = cli("run", str(path), "--base-url", emu.base_url)
    assert result.code == 0, result.err
    ledger = emu.ledger()
    prompts = [c["input"]["prompt"] for c in ledger["charges"][12:]]
    assert len(prompts) == 4 and all("bowl" in p for p in prompts)  # 1 draft, 2 refinements, 1 video
    assert charged_once(ledger)


def test_only_narrows_the_whole_chain(cli, emulator, recipe):
    emu = emulator()
    path = recipe(pipeline_text())
    result = cli("run", str(path), "--base-url", emu.base_url, "--only", "subject=lamp")
    assert result.code == 0, result.err
    assert by_app(emu.ledger()) == {IMAGE: 3, VIDEO: 1}
    assert all("lamp" in c["input"]["prompt"] for c in emu.ledger()["charges"][:1])


def test_a_budget_cut_mid_chain_stops_cleanly_with_nothing_reserved(cli, emulator, recipe):
    emu = emulator()
    cap = 20_000_000  # $0.20: the 9 images ($0.252) do not all fit, nor any video
    path = recipe(pipeline_text(budget="0.20", concurrency=2))
    result = cli("run", str(path), "--base-url", emu.base_url)
    assert result.code == 3, result.err
    assert "budget stop: cut short:" in result.err
    assert "finishing would cost at most" in result.err
    state = manifest(path.parent / "out")
    assert state.reserved == 0  # no money left reserved for jobs that can no longer start
    assert state.settled == emu.ledger()["total_microcents"] <= cap
    assert charged_once(emu.ledger())
    status = cli("status", str(path))
    assert status.code == 0, status.err
    assert "stage animate: 0/3 done" in status.out
    # more money: the run carries on where it stopped and pays nothing twice
    path.write_text(pipeline_text(budget="10", concurrency=2))
    result = cli("run", str(path), "--base-url", emu.base_url)
    assert result.code == 0, result.err
    ledger = emu.ledger()
    assert ledger["total_microcents"] == FULL_COST and charged_once(ledger)


def test_an_expired_upstream_url_is_replaced_by_the_local_file_uploaded_once(cli, emulator, recipe):
    emu = emulator()
    path = recipe(pipeline_text(finishes="[matte, glossy, satin]", where="{finish: [glossy, satin]}"))
    result = cli("run", str(path), "--base-url", emu.base_url, "--upstream-url-ttl", "0")
    assert result.code == 0, result.err
    ledger = emu.ledger()
    assert charged_once(ledger)
    # each draft read by 3 refinements and each of 6 refinements by one video: 3 + 6 files, each uploaded once
    assert emu.limit_stats()["uploads"]["allowed"] == 9
    refine_inputs = [c["input"]["image"] for c in ledger["charges"] if "finish" in c["input"]["prompt"]]
    assert len(refine_inputs) == 9 and len(set(refine_inputs)) == 3
    uploads = records(path.parent / "out", "upload")
    assert len(uploads) == 9 and len({u["sha256"] for u in uploads}) == 9


def test_shards_split_a_pipeline_by_chain_and_together_pay_each_job_once(cli, emulator, recipe):
    emu = emulator()
    path = recipe(pipeline_text())
    for shard in ("1/2", "2/2"):
        result = cli("run", str(path), "--base-url", emu.base_url, "--shard", shard)
        assert result.code == 0, result.err
    ledger = emu.ledger()
    assert ledger["total_microcents"] == FULL_COST and charged_once(ledger)
    out = path.parent / "out"
    shards = list(out.glob("manifest.shard-*.jsonl"))
    assert len(shards) == 2
    assert cli("merge", str(out)).code == 0
    status = cli("status", str(path))
    assert "stage animate: 3/3 done" in status.out, status.out


def test_detach_then_collect_then_run_continues_the_chain(cli, emulator, recipe):
    emu = emulator(latency=0.3)
    path = recipe(pipeline_text())
    result = cli("run", str(path), "--base-url", emu.base_url, "--detach")
    assert result.code == 0, result.err
    assert by_app(emu.ledger()) == {}  # sent, not finished yet
    assert cli("collect", str(path), "--base-url", emu.base_url).code == 0
    assert by_app(emu.ledger()) == {IMAGE: 3}
    result = cli("run", str(path), "--base-url", emu.base_url)
    assert result.code == 0, result.err
    ledger = emu.ledger()
    assert ledger["total_microcents"] == FULL_COST and charged_once(ledger)


def _intents(out: Path, stage: str) -> int:
    if not (out / "manifest.jsonl").exists():
        return 0
    return sum(1 for r in records(out, "intent") if r.get("stage") == stage)


@pytest.mark.slow
def test_kill_9_mid_chain_then_resume_pays_each_job_once(cli, emulator, recipe):
    emu = emulator(latency=0.6, response_lost_rate=0.2, index_lag=0.2)
    path = recipe(pipeline_text(concurrency=3))
    out = path.parent / "out"
    proc = spawn_run(path, emu.base_url, "--reconcile-window", "2")
    wait_for(lambda: _intents(out, "refine") >= 2, proc)
    proc.kill()
    proc.communicate()
    result = cli("run", str(path), "--base-url", emu.base_url, "--reconcile-window", "2")
    assert result.code == 0, result.err
    ledger = emu.ledger()
    assert ledger["total_microcents"] == FULL_COST
    assert charged_once(ledger)
    assert completed_outputs_intact(out) == 12


@pytest.mark.slow
def test_ctrl_c_mid_chain_exits_130_and_the_resume_finishes_it(cli, emulator, recipe):
    emu = emulator(latency=0.5)
    path = recipe(pipeline_text(concurrency=2))
    out = path.parent / "out"
    proc = spawn_run(path, emu.base_url)
    wait_for(lambda: _intents(out, "refine") >= 1, proc)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    result = cli("run", str(path), "--base-url", emu.base_url)
    assert result.code == 0, result.err
    ledger = emu.ledger()
    assert ledger["total_microcents"] == FULL_COST and charged_once(ledger)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_the_cap_holds_and_nothing_is_paid_twice_across_stages_under_faults(cli, emulator, recipe, seed):
    """The fault property of one-stage sweeps, across a chain: whatever fails, spend by the
    service's ledger stays under the cap, no input is charged twice, and the manifest's
    completed tasks are exactly the charged ones."""
    emu = emulator(seed=seed, response_lost_rate=0.2, rate_limit_rate=0.2, rate_limit_retry_after=0.05,
                   server_error_rate=0.1, server_error_retry_after=0.05, task_failure_rate=0.15,
                   provider_limit_rate=0.1, stream_cut_rate=0.2, index_lag=0.2)
    cap = 45_000_000
    path = recipe(pipeline_text(budget="0.45", concurrency=4))
    out = path.parent / "out"
    for _ in range(3):
        result = cli("run", str(path), "--base-url", emu.base_url, "--reconcile-window", "3", "--retry-failed")
        assert result.code in (0, 1, 3), result.err
        ledger = emu.ledger()
        assert ledger["total_microcents"] <= cap
        assert charged_once(ledger)
        state = manifest(out)
        assert state.settled + state.reserved <= cap
        assert {c["task_id"] for c in ledger["charges"]} == {j.task_id for j in state if j.state == "completed"}
    completed_outputs_intact(out)


def fan_text(*, num_images: int, refine_prompt: str) -> str:
    """Gemini sketches (a list of ``num_images`` images and a text), each image refined by image-o1."""
    return f"""
version: 1
name: fan
output: {{dir: out}}
budget: {{max_usd: 5}}
stages:
  sketch:
    app: google/gemini-2-5-flash-image@57fbd965
    matrix:
      subject: [kite, boat]
    input:
      prompt: "Sketches of a {{{{ subject }}}}"
      num_images: {num_images}
  refine:
    app: klingai/image-o1@0pbaxv40
    needs: sketch
    input:
      prompt: "{refine_prompt}"
      image: "{{{{ sketch.images }}}}"
      resolution: 1k
"""


def test_a_list_output_fans_out_one_job_per_file_and_a_text_output_feeds_a_text_field(cli, emulator, recipe):
    """gemini returns ``images`` (a list, num_images of them) and a ``description`` (text): each
    image is one refine job; the description is read, as text, into the refine prompt."""
    emu = emulator()
    path = recipe(fan_text(num_images=2, refine_prompt="Refine this: {{ sketch.description }}"))
    plan = plan_file(path)
    assert [len(sp.plan.jobs) for sp in plan.stages] == [2, 4]  # 2 sketches x num_images 2, counted at most
    result = cli("run", str(path), "--base-url", emu.base_url)
    assert result.code == 0, result.err
    ledger = emu.ledger()
    refines = [c for c in ledger["charges"] if c["app"].startswith(IMAGE)]
    assert len(refines) == 4 and charged_once(ledger)
    assert {c["input"]["prompt"] for c in refines} == {"Refine this: Here are 2 image(s) for: Sketches of a kite",
                                                      "Refine this: Here are 2 image(s) for: Sketches of a boat"}
    assert len({c["input"]["image"] for c in refines}) == 4  # each of the 4 sketches, once



def test_files_the_upstream_never_returned_are_skipped_and_said_so(cli, emulator, recipe):
    """Each sketch is billed for 3 images but returns 2 (the emulator's short-list fault):
    the refine jobs planned on the third image of each can never be made."""
    emu = emulator(short_list_rate=1.0)
    path = recipe(fan_text(num_images=3, refine_prompt="Refine this sketch"))
    assert [len(sp.plan.jobs) for sp in plan_file(path).stages] == [2, 6]
    result = cli("run", str(path), "--base-url", emu.base_url)
    assert result.code == 0, result.err
    assert len([c for c in emu.ledger()["charges"] if c["app"].startswith(IMAGE)]) == 4
    assert "stages: sketch 2/2 done · refine 4/6 done (2 skipped)" in result.err
    assert "skipped: 2 jobs planned on upstream files the service did not return" in result.err
    status = json.loads(cli("status", str(path), "--json").out)
    refine = next(s for s in status["stages"] if s["name"] == "refine")
    assert (refine["done"], refine["skipped"], refine["waiting"], refine["left_usd"]) == (4, 2, 0, "0.00")
    again = cli("run", str(path), "--base-url", emu.base_url)
    assert again.code == 0 and len(emu.ledger()["charges"]) == 6  # nothing more to pay for


def test_prune_keeps_the_current_chain_and_removes_only_what_a_changed_draft_left_behind(cli, emulator, recipe):
    emu = emulator()
    path = recipe(pipeline_text())
    assert cli("run", str(path), "--base-url", emu.base_url, "--no-report").code == 0
    untouched = json.loads(cli("prune", str(path), "--json").out)
    assert untouched["totals"]["files"] == 0  # downstream jobs are current although their keys are not the plan's
    out = path.parent / "out"
    before = {p for p in out.rglob("*") if p.is_file()}
    path.write_text(pipeline_text(subjects="[mug, lamp, bowl]"))  # vase out, bowl in
    assert cli("run", str(path), "--base-url", emu.base_url, "--no-report").code == 0
    vase = {p for p in before if p.name.endswith(".json") and p.name != "manifest.jsonl"
            and "vase" in json.loads(p.read_text()).get("input", {}).get("prompt", "")}
    assert len(vase) == 4  # its draft, two refinements and a video
    doc = json.loads(cli("prune", str(path), "--yes", "--json").out)
    # 3 images at $0.028 and 3 s of video at $0.084
    assert (doc["removed"], doc["totals"]["files"], doc["totals"]["billed_usd"]) == (True, 8, "0.336")
    assert not any(p.exists() or p.with_suffix("").exists() for p in vase)
    kept = [len(list((out / stage).glob(glob))) for stage, glob in
            [("draft", "*.png"), ("refine", "*.png"), ("animate", "*.mp4")]]
    assert kept == [3, 6, 3]  # the current chain, whole
    assert cli("run", str(path), "--base-url", emu.base_url).err.startswith("nothing to do: 12 jobs done")
