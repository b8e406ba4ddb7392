"""The ``validate`` and ``plan`` commands: output, exit codes, ``--json``, no tracebacks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from kling_pipeline import __version__
from kling_pipeline.cli import _plan

from .conftest import WriteRecipe
from .util import HEAD, cli

ROOT = Path(__file__).resolve().parents[2]
SWEEP = HEAD + """\
matrix:
  subject: [mug, lamp]
  k: [1, 2]
input:
  prompt: "A {{ subject }}"
  n: "{{ k }}"
budget: {max_usd: 0.10}
"""
N_WARNING = ("r.yaml:5:10: warning: [subject=mug, k=2] input.n = 2: billed as 2 images ($0.056 a task) but the app "
             "returns 1; use 'repeat: 2' with n: 1 to get 2 images (and 1 more combination)\n")
VALID = HEAD + "matrix:\n  subject: [mug, lamp]\ninput:\n  prompt: 'A {{ subject }}'\n"
INVALID = HEAD + "input:\n  prompt: x\n  n: 12\n"


def test_validate_a_valid_recipe(write: WriteRecipe) -> None:
    write(VALID)
    assert cli("validate", "r.yaml") == (0, "r.yaml: ok — 2 jobs, $0.056\n", "")


def test_validate_prints_warnings_on_stderr(write: WriteRecipe) -> None:
    write(SWEEP)
    assert cli("validate", "r.yaml") == (0, "r.yaml: ok — 4 jobs, $0.168\n", N_WARNING)


def test_validate_an_invalid_recipe(write: WriteRecipe) -> None:
    write(INVALID)
    assert cli("validate", "r.yaml") == (
        2, "", "r.yaml:5:6: [] input.n: 12 is out of range: must be at most 9\n1 error in r.yaml; nothing was sent\n"
    )


def test_validate_several_recipes_reports_each(write: WriteRecipe) -> None:
    write(VALID, "good.yaml")
    write(INVALID, "bad.yaml")
    code, out, err = cli("validate", "good.yaml", "bad.yaml", "missing.yaml")
    assert code == 2
    assert out == "good.yaml: ok — 2 jobs, $0.056\n"
    assert err == ("bad.yaml:5:6: [] input.n: 12 is out of range: must be at most 9\n"
                   "1 error in bad.yaml; nothing was sent\n"
                   "missing.yaml: no such recipe file\n"
                   "1 error; nothing was sent\n")


def test_plan_prints_the_summary(write: WriteRecipe) -> None:
    write(SWEEP.replace("max_usd: 0.10", "max_usd: 0.20"))
    code, out, err = cli("plan", "r.yaml")
    assert (code, err) == (0, N_WARNING)
    lines = out.splitlines()
    assert lines[:4] == [
        "r.yaml: r — klingai/image-o1@0pbaxv40",
        "  4 jobs · 6 images billed · 4 images returned · $0.168 at $0.028/image (price read 2026-11-25)",
        "  budget $0.20: within budget ($0.032 to spare)",
        "  output: out/r",
    ]
    assert lines[4:10] == [
        "  by subject:",
        "    mug       2 jobs      3 images      $0.084",
        "    lamp      2 jobs      3 images      $0.084",
        "  by k:",
        "    1      2 jobs      2 images      $0.056",
        "    2      2 jobs      4 images      $0.112",
    ]
    assert lines[10] == "  jobs:"
    assert [line.split()[0] for line in lines[11:]] == ["mug-1", "mug-2", "lamp-1", "lamp-2"]
    assert lines[12].split()[2:] == ["2", "images", "$0.056", "->", lines[12].split()[-1]]


def test_plan_over_budget_exits_3_and_says_by_how_much(write: WriteRecipe) -> None:
    write(SWEEP)
    code, out, _ = cli("plan", "r.yaml")
    assert code == 3
    assert out.splitlines()[2] == ("  budget $0.10: OVER BUDGET by $0.068 — raise budget.max_usd, or narrow the sweep "
                                   "(--only axis=value)")


def test_plan_budget_flag_and_only(write: WriteRecipe) -> None:
    write(SWEEP)
    code, out, _ = cli("plan", "r.yaml", "--only", "k=1", "--budget", "1")
    assert code == 0
    assert out.splitlines()[1:4] == [
        "  2 jobs · 2 images billed · 2 images returned · $0.056 at $0.028/image (price read 2026-11-25)",
        "  budget $0.10: within budget ($0.044 to spare)",
        "  2 combinations left out by --only",
    ]
    assert cli("plan", "r.yaml", "--only", "k=1", "--budget", "0.05")[0] == 3


def test_plan_invalid_recipe_exits_2(write: WriteRecipe) -> None:
    write(INVALID)
    code, out, err = cli("plan", "r.yaml")
    assert (code, out) == (2, "")
    assert err.endswith("1 error in r.yaml; nothing was sent\n")


@pytest.mark.parametrize(("argv", "message"), [
    (["plan", "r.yaml", "--only", "nope=1"], "error: --only nope=...: the recipe has no matrix key 'nope' "
                                               "(keys: k, subject)\n"),
    (["plan", "r.yaml", "--only", "k=7"], "error: --only k=7: no combination has k=7 (values: 1, 2)\n"),
    (["plan", "r.yaml", "--only", "k"], "error: --only takes axis=value, got 'k'\n"),
    (["plan", "r.yaml", "--budget", "lots"], "error: --budget: not an amount in USD: 'lots'\n"),
    (["plan", "r.yaml", "--budget", "-1"], "error: --budget: not a non-negative amount in USD: '-1'\n"),
])
def test_bad_flag_values_exit_2(write: WriteRecipe, argv: list[str], message: str) -> None:
    write(SWEEP)
    assert cli(*argv) == (2, "", message)


@pytest.mark.parametrize("argv", [[], ["frobnicate"], ["plan"], ["validate"], ["plan", "a.yaml", "b.yaml"],
                                  ["plan", "r.yaml", "--rows", "many"], ["plan", "r.yaml", "--no-such-flag"]])
def test_usage_errors_exit_2(write: WriteRecipe, argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    write(SWEEP)
    code, out, _ = cli(*argv)
    assert (code, out) == (2, "")
    assert "usage: kling-pipeline" in capsys.readouterr().err  # argparse writes to sys.stderr


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli("--version")[0] == 0
    assert capsys.readouterr().out == f"kling-pipeline {__version__}\n"


BAD_INPUTS = [
    "", "- a list\n", "{", "\x00", "version: 1\napp: !!python/object/apply:os.system ['true']\n",
    "version: 1\napp: klingai/image-o1\ninput: {prompt: '{{ ''.__class__ }}'}\n",
    "version: 1\napp: klingai/image-o1\ninput: {prompt: '{{ 1/0 }}'}\n",
    "version: 1\napp: klingai/image-o1\ninput: {prompt: '{{ x'}\n",
    "version: 1\napp: klingai/image-o1\nextends: r.yaml\n",
    "version: 1\napp: klingai/image-o1\ninput: {prompt: x, image: 'data:image/png;base64,@@'}\n",
    "version: 1\napp: klingai/image-o1\ninput: {prompt: x, image: '/dev/null'}\n",
    "version: 1\napp: klingai/image-o1\nmatrix: {a: [1], zip: [[a, a]]}\ninput: {prompt: x}\n",
    "version: 1\napp: klingai/image-o1\noutput: {filename: '{{ recipe }}'}\nrepeat: 2\ninput: {prompt: x}\n",
]


@pytest.mark.parametrize("text", BAD_INPUTS)
def test_no_traceback_for_bad_input(write: WriteRecipe, text: str) -> None:
    write(text)
    for argv in (["validate", "r.yaml"], ["plan", "r.yaml"], ["plan", "r.yaml", "--json"]):
        code, _, err = cli(*argv)
        assert code == 2, (argv, err)
        assert "Traceback" not in err
        assert "internal error" not in err
        assert err.endswith("nothing was sent\n")


def test_an_internal_error_is_reported_without_a_traceback(write: WriteRecipe,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    write(VALID)

    def boom(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.delenv("KLING_PIPELINE_DEBUG", raising=False)
    monkeypatch.setattr(_plan, "plan_file", boom)
    assert cli("plan", "r.yaml") == (1, "", "internal error: RuntimeError: boom\n"
                                            "This is a bug in kling-pipeline; set KLING_PIPELINE_DEBUG=1 for the "
                                            "traceback.\n")


def test_plan_json_document(write: WriteRecipe) -> None:
    write(SWEEP)
    code, out, err = cli("plan", "r.yaml", "--json")
    assert (code, err) == (3, N_WARNING)
    doc = json.loads(out)
    jobs = doc.pop("jobs")
    assert doc == {
        "format": "kling-pipeline.plan/1",
        "recipe": "r.yaml",
        "name": "r",
        "app": "klingai/image-o1@0pbaxv40",
        "price": {"usd_per_image": "0.028", "usd_per_unit": "0.028", "unit": "image", "quantity_field": "n",
                  "confidence": "exact", "rates": [], "source": "inference.sh app page of klingai/image-o1",
                  "read_on": "2026-11-25"},
        "totals": {"jobs": 4, "images_billed": 6, "images_returned": 4, "units_billed": 6, "cost_usd": "0.168",
                   "cost_low_usd": "0.168", "unbounded_jobs": 0, "collapsed": 0, "filtered_out": 0,
                   "removed_by_filter": 0},
        "budget": {"max_usd": "0.10", "within": False, "over_usd": "0.068"},
        "rate_limit": {"runs_per_minute": 100.0, "min_submit_seconds": 2.4, "read_on": "2026-11-26",
                       "source": "the inference.sh API's published rate limits, per API key "
                                 "(../shared/api/CONTRACT.md, 'Transport')"},
        "output_dir": "out/r",
        "cache": {"jobs": 0, "saved_usd": "0.00"},
        "breakdown": {
            "subject": [{"value": "mug", "jobs": 2, "images": 3, "units": 3, "cost_usd": "0.084"},
                        {"value": "lamp", "jobs": 2, "images": 3, "units": 3, "cost_usd": "0.084"}],
            "k": [{"value": "1", "jobs": 2, "images": 2, "units": 2, "cost_usd": "0.056"},
                  {"value": "2", "jobs": 2, "images": 4, "units": 4, "cost_usd": "0.112"}],
        },
        "warnings": [{"file": "r.yaml", "line": 5, "col": 10, "combination": "[subject=mug, k=2]",
                      "message": "input.n = 2: billed as 2 images ($0.056 a task) but the app returns 1; use "
                                 "'repeat: 2' with n: 1 to get 2 images (and 1 more combination)"}],
    }
    assert [list(j) for j in jobs] == [["id", "key", "combination", "repeat_index", "images", "units", "cost_usd",
                                        "output", "request", "cached"]] * 4
    assert [j["request"] for j in jobs] == [{"prompt": "A mug", "n": 1}, {"prompt": "A mug", "n": 2},
                                            {"prompt": "A lamp", "n": 1}, {"prompt": "A lamp", "n": 2}]
    assert [(j["id"], j["combination"], j["repeat_index"], j["images"], j["cost_usd"]) for j in jobs] == [
        ("mug-1", {"subject": "mug", "k": "1"}, 0, 1, "0.028"),
        ("mug-2", {"subject": "mug", "k": "2"}, 0, 2, "0.056"),
        ("lamp-1", {"subject": "lamp", "k": "1"}, 0, 1, "0.028"),
        ("lamp-2", {"subject": "lamp", "k": "2"}, 0, 2, "0.056"),
    ]
    for j in jobs:
        assert len(j["key"]) == 64
        assert j["output"] == f"{j['id']}_{j['key'][:10]}_0"


def test_plan_json_without_budget_or_jobs(write: WriteRecipe) -> None:
    write(HEAD + "matrix:\n  a: [x, y]\n  exclude: [{a: x}, {a: y}]\ninput: {prompt: '{{ a }}'}\n")
    code, out, _ = cli("plan", "r.yaml", "--json")
    doc = json.loads(out)
    assert code == 0
    assert (doc["budget"], doc["totals"]["jobs"], doc["jobs"], doc["breakdown"]) == (
        {"max_usd": None, "within": True, "over_usd": "0.00"}, 0, [], {})


def test_a_large_plan_prints_a_summary_not_every_job(write: WriteRecipe) -> None:
    write(HEAD + "matrix:\n"
          f"  a: [{', '.join(f'a{i}' for i in range(50))}]\n"
          f"  b: [{', '.join(f'b{i}' for i in range(100))}]\n"
          "input:\n  prompt: '{{ a }} {{ b }}'\n")
    code, out, err = cli("plan", "r.yaml")
    lines = out.splitlines()
    assert (code, err) == (0, "")
    assert lines[1] == "  5,000 jobs · 5,000 images billed · 5,000 images returned · $140.00 at $0.028/image " \
                       "(price read 2026-11-25)"
    assert "    ... 30 more values" in lines  # a: 50 values, 20 shown
    assert "    ... 80 more values" in lines  # b: 100 values
    assert "  jobs (first 20 of 5,000):" in lines
    assert lines[3] == ("  rate limit: 5,000 jobs take at least 50:00 to submit at the service's published "
                        "100 runs/min (the run paces itself to it)")
    assert len(lines) == 5 + 22 + 22 + 21  # totals; 2 axes x (title, 20 rows, "more"); "jobs", 20 rows
    assert len(cli("plan", "r.yaml", "--rows", "5")[1].splitlines()) == 5 + 7 + 7 + 6


def test_many_warnings_are_capped(write: WriteRecipe) -> None:
    values = ", ".join(f"a{i}" for i in range(60))
    write(HEAD + f"matrix:\n  a: [{values}]\n  b: [1, 2]\ninput:\n  prompt: '{{{{ a }}}}'\n")  # b has no effect
    code, out, err = cli("validate", "r.yaml")
    assert (code, out) == (0, "r.yaml: ok — 60 jobs, $1.68\n")
    lines = err.splitlines()
    assert len(lines) == 51
    assert lines[-1] == "... and 10 more warnings"


# --- real processes: the installed entry point, as a user runs it ---

def run(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "KLING_PIPELINE_DEBUG"}
    return subprocess.run([sys.executable, "-m", "kling_pipeline", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=60, env=env, check=False)


@pytest.mark.slow
def test_subprocess_validate_the_examples() -> None:
    done = run("validate", "recipes/quickstart.yaml", "recipes/paired-zip.yaml")
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout == ("recipes/quickstart.yaml: ok — 4 jobs, $0.112\n"
                           "recipes/paired-zip.yaml: ok — 12 jobs, $0.336\n")


@pytest.mark.slow
def test_subprocess_plan_json(tmp_path: Path) -> None:
    done = run("plan", str(ROOT / "recipes/quickstart.yaml"), "--json", cwd=tmp_path)
    assert done.returncode == 0
    doc = json.loads(done.stdout)
    assert (doc["format"], doc["totals"]["jobs"], doc["totals"]["cost_usd"]) == ("kling-pipeline.plan/1", 4, "0.112")


@pytest.mark.slow
def test_subprocess_invalid_and_over_budget(tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text("version: 1\napp: !!python/object/apply:os.system ['true']\n")
    done = run("validate", "bad.yaml", cwd=tmp_path)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert done.stderr.endswith("1 error in bad.yaml; nothing was sent\n")
    done = run("plan", str(ROOT / "recipes/quickstart.yaml"), "--budget", "0.01", cwd=tmp_path)
    assert done.returncode == 3
    assert "OVER BUDGET by $0.102" in done.stdout


@pytest.mark.slow
def test_subprocess_usage_error() -> None:
    done = run("plan")
    assert done.returncode == 2
    assert "usage: kling-pipeline" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("enabled", [True, False])
def test_plan_leaves_the_garbage_collector_as_it_found_it(write: WriteRecipe, enabled: bool) -> None:
    """The command pauses it while it plans and prints; after, it runs (or not) as before."""
    import gc

    write(SWEEP)
    was = gc.isenabled()
    try:
        gc.enable() if enabled else gc.disable()
        assert cli("plan", "r.yaml")[0] == 3  # over budget: the plan is printed all the same
        assert cli("validate", "r.yaml")[0] == 0
        assert gc.isenabled() is enabled
    finally:
        gc.enable() if was else gc.disable()
