"""Matrix expansion: product order, GitHub Actions include/exclude semantics, zip."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from .conftest import WriteRecipe
from .util import HEAD, combos, errors, ok

# Every include/exclude example of GitHub's "Running variations of jobs in a workflow"
# page, with the combinations the page lists (in the order jobs are created).
GITHUB_EXAMPLES: list[tuple[str, str, list[dict[str, Any]]]] = [
    (
        "product: first axis varies slowest",
        """
        version: [10, 12, 14]
        os: [ubuntu-latest, windows-latest]
        """,
        [
            {"version": 10, "os": "ubuntu-latest"},
            {"version": 10, "os": "windows-latest"},
            {"version": 12, "os": "ubuntu-latest"},
            {"version": 12, "os": "windows-latest"},
            {"version": 14, "os": "ubuntu-latest"},
            {"version": 14, "os": "windows-latest"},
        ],
    ),
    (
        "expanding or adding matrix configurations (fruit/animal)",
        """
        fruit: [apple, pear]
        animal: [cat, dog]
        include:
          - color: green
          - color: pink
            animal: cat
          - fruit: apple
            shape: circle
          - fruit: banana
          - fruit: banana
            animal: cat
        """,
        [
            {"fruit": "apple", "animal": "cat", "color": "pink", "shape": "circle"},
            {"fruit": "apple", "animal": "dog", "color": "green", "shape": "circle"},
            {"fruit": "pear", "animal": "cat", "color": "pink"},
            {"fruit": "pear", "animal": "dog", "color": "green"},
            {"fruit": "banana"},
            {"fruit": "banana", "animal": "cat"},
        ],
    ),
    (
        "expanding configurations (npm 6 on windows/node 16)",
        """
        os: [windows-latest, ubuntu-latest]
        node: [14, 16]
        include:
          - os: windows-latest
            node: 16
            npm: 6
        """,
        [
            {"os": "windows-latest", "node": 14},
            {"os": "windows-latest", "node": 16, "npm": 6},
            {"os": "ubuntu-latest", "node": 14},
            {"os": "ubuntu-latest", "node": 16},
        ],
    ),
    (
        "adding configurations (node 17 on windows)",
        """
        os: [windows-latest, ubuntu-latest]
        node: [14, 16]
        include:
          - os: windows-latest
            node: 17
        """,
        [
            {"os": "windows-latest", "node": 14},
            {"os": "windows-latest", "node": 16},
            {"os": "ubuntu-latest", "node": 14},
            {"os": "ubuntu-latest", "node": 16},
            {"os": "windows-latest", "node": 17},
        ],
    ),
    (
        "include only (site/datacenter)",
        """
        include:
          - site: production
            datacenter: site-a
          - site: staging
            datacenter: site-b
        """,
        [
            {"site": "production", "datacenter": "site-a"},
            {"site": "staging", "datacenter": "site-b"},
        ],
    ),
    (
        "excluding matrix configurations (partial match, 9 jobs)",
        """
        os: [macos-latest, windows-latest]
        version: [12, 14, 16]
        environment: [staging, production]
        exclude:
          - os: macos-latest
            version: 12
            environment: production
          - os: windows-latest
            version: 16
        """,
        [
            {"os": "macos-latest", "version": 12, "environment": "staging"},
            {"os": "macos-latest", "version": 14, "environment": "staging"},
            {"os": "macos-latest", "version": 14, "environment": "production"},
            {"os": "macos-latest", "version": 16, "environment": "staging"},
            {"os": "macos-latest", "version": 16, "environment": "production"},
            {"os": "windows-latest", "version": 12, "environment": "staging"},
            {"os": "windows-latest", "version": 12, "environment": "production"},
            {"os": "windows-latest", "version": 14, "environment": "staging"},
            {"os": "windows-latest", "version": 14, "environment": "production"},
        ],
    ),
]

MORE_CASES: list[tuple[str, str, list[dict[str, Any]]]] = [
    (
        "three axes: the last varies fastest",
        """
        a: [1, 2]
        b: [x, y]
        c: [p, q]
        """,
        [{"a": a, "b": b, "c": c} for a in (1, 2) for b in ("x", "y") for c in ("p", "q")],
    ),
    (
        "exclude with one key removes every combination holding that value",
        """
        a: [1, 2, 3]
        b: [x, y]
        exclude:
          - a: 2
        """,
        [{"a": 1, "b": "x"}, {"a": 1, "b": "y"}, {"a": 3, "b": "x"}, {"a": 3, "b": "y"}],
    ),
    (
        "exclude that matches nothing removes nothing",
        """
        a: [1, 2]
        exclude:
          - a: 3
        """,
        [{"a": 1}, {"a": 2}],
    ),
    (
        "include after exclude re-adds an excluded combination as a new one, at the end",
        """
        a: [1, 2]
        b: [x, y]
        exclude:
          - a: 1
            b: x
        include:
          - a: 1
            b: x
            extra: back
        """,
        [{"a": 1, "b": "y"}, {"a": 2, "b": "x"}, {"a": 2, "b": "y"}, {"a": 1, "b": "x", "extra": "back"}],
    ),
    (
        "an include is not merged into combinations an exclude removed",
        """
        a: [1, 2]
        exclude:
          - a: 1
        include:
          - a: 1
            tag: t
        """,
        [{"a": 2}, {"a": 1, "tag": "t"}],
    ),
    (
        "added combinations are never merged into by later includes",
        """
        a: [1]
        include:
          - a: 2
          - extra: e
          - a: 2
            more: m
        """,
        [{"a": 1, "extra": "e"}, {"a": 2}, {"a": 2, "more": "m"}],
    ),
    (
        "a later include may overwrite a key an earlier include added",
        """
        a: [1, 2]
        include:
          - tag: first
          - a: 2
            tag: second
        """,
        [{"a": 1, "tag": "first"}, {"a": 2, "tag": "second"}],
    ),
    (
        "1, true, 1.0 and '1' are four different values",
        """
        v: [1, true, 1.0, "1"]
        exclude:
          - v: 1
        include:
          - v: true
            tag: bool
          - v: 1.0
            tag: float
        """,
        [{"v": True, "tag": "bool"}, {"v": 1.0, "tag": "float"}, {"v": "1"}],
    ),
    (
        "an include of 1.0 does not fit an original value 1: it is added",
        """
        v: [1]
        include:
          - v: 1.0
        """,
        [{"v": 1}, {"v": 1.0}],
    ),
    (
        "exclude of a mapping-valued axis matches partially, by the keys it names",
        """
        style:
          - {name: noir, suffix: dark}
          - {name: pop, suffix: bright}
        exclude:
          - style: {name: noir}
        """,
        [{"style": {"name": "pop", "suffix": "bright"}}],
    ),
    (
        "zip advances axes in lockstep at the place of the group's first axis",
        """
        a: [1, 2, 3]
        s: [x, y]
        b: [p, q, r]
        zip:
          - [b, a]
        """,
        [
            {"a": 1, "s": "x", "b": "p"}, {"a": 1, "s": "y", "b": "p"},
            {"a": 2, "s": "x", "b": "q"}, {"a": 2, "s": "y", "b": "q"},
            {"a": 3, "s": "x", "b": "r"}, {"a": 3, "s": "y", "b": "r"},
        ],
    ),
    (
        "two zip groups",
        """
        a: [1, 2]
        b: [x, y]
        c: [p, q]
        d: [u, v]
        zip: [[a, b], [c, d]]
        """,
        [
            {"a": 1, "b": "x", "c": "p", "d": "u"}, {"a": 1, "b": "x", "c": "q", "d": "v"},
            {"a": 2, "b": "y", "c": "p", "d": "u"}, {"a": 2, "b": "y", "c": "q", "d": "v"},
        ],
    ),
    (
        "exclude and include work on zipped axes too",
        """
        subject: [keeper, beekeeper]
        setting: [cliff, meadow]
        ratio: ["16:9", "9:16"]
        zip: [[subject, setting]]
        exclude:
          - setting: meadow
            ratio: "9:16"
        include:
          - subject: keeper
            mood: stormy
        """,
        [
            {"subject": "keeper", "setting": "cliff", "ratio": "16:9", "mood": "stormy"},
            {"subject": "keeper", "setting": "cliff", "ratio": "9:16", "mood": "stormy"},
            {"subject": "beekeeper", "setting": "meadow", "ratio": "16:9"},
        ],
    ),
    ("an empty matrix is one job with no values", "{}", [{}]),
]


@pytest.mark.parametrize(("matrix", "expected"), [(m, e) for _, m, e in GITHUB_EXAMPLES],
                         ids=[name for name, _, _ in GITHUB_EXAMPLES])
def test_github_documented_examples(matrix: str, expected: list[dict[str, Any]]) -> None:
    assert combos(matrix) == expected


@pytest.mark.parametrize(("matrix", "expected"), [(m, e) for _, m, e in MORE_CASES],
                         ids=[name for name, _, _ in MORE_CASES])
def test_matrix_semantics(matrix: str, expected: list[dict[str, Any]]) -> None:
    result = combos(matrix)
    assert result == expected
    # same values *and* same types: 1 is not True is not 1.0
    assert [{k: type(v) for k, v in c.items()} for c in result] == [
        {k: type(v) for k, v in c.items()} for c in expected
    ]


def test_no_matrix_key_is_one_job(write: WriteRecipe) -> None:
    p = ok(write(HEAD + "input: {prompt: hello}\n"))
    assert [j.id for j in p.jobs] == ["job"]
    assert dict(p.jobs[0].combination.values) == {}


def test_combination_order_and_ids_follow_the_recipe(write: WriteRecipe) -> None:
    p = ok(write(HEAD + """\
