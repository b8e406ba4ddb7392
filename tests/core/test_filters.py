"""``matrix.filter``: expressions over combinations, sandboxed like the templates."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kling_pipeline import UsageError

from .conftest import WriteRecipe
from .util import HEAD, cli, errors, ok

ROOT = Path(__file__).resolve().parents[2]


def sweep(filter_: str, extra: str = "") -> str:
    return (HEAD + "matrix:\n  style: [watercolor, noir, pop]\n  size: [1k, 2k]\n"
            f"  filter: {filter_}\n{extra}input:\n  prompt: 'A mug, {{{{ style }}}}'\n  resolution: '{{{{ size }}}}'\n")


def ids(path: Path, **options: object) -> list[str]:
    return [j.id for j in ok(path, **options).jobs]


def test_a_filter_keeps_the_combinations_it_is_true_for(write: WriteRecipe) -> None:
    p = ok(write(sweep("'not (style == \"noir\" and size == \"2k\")'")))
    assert [j.id for j in p.jobs] == ["watercolor-1k", "watercolor-2k", "noir-1k", "pop-1k", "pop-2k"]
    assert p.removed_by_filter == 1
    assert p.filtered_out == 0


def test_a_list_of_expressions_must_all_hold(write: WriteRecipe) -> None:
    path = write(sweep("\n    - style != 'noir'\n    - size == '1k' or style == 'pop'"))
    assert ids(path) == ["watercolor-1k", "pop-1k", "pop-2k"]
    assert ok(path).removed_by_filter == 3


def test_plan_says_how_many_combinations_the_filter_removed(write: WriteRecipe) -> None:
    write(sweep("style != 'noir'"))
    code, out, err = cli("plan", "r.yaml", "--only", "size=1k")
    assert (code, err) == (0, "")
    assert "  2 combinations removed by the filter; 2 combinations left out by --only\n" in out
    code, out, _ = cli("plan", "r.yaml", "--json")
    totals = json.loads(out)["totals"]
    assert (code, totals["jobs"], totals["removed_by_filter"], totals["filtered_out"]) == (0, 4, 2, 0)


def test_only_applies_after_the_filter_and_says_so(write: WriteRecipe) -> None:
    path = write(sweep("style != 'noir'"))
    with pytest.raises(UsageError) as info:
        ok(path, only={"style": {"noir"}})
    assert str(info.value) == ("--only style=noir: no combination has style=noir (values: watercolor, pop; "
                               "matrix.filter left out 2)")


def test_the_filter_sees_vars_mapping_values_include_keys_and_the_recipe_name(write: WriteRecipe) -> None:
    path = write(HEAD + """\
name: mugs
vars:
  dark: [noir]
matrix:
  style:
    - {name: noir, tone: dark}
    - {name: pastel, tone: light}
  size: [1k, 2k]
  include:
    - {size: 2k, accent: gold}
  filter:
    - style.name not in dark or accent is defined
    - recipe == "mugs"
input:
  prompt: "A mug, {{ style.name }}"
  resolution: "{{ size }}"
