"""Jobs, ids, content keys, costs, the budget verdict, --only, output names, the error cap."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import pytest

from kling_pipeline import Plan, RecipeError, UsageError, load_recipe, plan, plan_file
from kling_pipeline.core.appstore import SchemaStore, StoredApp
from kling_pipeline.core.planning import AxisCost, parse_only
from kling_pipeline.core.schemas import load_app

from .conftest import WriteRecipe
from .util import HEAD, errors, ok, warnings

SWEEP = HEAD + """\
matrix:
  subject: [ceramic mug, paper lantern]
  ratio: ["16:9", "1:1"]
input:
  prompt: "A {{ subject }}"
  aspect_ratio: "{{ ratio }}"
"""


def test_ids_are_readable_and_follow_the_values(write: WriteRecipe) -> None:
    p = ok(write(SWEEP))
    assert [j.id for j in p.jobs] == ["ceramic_mug-16_9", "ceramic_mug-1_1", "paper_lantern-16_9", "paper_lantern-1_1"]
    assert [j.label for j in p.jobs][:1] == ["[subject=ceramic mug, ratio=16:9]"]


def test_ids_of_mapping_values_use_their_name_else_a_short_hash(write: WriteRecipe) -> None:
    p = ok(write(HEAD + """\
matrix:
  look:
    - {name: noir, text: dark}
    - {id: 7, text: pop}
    - {text: no name at all}
input:
  prompt: "{{ look.text }}"
"""))
    digest = hashlib.sha256(b'{"text":"no name at all"}').hexdigest()[:8]
    assert [j.id for j in p.jobs] == ["noir", "7", digest]


def test_ids_with_repeat(write: WriteRecipe) -> None:
    p = ok(write(SWEEP.replace("matrix:", "repeat: 2\nmatrix:")))
    assert [j.id for j in p.jobs][:2] == ["ceramic_mug-16_9-r0", "ceramic_mug-16_9-r1"]
    assert p.jobs[1].label == "[subject=ceramic mug, ratio=16:9, repeat=1]"
    assert len({j.key for j in p.jobs}) == 8


def test_ids_that_would_collide_get_a_key_suffix(write: WriteRecipe) -> None:
    p = ok(write(HEAD + "matrix:\n  r: ['16:9', '16_9']\ninput:\n  prompt: '{{ r }}'\n"))
    assert [j.id for j in p.jobs] == ["16_9", f"16_9~{p.jobs[1].key[:6]}"]


def test_long_values_are_cut_in_ids() -> None:
    from kling_pipeline.core.jobs import slug

    long = "a very long subject description that goes on and on and on"
    assert slug(long) == "a_very_long_subject_description_that_goe"
    assert slug("../etc/passwd") == "etc_passwd"
    assert slug("???") == "_"


def test_content_key_is_the_sha256_of_the_canonical_request(write: WriteRecipe) -> None:
    p = ok(write(SWEEP))
    blob = json.dumps({"app": "klingai/image-o1@0pbaxv40",
                       "input": {"prompt": "A ceramic mug", "aspect_ratio": "16:9"}, "repeat_index": 0},
                      sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert p.jobs[0].key == hashlib.sha256(blob.encode()).hexdigest()
    assert p.jobs[0].short_key == p.jobs[0].key[:10]


def test_content_keys_are_stable_across_runs_and_key_order(write: WriteRecipe) -> None:
    first = [j.key for j in ok(write(SWEEP)).jobs]
    assert [j.key for j in ok(write(SWEEP)).jobs] == first
    reordered = SWEEP.replace('  prompt: "A {{ subject }}"\n  aspect_ratio: "{{ ratio }}"\n',
                              '  aspect_ratio: "{{ ratio }}"\n  prompt: "A {{ subject }}"\n')
    assert [j.key for j in ok(write(reordered)).jobs] == first


def test_content_keys_ignore_names_and_labels(write: WriteRecipe) -> None:
    """Renaming an axis or the recipe changes no request: the same jobs, the same keys."""
    first = [j.key for j in ok(write(SWEEP)).jobs]
    renamed = SWEEP.replace("subject", "thing").replace("version: 1", "version: 1\nname: other")
    assert [j.key for j in ok(write(renamed)).jobs] == first


@pytest.mark.parametrize("change", [
    ("klingai/image-o1@0pbaxv40", "klingai/image-o1"),
    ("klingai/image-o1@0pbaxv40", "klingai/image-o1@otherver"),
    ('"A {{ subject }}"', '"A {{ subject }}!"'),
    ('aspect_ratio: "{{ ratio }}"', 'aspect_ratio: "{{ ratio }}"\n  n: 1'),
])
def test_content_keys_change_with_the_app_ref_and_the_input(write: WriteRecipe, change: tuple[str, str]) -> None:
    if "otherver" in change[1]:  # a version of the app pulled into the project's schema store
        other = dataclasses.replace(StoredApp.from_spec(load_app("klingai/image-o1")), version="otherver")
        stored = SchemaStore(Path("kling-schemas")).file_for(other.name, other.version)
        stored.parent.mkdir(parents=True)
        stored.write_bytes(other.encode())
    first = [j.key for j in ok(write(SWEEP)).jobs]
    changed = [j.key for j in ok(write(SWEEP.replace(*change))).jobs]
    assert len(changed) == len(first)
    assert not set(changed) & set(first)


def test_content_keys_change_with_the_repeat_index(write: WriteRecipe) -> None:
    p = ok(write(HEAD + "repeat: 3\ninput: {prompt: same}\n"))
    assert [j.repeat_index for j in p.jobs] == [0, 1, 2]
    assert len({j.key for j in p.jobs}) == 3
    assert ok(write(HEAD + "input: {prompt: same}\n")).jobs[0].key == p.jobs[0].key


def test_identical_jobs_collapse_with_a_warning_naming_both(write: WriteRecipe) -> None:
    p = ok(write(HEAD + """\
