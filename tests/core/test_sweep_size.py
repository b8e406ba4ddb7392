"""A sweep's size is known before it is expanded: too many jobs is refused at once, with the
count and how to raise the limit; long exclude/include lists and long axes stay linear."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from kling_pipeline import load_recipe
from kling_pipeline.core.errors import Position
from kling_pipeline.core.matrix import Axis, AxisValue, MatrixEntry, MatrixSpec, expand

from .conftest import WriteRecipe
from .util import HEAD, cli, errors

EIGHT_AXES = "matrix:\n" + "".join(f"  a{i}: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]\n" for i in range(8))
TOO_MANY = ("the sweep makes 100,000,000 jobs (10 x 10 x 10 x 10 x 10 x 10 x 10 x 10 combinations), more than the "
            "limit of 500,000; narrow it, or raise the limit with --max-jobs N")


def test_ten_to_the_eight_jobs_are_refused_before_expanding(write: WriteRecipe) -> None:
    assert errors(write(HEAD + EIGHT_AXES + "input: {prompt: x}\n")) == [f"r.yaml:3:1: {TOO_MANY}"]


def test_a_huge_repeat_is_refused_at_the_repeat(write: WriteRecipe) -> None:
    assert errors(write(HEAD + "repeat: 1000000000\ninput: {prompt: x}\n")) == [
        "r.yaml:3:9: the sweep makes 1,000,000,000 jobs (1 combination x repeat 1,000,000,000), more than the limit "
        "of 500,000; narrow it, or raise the limit with --max-jobs N"
    ]


def test_include_entries_and_repeat_are_counted(write: WriteRecipe) -> None:
    path = write(HEAD + """\
matrix:
  a: [1, 2, 3]
  b: [1, 2]
  include:
    - {c: 1}
    - {a: 9}
repeat: 4
input: {prompt: x}
""")
    assert errors(path, max_jobs=31) == [
        "r.yaml:9:9: the sweep makes 32 jobs (3 x 2 combinations + 2 from include x repeat 4), more than the limit "
        "of 31; narrow it, or raise the limit with --max-jobs N"
    ]
    assert len(list(expand(load_recipe(path).matrix))) == 7  # {c: 1} extends every combination; {a: 9} is new


def test_an_astronomical_count_is_said_without_printing_it(write: WriteRecipe) -> None:
    axes = "matrix:\n" + "".join(f"  a{i}: [0, 1]\n" for i in range(100))
    assert errors(write(HEAD + axes + "input: {prompt: x}\n")) == [
        "r.yaml:3:1: the sweep makes about 10^30 jobs (2 x 2 x 2 x 2 x (100 axes) combinations), more than the "
        "limit of 500,000; narrow it, or raise the limit with --max-jobs N"
    ]


def test_the_limit_is_on_validate_plan_and_run_and_a_flag_raises_it(write: WriteRecipe) -> None:
    write(HEAD + "matrix:\n  a: [1, 2, 3]\n  b: [1, 2, 3]\ninput: {prompt: '{{ a }}{{ b }}'}\n")
    refused = ("r.yaml:3:1: the sweep makes 9 jobs (3 x 3 combinations), more than the limit of 8; narrow it, or "
               "raise the limit with --max-jobs N\n1 error in r.yaml; nothing was sent\n")
    assert cli("validate", "--max-jobs", "8", "r.yaml") == (2, "", refused)
    assert cli("validate", "--max-jobs", "9", "r.yaml") == (0, "r.yaml: ok — 9 jobs, $0.252\n", "")
    assert cli("plan", "r.yaml", "--max-jobs", "8") == (2, "", refused)
    assert cli("plan", "r.yaml", "--max-jobs", "9", "--rows", "1")[0] == 0
    assert cli("run", "r.yaml", "--max-jobs", "8") == (2, "", refused)  # refused before anything is sent


@pytest.mark.parametrize(("value", "why"), [("0", "must be at least 1, got 0"), ("-3", "must be at least 1, got -3"),
                                          ("lots", "not a number of jobs: 'lots'")])
def test_max_jobs_must_be_a_positive_number(write: WriteRecipe, value: str, why: str,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    write(HEAD + "input: {prompt: x}\n")
    assert cli("validate", f"--max-jobs={value}", "r.yaml")[0] == 2
    assert capsys.readouterr().err.splitlines()[-1] == f"kling-pipeline validate: error: argument --max-jobs: {why}"


def spec(axes: dict[str, list[Any]], *, include: Sequence[dict[str, Any]] = (),
         exclude: Sequence[dict[str, Any]] = ()) -> MatrixSpec:
    """A matrix built directly (a recipe file of 10^5 entries mostly measures the YAML reader)."""
    at = Position("m.yaml", 1, 1)

    def entry(values: dict[str, Any]) -> MatrixEntry:
        return MatrixEntry(values, dict.fromkeys(values, at), {k: str(v) for k, v in values.items()}, at)

    return MatrixSpec(tuple(Axis(n, tuple(AxisValue(v, at, str(v)) for v in vs), at) for n, vs in axes.items()),
                      (), tuple(map(entry, include)), tuple(map(entry, exclude)))


def test_ten_thousand_combinations_minus_a_hundred_thousand_excludes() -> None:
    """Exclusion is looked up by the axes an entry names, not compared entry by entry
    (10^5 x 10^4 comparisons took minutes)."""
    excludes = [{"a": i % 100, "b": 100 + i // 100} for i in range(100_000)]  # b is never 100 or more
    m = spec({"a": list(range(100)), "b": list(range(100))}, exclude=[*excludes, {"b": 0}, {"a": 5, "b": 7}])
    combos = [dict(c.values) for c in expand(m)]
    assert len(combos) == 10_000 - 100 - 1
    assert combos[:2] == [{"a": 0, "b": 1}, {"a": 0, "b": 2}]
    assert {"a": 5, "b": 7} not in combos


def test_a_hundred_thousand_includes_over_ten_thousand_combinations() -> None:
    includes = [{"a": i % 100, "b": (i // 100) % 100, f"n{i % 7}": i} for i in range(100_000)]
    combos = list(expand(spec({"a": list(range(100)), "b": list(range(100))}, include=includes)))
    assert len(combos) == 10_000
    # (a=0, b=0) is fitted by entries 0, 10,000, ... 90,000, setting n0, n4, n1, n5, n2, n6, n3, n0, n4, n1
    assert list(combos[0].values.items()) == [("a", 0), ("b", 0), ("n0", 70000), ("n4", 80000), ("n1", 90000),
                                              ("n5", 30000), ("n2", 40000), ("n6", 50000), ("n3", 60000)]


def test_many_entries_naming_many_sets_of_axes_are_refused(write: WriteRecipe) -> None:
    axes = "".join(f"  a{i}: [0, 1]\n" for i in range(17))
    entries = "".join("    - {" + ", ".join(f"a{j}: 0" for j in range(17) if i >> j & 1) + "}\n"
                      for i in range(1, 3000))
    path = write(HEAD + f"matrix:\n{axes}  exclude:\n{entries}input: {{prompt: x}}\n")
    assert errors(path) == [
        "r.yaml:22:7: exclude and include name 2,999 different sets of axes: applying them to 131,072 combinations "
        "takes 393,084,928 lookups (at most 20,000,000); write entries that name the same axes"
    ]
