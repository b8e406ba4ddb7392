"""Loading recipe YAML: safe tags only, positions, duplicate keys, odd files."""

from __future__ import annotations

from pathlib import Path

import pytest

from kling_pipeline.core.errors import RecipeError
from kling_pipeline.core.yamlsrc import parse_yaml, to_plain

from .conftest import WriteRecipe
from .util import HEAD, errors, ok

SAFE = ("recipes are loaded safely and take only plain strings, numbers, booleans, null, lists and mappings")


def test_syntax_error_has_its_position(write: WriteRecipe) -> None:
    path = write(HEAD + "input:\n  prompt: [unclosed\n")
    assert errors(path) == [
        "r.yaml:5:1: YAML syntax error: while parsing a flow sequence (started at line 4, column 11): "
        "did not find expected ',' or ']'"
    ]


def test_python_object_tag_is_refused_and_nothing_runs(write: WriteRecipe, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = write(HEAD.replace("app: klingai/image-o1@0pbaxv40",
                              f'app: !!python/object/apply:os.system ["touch {marker}"]')
                 + "input: {prompt: x}\n")
    assert errors(path) == [f"r.yaml:2:6: YAML tag !!python/object/apply:os.system is not allowed: {SAFE}"]
    assert not marker.exists()


@pytest.mark.parametrize(("value", "tag"), [
    ("!custom hello", "!custom"),
    ("!!binary aGVsbG8=", "!!binary"),
    ("!!python/name:os.system ''", "!!python/name:os.system"),
    ("!!set {a, b}", "!!set"),
])
def test_other_tags_are_refused(write: WriteRecipe, value: str, tag: str) -> None:
    path = write(HEAD + f"input:\n  prompt: {value}\n")
    assert errors(path) == [f"r.yaml:4:11: YAML tag {tag} is not allowed: {SAFE}"]


def test_duplicate_keys_are_errors(write: WriteRecipe) -> None:
    path = write(HEAD + "input:\n  prompt: a\n  prompt: b\nversion: 1\n")
    assert errors(path) == [
        "r.yaml:5:3: duplicate key 'prompt' (first at line 4)",
        "r.yaml:6:1: duplicate key 'version' (first at line 1)",
    ]


@pytest.mark.parametrize("nan", [".nan", ".NaN", ".NAN"])
def test_nan_is_refused(write: WriteRecipe, nan: str) -> None:
    path = write(HEAD + f"vars:\n  x: {nan}\ninput: {{prompt: x}}\n")
    assert errors(path) == ["r.yaml:4:6: NaN is not allowed"]


def test_on_as_a_key_stays_a_string_and_yes_is_a_boolean() -> None:
    tree = parse_yaml("on: yes\nno: 1\ny: n\n", "t.yaml")
    assert to_plain(tree) == {"on": True, "no": 1, "y": "n"}


def test_timestamps_stay_strings() -> None:
    assert to_plain(parse_yaml("d: 2024-01-02\n", "t.yaml")) == {"d": "2024-01-02"}


def test_anchors_aliases_and_merge_keys_work(write: WriteRecipe) -> None:
    path = write(HEAD + """\
vars:
  base: &base {light: soft, lens: 50mm}
  studio:
    <<: *base
    light: hard
input:
  prompt: "{{ studio.light }} {{ studio.lens }} {{ base.light }}"
""")
    p = ok(path)
    assert p.render(p.jobs[0]).request == {"prompt": "hard 50mm soft"}


def test_merge_of_a_list_of_mappings_earlier_wins() -> None:
    tree = parse_yaml("a: &a {x: 1}\nb: &b {x: 2, y: 2}\nc:\n  <<: [*a, *b]\n  z: 3\n", "t.yaml")
    assert to_plain(tree)["c"] == {"z": 3, "x": 1, "y": 2}


def test_merge_of_a_scalar_is_an_error() -> None:
    with pytest.raises(RecipeError) as info:
        parse_yaml("a: 1\nb:\n  <<: 3\n", "t.yaml")
    assert str(info.value) == "t.yaml:3:3: '<<' merges only mappings"


def test_alias_bomb_is_refused_quickly(write: WriteRecipe) -> None:
    lines = [HEAD.rstrip("\n"), "vars:", '  a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"  a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 9)]
    path = write("\n".join(lines) + "\ninput: {prompt: x}\n")
    assert errors(path) == ["r.yaml:4:61: aliases (*name) expand to more than 100,000 values; "
                            "a recipe should be much smaller"]


def test_the_alias_cap_counts_only_values_built_again_through_aliases(monkeypatch: pytest.MonkeyPatch) -> None:
    from kling_pipeline.core import yamlsrc

    monkeypatch.setattr(yamlsrc, "_MAX_ALIASED", 100)
    many = ", ".join(str(i) for i in range(1000))  # 1,000 values written out: no alias
    assert len(to_plain(parse_yaml(f"a: [{many}]\n", "t.yaml"))["a"]) == 1000
    ten = ", ".join(str(i) for i in range(10))  # 10 values x 10 aliases = 100 values again: at the cap
    assert len(to_plain(parse_yaml(f"a: &a [{ten}]\nb: [{', '.join(['*a'] * 9)}]\n", "t.yaml"))["b"]) == 9
    with pytest.raises(RecipeError) as info:  # one alias more
        parse_yaml(f"a: &a [{ten}]\nb: [{', '.join(['*a'] * 10)}]\n", "t.yaml")
    assert str(info.value) == ("t.yaml:1:8: aliases (*name) expand to more than 100 values; "
                               "a recipe should be much smaller")


def test_mapping_keys_must_be_scalars() -> None:
    with pytest.raises(RecipeError) as info:
        parse_yaml("? [a, b]\n: 1\n", "t.yaml")
    assert str(info.value) == "t.yaml:1:3: mapping keys must be plain strings"


def test_deep_nesting_is_refused() -> None:
    with pytest.raises(RecipeError) as info:
        parse_yaml("a: " + "[" * 70 + "]" * 70 + "\n", "t.yaml")
    assert str(info.value) == "t.yaml:1:68: nesting deeper than 64 levels"


@pytest.mark.parametrize("text", ["", "\n\n", "# only a comment\n", "---\n"])
def test_empty_file(write: WriteRecipe, text: str) -> None:
    assert errors(write(text)) == ["r.yaml:1:1: the file is empty"]


def test_top_level_must_be_a_mapping(write: WriteRecipe) -> None:
    assert errors(write("- a\n- b\n")) == ["r.yaml:1:1: a recipe must be a mapping of keys, got a list"]


def test_non_utf8_file(write: WriteRecipe, tmp_path: Path) -> None:
    path = write("")
    (tmp_path / path).write_bytes(b"version: 1\nname: caf\xe9\n")
    assert errors(path) == ["r.yaml: not UTF-8 text (byte 20); save the recipe as UTF-8"]


def test_missing_file(write: WriteRecipe) -> None:
    write("", "other.yaml")  # sets the working directory
    assert errors(Path("nope.yaml")) == ["nope.yaml: no such recipe file"]


def test_a_directory(write: WriteRecipe, tmp_path: Path) -> None:
    write("", "d/x.yaml")
    assert errors(Path("d")) == ["d: is a directory, not a recipe file"]


def test_utf8_bom_and_unicode_are_fine(write: WriteRecipe, tmp_path: Path) -> None:
    path = write("")
    (tmp_path / path).write_text("\ufeff" + HEAD + "input: {prompt: \"café — 東京\"}\n", encoding="utf-8")
    p = ok(path)
    assert p.render(p.jobs[0]).request["prompt"] == "café — 東京"


def test_many_yaml_problems_are_capped_at_50(write: WriteRecipe) -> None:
    from kling_pipeline import plan_file

    path = write(HEAD + "input: {prompt: x}\nvars:\n" + "".join(f"  a: {i}\n" for i in range(60)))
    with pytest.raises(RecipeError) as info:
        plan_file(path)
    assert (len(info.value.diagnostics), info.value.total) == (50, 59)
    lines = str(info.value).splitlines()
    assert lines[0] == "r.yaml:6:3: duplicate key 'a' (first at line 5)"
    assert lines[-1] == "... and 9 more errors"
