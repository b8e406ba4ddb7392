"""A real sweep's output directory, made once per session: the emulator on loopback, the real
``run`` command in-process (3 axes, 2 repeats, markup in values and prompts, seeded task
failures, a budget that leaves jobs not run)."""

from __future__ import annotations

import io
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from tests_support import TEST_LIMITS

from kling_pipeline.cli import main
from kling_pipeline.core.planning import Plan, plan_file
from kling_pipeline.emulator import EmulatorConfig, EmulatorServer, Faults, Latency
from kling_pipeline.store.journal import read_records
from kling_pipeline.store.state import ManifestState

SCRIPT_SUBJECT = "<script>alert(1)</script>"
ATTR_SUBJECT = '"><img src=x onerror=alert(2)>'
SUBJECTS = (SCRIPT_SUBJECT, "ceramic mug", ATTR_SUBJECT)
STYLES = ("watercolor", "film noir")
RATIOS = ("1:1", "16:9")

GALLERY_RECIPE = r"""
version: 1
name: gallery
description: three axes, two samples each, markup in values and in the prompt
app: klingai/image-o1@0pbaxv40
matrix:
  subject: ["<script>alert(1)</script>", "ceramic mug", "\"><img src=x onerror=alert(2)>"]
  style: [watercolor, film noir]
  ratio: ["1:1", "16:9"]
repeat: 2
input:
  prompt: "A {{ subject }} on a table, {{ style }} style & <b>bold</b>"
  aspect_ratio: "{{ ratio }}"
output:
  dir: out
  # spaces, '#' and ':' in directory names: links must be percent-encoded
  filename: "{{ style }} #{{ repeat_index }}/{{ ratio }}/{{ job_id }}_{{ short_key }}"
budget:
  max_usd: 0.40
concurrency: 3
"""


@dataclass(frozen=True)
class Sweep:
    recipe: Path
    out_dir: Path
    plan: Plan
    state: ManifestState
    code: int
    err: str


def write_recipe(directory: Path, text: str, name: str = "r.yaml") -> Path:
    path = directory / name
    path.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def gallery(tmp_path_factory: pytest.TempPathFactory) -> Sweep:
    """The gallery recipe, run once against the emulator (25% of tasks fail, by a seeded hash)."""
    directory = tmp_path_factory.mktemp("gallery")
    recipe = write_recipe(directory, GALLERY_RECIPE, "gallery.yaml")
    out, err = io.StringIO(), io.StringIO()
    config = EmulatorConfig(latency=Latency.fixed(0.05), seed=0, faults=Faults(task_failure_rate=0.25),
                            limits=TEST_LIMITS)
    with pytest.MonkeyPatch.context() as mp, EmulatorServer(config) as emu:
        mp.setenv("INFERENCE_API_KEY", "inf_test_key_report")
        mp.delenv("INFERENCE_BASE_URL", raising=False)
        # a result cache of its own: a session fixture runs before the per-test one, and the user's
        # cache, filled by an earlier session, would serve the jobs this sweep must pay and fail
        mp.setenv("KLING_PIPELINE_CACHE", str(tmp_path_factory.mktemp("result-cache")))
        code = main(["run", str(recipe), "--base-url", emu.base_url], out=out, err=err)
    plan = plan_file(recipe)
    state = ManifestState.replay(read_records(plan.output_dir / "manifest.jsonl"))
    sweep = Sweep(recipe, plan.output_dir, plan, state, code, err.getvalue())
    states = [state.jobs[j.key].state if j.key in state.jobs else "none" for j in plan.jobs]
    # The fixture is only useful with every kind of cell in it.
    assert code == 3, sweep.err  # budget stop
    assert "completed" in states and "failed" in states and "none" in states, (states, sweep.err)
    return sweep


@pytest.fixture
def recipe_file(tmp_path: Path) -> Callable[..., Path]:
    def write(text: str, name: str = "r.yaml") -> Path:
        return write_recipe(tmp_path, text, name)

    return write