matrix:
  style: [noir, pop]
  subject: [mug, lamp]
input:
  prompt: "{{ subject }} in {{ style }}"
"""))
    assert [j.id for j in p.jobs] == ["noir-mug", "noir-lamp", "pop-mug", "pop-lamp"]
    assert p.jobs[0].label == "[style=noir, subject=mug]"


def _matrix_errors(write: WriteRecipe, matrix: str) -> list[str]:
    return errors(write(HEAD + "input:\n  prompt: x\nmatrix:\n" + matrix))


def test_zip_of_unequal_lengths_is_an_error(write: WriteRecipe) -> None:
    assert _matrix_errors(write, """\
  a: [1, 2]
  b: [x, y, z]
  zip:
    - [a, b]
""") == ["r.yaml:9:7: zipped axes must have the same number of values (a has 2, b has 3)"]


def test_zip_naming_an_unknown_axis_is_an_error(write: WriteRecipe) -> None:
    assert _matrix_errors(write, """\
  a: [1, 2]
  zip: [[a, nope]]
""") == ["r.yaml:7:13: matrix.zip names 'nope', which is not a matrix axis"]


def test_axis_zipped_twice_is_an_error(write: WriteRecipe) -> None:
    assert _matrix_errors(write, """\
  a: [1, 2]
  b: [x, y]
  c: [p, q]
  zip: [[a, b], [c, a]]