matrix:
  subject: [mug, lamp]
  style: [noir, pop]
input:
  prompt: "A {{ subject }}"
"""))
    assert [j.id for j in p.jobs] == ["mug-noir", "lamp-noir"]
    assert p.collapsed == 2
    assert warnings(p) == [
        "r.yaml:5:17: [subject=lamp, style=pop] identical to lamp-noir [subject=lamp, style=noir]: same request, "
        "run once",
        "r.yaml:5:17: [subject=mug, style=pop] identical to mug-noir [subject=mug, style=noir]: same request, run once",
    ]


def test_a_duplicated_axis_value_collapses_and_points_at_the_duplicate(write: WriteRecipe) -> None:
    p = ok(write(HEAD + "matrix:\n  ratio: ['1:1', '16:9', '1:1']\n"
                        "input:\n  prompt: x\n  aspect_ratio: '{{ ratio }}'\n"))
    assert [j.id for j in p.jobs] == ["1_1", "16_9"]
    assert warnings(p) == ["r.yaml:4:26: [ratio=1:1] identical to 1_1 [ratio=1:1]: same request, run once"]


def test_costs_are_exact_integers(write: WriteRecipe) -> None:
    p = ok(write(HEAD + "matrix:\n  k: [1, 2, 3]\n  s: [a, b, c, d, e, f, g]\ninput:\n  prompt: '{{ s }}'\n"
                        "  n: '{{ k }}'\n"))
    assert [j.cost for j in p.jobs[::7]] == [2_800_000, 5_600_000, 8_400_000]
    assert all(isinstance(j.cost, int) for j in p.jobs)
    assert (len(p.jobs), p.total_units, p.total_cost, p.images_returned) == (21, 42, 117_600_000, 21)


def test_a_recipe_price_overrides_the_bundled_one(write: WriteRecipe) -> None:
    p = ok(write(HEAD + "price: {usd_per_image: 0.035}\nrepeat: 3\ninput: {prompt: x, n: 2}\n"))
    assert (p.app.pricing.microcents_per_unit, p.total_cost) == (3_500_000, 21_000_000)


def test_breakdown_per_axis(write: WriteRecipe) -> None:
    p = ok(write(HEAD + """\
matrix:
  subject: [mug, lamp]
  k: [1, 3]
  exclude:
    - subject: lamp
      k: 3
input:
  prompt: "{{ subject }}"
  n: "{{ k }}"