""")
    assert ids(path) == ["noir-2k-gold", "pastel-1k", "pastel-2k-gold"]


@pytest.mark.parametrize(("filter_", "message"), [
    ("style ==", "6:11: matrix.filter: syntax error: unexpected 'end of template'"),
    ("'{{ style == \"noir\" }}'", "6:11: matrix.filter is an expression, written without {{ }}: style == \"noir\""),
    ("stlye != 'noir'", "6:11: matrix.filter: 'stlye' is undefined; did you mean 'style'? (known names: recipe, "
                        "size, style)"),
    ("repeat_index == 0", "6:11: matrix.filter: 'repeat_index' is not known to the filter: it chooses "
                          "combinations, before repeat"),
    ("3", "6:11: matrix.filter must be an expression (a string such as 'style != \"noir\"'), or a list of them, got "
          "an integer"),
    ("[]", "6:11: matrix.filter is an empty list: write an expression, or remove the key"),
    ("['style != 1', '']", "6:26: matrix.filter: an expression must not be empty"),
    ("not " * 60 + "true",
     "6:11: matrix.filter: the template nests more than 50 levels deep (blocks, brackets, filters or operators "
     "inside each other); simplify it"),
])
def test_a_bad_filter_is_an_error_at_its_position(write: WriteRecipe, filter_: str, message: str) -> None:
    assert errors(write(sweep(filter_))) == [f"r.yaml:{message}"]


def test_a_filter_that_gives_no_boolean_is_an_error_per_combination(write: WriteRecipe) -> None:
    assert errors(write(sweep("style"))) == [
        "r.yaml:6:11: [style=noir, size=1k] matrix.filter: gives 'noir' (a string), not true or false; compare it "
        "(style == \"noir\") or test it (color is defined) (and 1 more combination)",
        "r.yaml:6:11: [style=pop, size=1k] matrix.filter: gives 'pop' (a string), not true or false; compare it "
        "(style == \"noir\") or test it (color is defined) (and 1 more combination)",
        "r.yaml:6:11: [style=watercolor, size=1k] matrix.filter: gives 'watercolor' (a string), not true or false; "
        "compare it (style == \"noir\") or test it (color is defined) (and 1 more combination)",
    ]
    assert errors(write(sweep("size == '1k' and style"))) == [
        "r.yaml:6:11: [style=noir, size=1k] matrix.filter: gives 'noir' (a string), not true or false; compare it "
        "(style == \"noir\") or test it (color is defined)",
        "r.yaml:6:11: [style=pop, size=1k] matrix.filter: gives 'pop' (a string), not true or false; compare it "
        "(style == \"noir\") or test it (color is defined)",
        "r.yaml:6:11: [style=watercolor, size=1k] matrix.filter: gives 'watercolor' (a string), not true or false; "
        "compare it (style == \"noir\") or test it (color is defined)",
    ]


def test_a_key_only_some_combinations_have_needs_is_defined(write: WriteRecipe) -> None:
    path = write(sweep("accent == 'gold'", "  include:\n    - {size: 2k, accent: gold}\n"))
    assert errors(path) == [
        "r.yaml:6:11: [style=watercolor, size=1k] matrix.filter: 'accent' is undefined (where only some combinations "
        "have 'accent', write 'accent is defined and ...') (and 2 more combinations)"]


@pytest.mark.parametrize(("filter_", "message"), [
    ("''.__class__.__mro__ is defined", "matrix.filter: template error: access to attribute '__class__' of 'str' "
                                        "object is unsafe."),
    ("range", "matrix.filter: renders the global 'range' itself, not data (text, a number, a boolean, null, a list "
              "or a mapping)"),
    ("(range(60000)|select('odd')|list|length) + (range(60000)|select('odd')|list|length) > 0",
     "matrix.filter: template error: the template takes more than 100,000 steps to render (loop iterations and "
     "calls)"),
    ("[1, 2]|random == 1", "matrix.filter: template error: the 'random' filter makes a different request on every "
                           "run: the job's content key would change and a re-run would pay for it again; use a "
                           "matrix axis (or repeat) to vary the jobs"),
])
def test_the_filter_runs_in_the_template_sandbox(write: WriteRecipe, filter_: str, message: str) -> None:
    found = errors(write(sweep(json.dumps(filter_))))
    assert len(found) == 1
    assert found[0].startswith("r.yaml:6:11: [style=watercolor, size=1k] " + message), found[0]


def test_an_expression_past_its_bounds_stops_the_plan(write: WriteRecipe) -> None:
    found = errors(write(sweep(json.dumps("'x' * 10**9 == 'x'"))))
    assert found == ["r.yaml:6:11: [style=watercolor, size=1k] matrix.filter: template error: '*' would build a "
                     "value of 1,000,000,000 items (at most 1,000,000)"]


def test_a_filter_removing_everything_plans_no_job(write: WriteRecipe) -> None:
    p = ok(write(sweep("size == '3k'")))
    assert (len(p.jobs), p.removed_by_filter) == (0, 6)


def test_an_axis_near_the_keyword_written_as_a_string_is_a_typo(write: WriteRecipe) -> None:
    path = write(HEAD + "matrix:\n  style: [noir]\n  filtre: style != 'x'\ninput:\n  prompt: x\n")
    assert errors(path) == ["r.yaml:5:11: matrix axis 'filtre' must be a list of values, got a string; did you mean "
                            "'filter'?"]
    path = write(HEAD + "matrix:\n  filters: [sepia, mono]\ninput:\n  prompt: '{{ filters }}'\n")
    assert ids(path) == ["sepia", "mono"]  # an axis may still be called 'filters'


def test_the_filter_is_worked_out_once_per_set_of_the_values_it_reads(write: WriteRecipe) -> None:
    """An expression of 30,000 steps over 3 styles x 2,000 subjects: 180,000,000 steps if it were
    asked for each combination, far past the plan's 10,000,000; asked once per style, 90,000."""
    subjects = ", ".join(f"s{i}" for i in range(2000))
    expensive = "(range(30000)|select('odd')|list|length) > 0 and style != 'noir'"
    path = write(HEAD + f"matrix:\n  style: [a, noir, c]\n  subject: [{subjects}]\n"
                 f"  filter: {json.dumps(expensive)}\ninput:\n  prompt: '{{{{ style }}}} {{{{ subject }}}}'\n")
    p = ok(path)
    assert (len(p.jobs), p.removed_by_filter) == (4000, 2000)


def test_the_documented_message_is_what_the_plan_says(write: WriteRecipe) -> None:
    doc = (ROOT / "docs/recipes.md").read_text(encoding="utf-8")
    shown = next(line for line in doc.splitlines() if "matrix.filter: gives" in line)
    path = write(HEAD + "matrix:\n  style: [watercolor, noir, pop]\n  size: [1k, 2k]\n  subject: [mug, lamp]\n"
                 "  filter: style\ninput:\n  prompt: '{{ style }} {{ size }} {{ subject }}'\n", "sweep.yaml")
    assert shown in errors(path)
