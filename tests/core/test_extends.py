"""``extends``: deep merge (the child wins, lists replaced), paths relative to each file, cycles."""

from __future__ import annotations

from pathlib import Path

import pytest

from kling_pipeline import load_recipe

from .conftest import WriteRecipe
from .util import errors, ok, png


def test_deep_merge_child_wins_and_lists_are_replaced(write: WriteRecipe) -> None:
    write("""\
        version: 1
        app: klingai/image-o1@0pbaxv40
        vars:
          light: soft
          lens: {mm: 50, tags: [prime, fast]}
        matrix:
          style: [noir, pop, pastel]
        input:
          prompt: "{{ style }} {{ light }} {{ lens.mm }} {{ lens.tags }}"
          aspect_ratio: "1:1"
        budget: {max_usd: 5}
        concurrency: 2
        """, "base.yaml")
    child = write("""\
        extends: base.yaml
        name: child
        vars:
          light: hard
          lens: {tags: [zoom]}
        matrix:
          style: [ink]
        input:
          resolution: 2k
        """, "child.yaml")
    p = ok(child)
    r = p.recipe
    assert r.name == "child"
    assert dict(r.vars) == {"light": "hard", "lens": {"mm": 50, "tags": ["zoom"]}}
    assert r.matrix.axis_names == ("style",)
    assert [v.value for v in r.matrix.axes[0].values] == ["ink"]  # the list is replaced, not appended to
    assert (r.budget_microcents, r.concurrency) == (500_000_000, 2)
    assert p.render(p.jobs[0]).request == {"prompt": "ink hard 50 ['zoom']", "aspect_ratio": "1:1",
                                           "resolution": "2k"}
    assert r.sources == ("child.yaml", "base.yaml")


def test_multiple_bases_merge_in_order_then_the_child(write: WriteRecipe) -> None:
    write("version: 1\napp: klingai/image-o1@0pbaxv40\nvars: {a: base1, b: base1, c: base1}\n", "one.yaml")
    write("vars: {b: base2, c: base2}\n", "two.yaml")
    child = write("extends: [one.yaml, two.yaml]\nvars: {c: child}\ninput: {prompt: '{{ a }} {{ b }} {{ c }}'}\n",
                  "child.yaml")
    p = ok(child)
    assert p.render(p.jobs[0]).request == {"prompt": "base1 base2 child"}
    assert p.recipe.sources == ("child.yaml", "one.yaml", "two.yaml")


def test_paths_are_relative_to_the_file_that_names_them(write: WriteRecipe) -> None:
    write("version: 1\napp: klingai/image-o1@0pbaxv40\n", "shared/root.yaml")
    write("extends: root.yaml\nvars: {where: shared}\n", "shared/base.yaml")  # next to itself
    child = write("extends: ../../shared/base.yaml\ninput: {prompt: '{{ where }}'}\n", "team/sweeps/child.yaml")
    r = load_recipe(child)
    assert r.sources == ("team/sweeps/child.yaml", "shared/base.yaml", "shared/root.yaml")