""") == ["r.yaml:9:21: axis 'a' is already zipped (line 9)"]


def test_zip_group_of_one_axis_is_an_error(write: WriteRecipe) -> None:
    assert _matrix_errors(write, """\
  a: [1, 2]
  zip: [[a]]
""") == ["r.yaml:7:9: each matrix.zip group must be a list of two or more axis names"]


def test_empty_axis_is_an_error(write: WriteRecipe) -> None:
    assert _matrix_errors(write, "  a: []\n") == [
        "r.yaml:6:6: matrix axis 'a' has no values (remove the axis or add values)"
    ]


def test_axis_that_is_not_a_list_is_an_error(write: WriteRecipe) -> None:
    assert _matrix_errors(write, "  a: 3\n") == ["r.yaml:6:6: matrix axis 'a' must be a list of values, got an integer"]


def test_exclude_key_that_is_not_an_axis_is_an_error(write: WriteRecipe) -> None:
    assert _matrix_errors(write, """\
  style: [noir]
  exclude:
    - styel: noir
""") == ["r.yaml:8:7: exclude key 'styel' is not a matrix axis (axes: style)"]


@pytest.mark.parametrize(("typo", "meant"), [("exlude", "exclude"), ("inclde", "include"), ("zipp", "zip")])
def test_typo_of_a_matrix_keyword_is_an_error_with_a_suggestion(write: WriteRecipe, typo: str, meant: str) -> None:
    found = _matrix_errors(write, f"  style: [noir]\n  {typo}:\n    - style: noir\n")
    assert found == [f"r.yaml:7:3: unknown key {typo!r} in matrix; did you mean {meant!r}?"]


def test_a_typo_of_a_keyword_is_not_offered_as_a_known_name(write: WriteRecipe) -> None:
    path = write(HEAD + "input:\n  prompt: '{{ stlye }}'\nmatrix:\n  style: [noir]\n  exlude: []\n")
    assert errors(path) == [
        "r.yaml:4:11: input.prompt: 'stlye' is undefined; did you mean 'style'? (known names: recipe, repeat_index, "
        "style)",
        "r.yaml:7:3: unknown key 'exlude' in matrix; did you mean 'exclude'?",
    ]


def test_include_and_exclude_must_be_lists_of_mappings(write: WriteRecipe) -> None:
    assert _matrix_errors(write, """\
  a: [1]
  include: {a: 2}
  exclude:
    - 3