"""))
    assert p.breakdown() == {
        "subject": [AxisCost("mug", 2, 4, 11_200_000), AxisCost("lamp", 1, 1, 2_800_000)],
        "k": [AxisCost("1", 2, 2, 5_600_000), AxisCost("3", 1, 3, 8_400_000)],
    }


def test_budget_verdicts(write: WriteRecipe) -> None:
    path = write(SWEEP + "budget: {max_usd: 0.10}\n")  # 4 jobs: $0.112
    p = ok(path)
    assert (p.budget_microcents, p.total_cost, p.over_budget) == (10_000_000, 11_200_000, 1_200_000)
    assert ok(path, budget_usd=50_000_000).budget_microcents == 10_000_000  # the lower cap wins
    assert ok(path, budget_usd=5_000_000).over_budget == 6_200_000
    within = ok(write(SWEEP + "budget: {max_usd: 0.112}\n"))
    assert within.over_budget == 0
    assert ok(write(SWEEP)).budget_microcents is None
    assert ok(write(SWEEP)).over_budget == 0


def test_only_keeps_matching_combinations(write: WriteRecipe) -> None:
    path = write(HEAD + "matrix:\n  a: [x, y, z]\n  b: [p, q]\ninput:\n  prompt: '{{ a }}{{ b }}'\n")
    p = ok(path, only=parse_only(["a=x", "a=z", "b=q"]))  # same axis: any of; different axes: all
    assert ([j.id for j in p.jobs], p.filtered_out) == (["x-q", "z-q"], 4)


def test_only_on_a_key_added_by_include(write: WriteRecipe) -> None:
    path = write(HEAD + "matrix:\n  a: [x, y]\n  include:\n    - a: y\n      tag: t\ninput:\n  prompt: '{{ a }}'\n")
    assert [j.id for j in ok(path, only={"tag": {"t"}}).jobs] == ["y-t"]


def test_only_an_unknown_axis_is_a_usage_error(write: WriteRecipe) -> None:
    path = write(HEAD + "matrix:\n  a: [x, y]\ninput:\n  prompt: '{{ a }}'\n")
    with pytest.raises(UsageError) as info:
        ok(path, only={"style": {"noir"}})
    assert str(info.value) == "--only style=...: the recipe has no matrix key 'style' (keys: a)"


def test_only_a_value_no_combination_has_is_a_usage_error(write: WriteRecipe) -> None:
    path = write(HEAD + "matrix:\n  a: [x, y]\ninput:\n  prompt: '{{ a }}'\n")
    with pytest.raises(UsageError) as info:
        ok(path, only={"a": {"x", "w"}})
    assert str(info.value) == "--only a=w: no combination has a=w (values: x, y)"


@pytest.mark.parametrize("item", ["style", "=noir", " =x"])
def test_only_items_must_be_axis_equals_value(item: str) -> None:
    with pytest.raises(UsageError) as info:
        parse_only([item])
    assert str(info.value) == f"--only takes axis=value, got {item!r}"


def test_default_output_names(write: WriteRecipe) -> None:
    p = ok(write(SWEEP))
    assert p.jobs[0].output_name == f"ceramic_mug-16_9_{p.jobs[0].short_key}_0"
    assert p.output_dir == Path("out/r")


def test_custom_output_names_and_dir(write: WriteRecipe) -> None:
    p = ok(write(SWEEP + 'output:\n  dir: renders\n  filename: "{{ ratio }}/{{ subject | replace(\' \', \'-\') }}"\n',
                 "sweeps/r.yaml"))
    assert [j.output_name for j in p.jobs] == ["16:9/ceramic-mug", "1:1/ceramic-mug", "16:9/paper-lantern",
                                               "1:1/paper-lantern"]
    assert p.output_dir == Path("sweeps/renders")
    assert ok(Path("sweeps/r.yaml"), out_dir="elsewhere").output_dir == Path("elsewhere")


def test_redundant_path_parts_are_normalised(write: WriteRecipe) -> None:
    p = ok(write(SWEEP + 'output:\n  filename: "./{{ job_id }}//x"\n'))
    assert p.jobs[0].output_name == "ceramic_mug-16_9/x"


@pytest.mark.parametrize(("template", "why"), [
    ("../{{ job_id }}", "renders to '../ceramic_mug-16_9', which leaves the output directory ('..')"),
    ("a/../../{{ job_id }}", "renders to 'a/../../ceramic_mug-16_9', which leaves the output directory ('..')"),
    ("/tmp/{{ job_id }}", "renders to an absolute path '/tmp/ceramic_mug-16_9'; file names must stay inside the "
                          "output directory"),
    ("C:/{{ job_id }}", "renders to an absolute path 'C:/ceramic_mug-16_9'; file names must stay inside the "
                        "output directory"),
    ("~/{{ job_id }}", "renders to an absolute path '~/ceramic_mug-16_9'; file names must stay inside the output "
                       "directory"),
    ("{{ job_id }}/", "renders to 'ceramic_mug-16_9/', which names a directory, not a file"),
    ("{{ job_id }}\\\\x", "renders to 'ceramic_mug-16_9\\\\x', which holds a character not allowed in file names"),
])
def test_output_names_that_leave_the_directory_are_refused(write: WriteRecipe, template: str, why: str) -> None:
    found = errors(write(SWEEP + f'output:\n  filename: "{template}"\n'))
    assert found[0] == f"r.yaml:10:13: [subject=ceramic mug, ratio=16:9] output.filename {why}"
    assert len(found) == 4


def test_two_jobs_rendering_the_same_file_name_is_an_error(write: WriteRecipe) -> None:
    assert errors(write(SWEEP + 'output:\n  filename: "{{ subject }}"\n')) == [
        "r.yaml:10:13: [subject=ceramic mug, ratio=1:1] output.filename renders 'ceramic mug' for "
        "[subject=ceramic mug, ratio=16:9] too; add a matrix key or {{ short_key }} to the name",
        "r.yaml:10:13: [subject=paper lantern, ratio=1:1] output.filename renders 'paper lantern' for "
        "[subject=paper lantern, ratio=16:9] too; add a matrix key or {{ short_key }} to the name",
    ]


def test_a_symlink_out_of_the_output_directory_is_refused(write: WriteRecipe, tmp_path: Path) -> None:
    (tmp_path / "out/r").mkdir(parents=True)
    (tmp_path / "outside").mkdir()
    (tmp_path / "out/r/link").symlink_to(tmp_path / "outside")
    found = errors(write(SWEEP + 'output:\n  filename: "link/{{ job_id }}"\n'))
    assert found == [f"r.yaml:10:13: output.filename puts files in 'link', which resolves to {tmp_path / 'outside'} "
                     f"outside the output directory {(tmp_path / 'out/r').resolve()} (a symlink?)"]


def test_a_symlink_inside_the_output_directory_is_fine(write: WriteRecipe, tmp_path: Path) -> None:
    (tmp_path / "out/r/real").mkdir(parents=True)
    (tmp_path / "out/r/link").symlink_to(tmp_path / "out/r/real")
    assert len(ok(write(SWEEP + 'output:\n  filename: "link/{{ job_id }}"\n')).jobs) == 4


def test_filename_template_problems(write: WriteRecipe) -> None:
    assert errors(write(SWEEP + 'output:\n  filename: "{{ jobid }}"\n')) == [
        "r.yaml:10:13: output.filename: 'jobid' is undefined; did you mean 'job_id'? "
        "(known names: ratio, recipe, repeat_index, subject)"
    ]


def test_more_than_50_problems_show_50_and_a_count(write: WriteRecipe) -> None:
    path = write(HEAD + "matrix:\n  s: [" + ", ".join(f"v{i}" for i in range(60)) + "]\n"
                 "input:\n  prompt: x\n  aspect_ratio: '{{ s }}'\n")
    with pytest.raises(RecipeError) as info:
        plan_file(path)
    exc = info.value
    assert (len(exc.diagnostics), exc.total) == (50, 60)
    lines = str(exc).splitlines()
    assert len(lines) == 51
    assert lines[-1] == "... and 10 more errors"
    assert lines[0].startswith("r.yaml:4:7: [s=v0] input.aspect_ratio: 'v0' is not one of: ")


def test_the_same_problem_in_many_combinations_is_one_line(write: WriteRecipe) -> None:
    path = write(HEAD + "matrix:\n  s: [" + ", ".join(f"v{i}" for i in range(60)) + "]\n"
                 "input:\n  prompt: x\n  n: 10\n")
    assert errors(path) == ["r.yaml:7:6: [s=v0] input.n: 10 is out of range: must be at most 9 "
                            "(and 59 more combinations)"]


def test_a_plan_is_frozen_and_re_renders_the_same_request(write: WriteRecipe) -> None:
    p = ok(write(SWEEP))
    assert isinstance(p, Plan)
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.total_cost = 0  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.jobs[0].cost = 0  # type: ignore[misc]
    assert p.render(p.jobs[3]).request == p.render(p.jobs[3]).request == {"prompt": "A paper lantern",
                                                                         "aspect_ratio": "1:1"}


def test_plan_of_a_loaded_recipe_equals_plan_file(write: WriteRecipe) -> None:
    path = write(SWEEP)
    assert [j.key for j in plan(load_recipe(path)).jobs] == [j.key for j in plan_file(path).jobs]