def test_base_in_a_parent_directory_run_from_elsewhere(write: WriteRecipe, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    write("version: 1\napp: klingai/image-o1@0pbaxv40\n", "base.yaml")
    write("extends: ../base.yaml\ninput: {prompt: x}\n", "sub/child.yaml")
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    # outside the working directory, files are shown by their absolute path
    assert ok(Path("../sub/child.yaml")).recipe.sources == (str(tmp_path / "sub/child.yaml"),
                                                            str(tmp_path / "base.yaml"))


def test_extends_cycle_of_two_files(write: WriteRecipe) -> None:
    write("extends: b.yaml\nversion: 1\n", "a.yaml")
    write("extends: a.yaml\n", "b.yaml")
    assert errors(Path("a.yaml")) == ["b.yaml:1:10: 'extends' cycle: a.yaml -> b.yaml -> a.yaml"]


def test_extends_itself(write: WriteRecipe) -> None:
    write("extends: self.yaml\n", "self.yaml")
    assert errors(Path("self.yaml")) == ["self.yaml:1:10: 'extends' cycle: self.yaml -> self.yaml"]


def test_cycle_through_a_longer_chain(write: WriteRecipe) -> None:
    write("extends: [ok.yaml, b.yaml]\n", "a.yaml")
    write("version: 1\n", "ok.yaml")
    write("extends: sub/c.yaml\n", "b.yaml")
    write("extends: ../a.yaml\n", "sub/c.yaml")
    assert errors(Path("a.yaml")) == ["sub/c.yaml:1:10: 'extends' cycle: a.yaml -> b.yaml -> sub/c.yaml -> a.yaml"]


def test_a_diamond_is_not_a_cycle(write: WriteRecipe) -> None:
    write("version: 1\napp: klingai/image-o1@0pbaxv40\n", "root.yaml")
    write("extends: root.yaml\nvars: {left: l}\n", "left.yaml")
    write("extends: root.yaml\nvars: {right: r}\n", "right.yaml")
    p = ok(write("extends: [left.yaml, right.yaml]\ninput: {prompt: '{{ left }}{{ right }}'}\n", "child.yaml"))
    assert p.render(p.jobs[0]).request == {"prompt": "lr"}


def test_missing_base_is_reported_at_the_extends_line(write: WriteRecipe) -> None:
    child = write("version: 1\nextends: nope.yaml\n", "child.yaml")
    assert errors(child) == ["child.yaml:2:10: nope.yaml: no such recipe file"]


def test_extends_must_name_files(write: WriteRecipe) -> None:
    child = write("extends: [base.yaml, 3, '']\n", "child.yaml")
    assert errors(child) == [
        "child.yaml:1:22: extends must name a recipe file (a string, or a list of strings)",
        "child.yaml:1:25: extends must name a recipe file (a string, or a list of strings)",
    ]


def test_a_base_that_is_not_a_mapping(write: WriteRecipe) -> None:
    write("- a\n", "base.yaml")
    assert errors(write("extends: base.yaml\n", "child.yaml")) == [
        "base.yaml:1:1: a recipe named by 'extends' must be a mapping"
    ]


def test_errors_in_a_base_show_the_base_file(write: WriteRecipe) -> None:
    write("""\
        version: 1
        app: klingai/image-o1@0pbaxv40
        input:
          prompt: "{{ nope }}"
          aspect_ratio: "5:4"
        output:
          filenam: x
        """, "base.yaml")
    child = write("extends: base.yaml\nmatrix:\n  s: [a]\n", "child.yaml")
    assert errors(child) == [
        "base.yaml:4:11: input.prompt: 'nope' is undefined (known names: recipe, repeat_index, s)",
        "base.yaml:7:3: unknown key 'filenam' in output; did you mean 'filename'? (allowed: dir, filename)",
    ]


def test_yaml_error_in_a_base(write: WriteRecipe) -> None:
    write("version: 1\nvars: {a: [}\n", "base.yaml")
    assert errors(write("extends: base.yaml\n", "child.yaml")) == [
        "base.yaml:2:12: YAML syntax error: while parsing a flow node (started at line 2, column 12): "
        "did not find expected node content"
    ]


def test_reference_image_written_in_the_base_is_relative_to_the_base(write: WriteRecipe, tmp_path: Path) -> None:
    write("version: 1\napp: klingai/image-o1@0pbaxv40\ninput:\n  prompt: x\n  image: ref.png\n", "shared/base.yaml")
    (tmp_path / "shared/ref.png").write_bytes(png(400, 400))
    child = write("extends: ../shared/base.yaml\n", "sweeps/child.yaml")
    p = ok(child)
    assert p.render(p.jobs[0]).files["image"].path == (tmp_path / "shared/ref.png").resolve()


def test_reference_image_named_by_the_child_is_relative_to_the_child(write: WriteRecipe, tmp_path: Path) -> None:
    """The template is written in the base, the value in the child: the value's file counts."""
    write("version: 1\napp: klingai/image-o1@0pbaxv40\ninput:\n  prompt: x\n  image: '{{ ref }}'\n",
          "shared/base.yaml")
    (tmp_path / "sweeps").mkdir()
    (tmp_path / "sweeps/mine.png").write_bytes(png(400, 400))
    p = ok(write("extends: ../shared/base.yaml\nmatrix:\n  ref: [mine.png]\n", "sweeps/child.yaml"))
    assert p.render(p.jobs[0]).files["image"].path == (tmp_path / "sweeps/mine.png").resolve()
    p = ok(write("extends: ../shared/base.yaml\nvars:\n  ref: mine.png\n", "sweeps/child2.yaml"))
    assert p.render(p.jobs[0]).files["image"].path == (tmp_path / "sweeps/mine.png").resolve()


def test_output_dir_written_in_the_base_is_relative_to_the_base(write: WriteRecipe) -> None:
    write("version: 1\napp: klingai/image-o1@0pbaxv40\noutput: {dir: renders}\n", "shared/base.yaml")
    p = ok(write("extends: ../shared/base.yaml\ninput: {prompt: x}\n", "sweeps/child.yaml"))
    assert p.output_dir == Path("shared/renders")
    p = ok(write("extends: ../shared/base.yaml\ninput: {prompt: x}\noutput: {dir: mine}\n", "sweeps/c2.yaml"))
    assert p.output_dir == Path("sweeps/mine")