""") == [
        "r.yaml:7:12: matrix.include must be a list of mappings, got a mapping",
        "r.yaml:9:7: each exclude entry must be a non-empty mapping of name: value",
    ]


def test_include_key_shadowing_a_var_is_an_error(write: WriteRecipe) -> None:
    path = write(HEAD + """\
vars: {light: soft}
matrix:
  include:
    - light: hard
input: {prompt: "{{ light }}"}
""")
    assert errors(path) == ["r.yaml:6:7: include key 'light' shadows the var of the same name"]


def test_expansion_streams(tmp_path: Path) -> None:
    """A million-combination matrix yields its first combination without building a list."""
    from kling_pipeline.core.matrix import expand
    from kling_pipeline.core.recipe import build_recipe
    from kling_pipeline.core.yamlsrc import parse_yaml

    axes = "\n".join(f"  a{i}: [{', '.join(str(v) for v in range(10))}]" for i in range(6))
    text = "version: 1\napp: klingai/image-o1\ninput: {prompt: x}\nmatrix:\n" + axes + "\n"
    recipe = build_recipe(parse_yaml(text, "m.yaml"), "m.yaml")
    assert recipe.matrix.size_hint() == 1_000_000
    it = expand(recipe.matrix)
    assert dict(next(it).values) == {f"a{i}": 0 for i in range(6)}
    assert dict(next(it).values) == {**{f"a{i}": 0 for i in range(5)}, "a5": 1}


# --- property: expand() agrees with a plain, list-based reading of GitHub's documented rules ---

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

POOL = st.sampled_from([0, 1, 2, "p", "q", True])


def same(a: Any, b: Any) -> bool:
    return type(a) is type(b) and a == b


def reference(axes: dict[str, list[Any]], include: list[dict[str, Any]],
              exclude: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """GitHub's rules, literally: product, then exclude (partial match), then include."""
    import itertools

    if not axes and not include:
        return [{}]
    originals = [dict(zip(axes, values, strict=True)) for values in itertools.product(*axes.values())] if axes else []
    originals = [c for c in originals if not any(all(same(c[k], v) for k, v in e.items()) for e in exclude)]
    result = [dict(c) for c in originals]
    added: list[dict[str, Any]] = []
    for entry in include:
        fits = [i for i, c in enumerate(originals) if all(k not in c or same(c[k], v) for k, v in entry.items())]
        for i in fits:
            result[i].update(entry)
        if not fits:
            added.append(dict(entry))
    return result + added


@st.composite
def matrices(draw: st.DrawFn) -> tuple[dict[str, list[Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    names = draw(st.lists(st.sampled_from(["a", "b", "c"]), unique=True, max_size=3))
    axes = {n: draw(st.lists(POOL, min_size=1, max_size=3)) for n in names}
    exclude = [draw(st.dictionaries(st.sampled_from(names), POOL, min_size=1)) for _ in range(draw(st.integers(0, 2)))
               ] if names else []
    include = draw(st.lists(st.dictionaries(st.sampled_from([*names, "x", "y"]), POOL, min_size=1), max_size=3))
    return axes, include, exclude


@settings(max_examples=150, deadline=None)
@given(matrices())
def test_expansion_matches_the_documented_rules(m: tuple[dict[str, list[Any]], list[dict[str, Any]],
                                                         list[dict[str, Any]]]) -> None:
    import json

    axes, include, exclude = m
    text = "".join(f"{name}: {json.dumps(values)}\n" for name, values in axes.items())
    if include:
        text += f"include: {json.dumps(include)}\n"
    if exclude:
        text += f"exclude: {json.dumps(exclude)}\n"
    got = combos(text or "{}")
    want = reference(axes, include, exclude)
    assert got == want
    assert [[type(v) for v in c.values()] for c in got] == [[type(v) for v in c.values()] for c in want]


# --- property: the indexed expansion gives exactly what comparing every entry with every combination gives ---

from kling_pipeline.core.errors import Position  # noqa: E402
from kling_pipeline.core.matrix import Axis, AxisValue, Combination, MatrixEntry, MatrixSpec, expand, same_value  # noqa: E402

VALUES = st.sampled_from([0, 1, 1.0, True, "1", None, [1, "p"], {"k": 1}, {"k": 1, "j": [2]}])


def pairwise(spec: MatrixSpec) -> list[Combination]:
    """Every exclude and include entry compared with every combination, in order."""
    import itertools

    def matches(pattern: Any, value: Any) -> bool:
        if isinstance(pattern, dict) and isinstance(value, dict):
            return all(k in value and matches(v, value[k]) for k, v in pattern.items())
        return same_value(pattern, value)

    names = spec.axis_names
    out: list[Combination] = []
    fitted = [False] * len(spec.include)
    products = itertools.product(*(a.values for a in spec.axes)) if spec.axes else iter(())
    for picked in products:
        values = dict(zip(names, (av.value for av in picked), strict=True))
        if any(all(matches(v, values[k]) for k, v in ex.values.items()) for ex in spec.exclude):
            continue
        origins = dict(zip(names, (av.pos for av in picked), strict=True))
        labels = dict(zip(names, (av.label for av in picked), strict=True))
        for i, entry in enumerate(spec.include):
            if all(k not in names or same_value(values[k], v) for k, v in entry.values.items()):
                fitted[i] = True  # an original axis keeps its own value (the same), where and how it was written
                added = [k for k in entry.values if k not in names]
                values.update({k: entry.values[k] for k in added})
                origins.update({k: entry.origins[k] for k in added})
                labels.update({k: entry.labels[k] for k in added})
        out.append(Combination(values, origins, labels))
    if not spec.axes and not spec.include:
        out.append(Combination({}, {}, {}))
    out += [Combination(dict(e.values), dict(e.origins), dict(e.labels), added=True)
            for e, hit in zip(spec.include, fitted, strict=True) if not hit]
    return out


@st.composite
def specs(draw: st.DrawFn) -> MatrixSpec:
    line = iter(range(1, 10_000))

    def at() -> Position:
        return Position("m.yaml", next(line), 1)

    names = draw(st.lists(st.sampled_from(["a", "b", "c"]), unique=True, max_size=3))
    axes = tuple(Axis(n, tuple(AxisValue(v, at(), repr(v)) for v in draw(st.lists(VALUES, min_size=1, max_size=3))),
                      at()) for n in names)

    def entries(keys: list[str], most: int) -> tuple[MatrixEntry, ...]:
        if not keys:
            return ()
        drawn = draw(st.lists(st.dictionaries(st.sampled_from(keys), VALUES, min_size=1), max_size=most))
        return tuple(MatrixEntry(d, {k: at() for k in d}, {k: repr(v) for k, v in d.items()}, at()) for d in drawn)

    return MatrixSpec(axes, (), entries([*names, "x", "y", "z"], 5), entries(names, 3))


@settings(max_examples=400, deadline=None)
@given(specs())
def test_indexed_expansion_equals_pairwise_comparison(spec: MatrixSpec) -> None:
    def plain(combos: list[Combination]) -> list[tuple[Any, ...]]:
        return [(list(c.values.items()), list(c.origins.items()), list(c.labels.items()), c.added) for c in combos]

    got, want = plain(list(expand(spec))), plain(pairwise(spec))
    assert repr(got) == repr(want)  # repr: 1, 1.0 and True stay apart, key order counts
