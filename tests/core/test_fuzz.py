"""Fuzz: structured mutations of the shipped recipes never get past the error family.

Each example takes one of ``recipes/*.yaml``, mutates it — a value swapped for a huge
number, a long string, an odd YAML tag, a hostile template, deep nesting; a key added;
``extends`` or an image pointed at a FIFO, a symlink loop, a directory, ``/dev/zero`` or a
truncated image; a file axis globbing those, or written wrong; a ``matrix.filter`` that is
hostile, not boolean or not an expression; in a pipeline (``recipes/pipeline.yaml``, drawn
more often), a stage's ``needs``, ``where``, app, matrix or templates reading upstream outputs
made wrong, or a stage added; the text cut or spliced — and runs ``validate`` or ``plan``
in-process.
The answer is always 0, 2 or 3 (never 1: an internal error), with no traceback, within a
per-example deadline. Examples are derandomized, so the suite is the same on every run.
"""

from __future__ import annotations

import io
import json
import os
import shutil
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kling_pipeline.cli import main

from .util import png

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = sorted(p.name for p in (ROOT / "recipes").glob("*.yaml"))

NUMBERS = ["1000001", "1000000000", "9223372036854775808", "9" * 5000, "0x" + "f" * 4000, "1e999", "-.inf",
           ".nan", "1:1", "16:9", "-0", "0o777", "0", "-1", "2.5", "true", "null", "~"]
STRINGS = ["''", "' '", json.dumps("x" * 100_000), json.dumps("a\0b"), json.dumps("\u202e\ufeff"), "'../../x'",
           "/dev/zero", "fifo.yaml", "loop.yaml", "zero.yaml", "dir", "trunc.png", "fifo.png", "refs",
           "'data:image/png;base64,AAAA'", "'https://example.com/x.png'", "'out\\x'", "'{{'", "'%}'"]
TAGS = ["!!python/object/apply:os.system ['true']", "!!binary aGVsbG8=", "!custom x", "!!set {a, b}",
        "!!omap [{a: 1}]", "!!timestamp 2001-12-14", "!!float 1", "!!str 1", "!!int '1:1'", "!!map {}"]
NESTED = ["[]", "{}", "[" * 40 + "]" * 40, "[" * 70 + "]" * 70, "{a: {b: {c: [1, {d: 2}]}}}", "&a [1, *a]",
          "[" + ", ".join(["[1, 2, 3, 4, 5, 6, 7, 8, 9, 10]"] * 8) + "]"]
TEMPLATES = [json.dumps(t) for t in [
    "{{ range }}", "{{ cycler }}", "{{ lipsum(10**6) }}", "{{ namespace }}", "{{ [1]|map('string') }}",
    "{% for i in range(99999) %}{% for j in range(99999) %}{% endfor %}{% endfor %}",
    "{{ range(99999)|join('x'*999999) }}", "{{ " + "(" * 1000 + "1" + ")" * 1000 + " }}",
    "{% if 1 %}" * 300 + "x" + "{% endif %}" * 300, "{{ 1" + "|abs" * 3000 + " }}", "{{ 1" + "+1" * 3000 + " }}",
    "{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}", "{{ ''.__class__.__mro__ }}", "{{ 'x' * 10**10 }}",
    "{% set ns = namespace(s='x') %}{% for i in range(40) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s }}",
    "{{ 2 ** 50000 }}", "{{ x", "{% if %}", "{# open", "{{ self }}", "{{ [1, 2]|random }}", "{{ 1e999 }}",
    "{{ {1: 2} }}", "{{ 'a'.center(10**9) }}", "{{ '%999999999s' % 1 }}", "{% for x in [1] recursive %}"
    "{{ loop([1, 2]) }}{% endfor %}", "{{ light|upper }} {{ subject }}", "{{ ref.file }}", "{{ undefined_name }}",
]]
# file axes: globs over the shipped refs and the hostile files beside them, and axes written wrong
FILE_AXES = ["{files: 'refs/*.png'}", "{files: 'refs/**'}", "{files: '**/*.png'}", "{files: '**'}", "{files: '*'}",
             "{files: '*.yaml'}", "{files: 'nope/*.png'}", "{files: 'dir/*'}", "{files: '[a-'}", "{files: ''}",
             "{files: 'refs/'}", "{files: fifo.png}", "{files: trunc.png}", "{files: loop.yaml}", "{files: [a]}",
             "{file: 'refs/*.png'}", "{files: 'refs/*.png', x: 1}", "{}", "{files: '../../*'}",
             "{files: " + json.dumps("a\0b") + "}", "{files: 'refs/**/**/../*.png'}"]
FILTERS = [json.dumps(f) for f in [
    "style != 'noir'", "style", "subject", "ref is defined", "not", "x ==", "{{ style }}", "true", "1", "none",
    "range", "range(99999)|list|length > 0", "''.__class__.__mro__", "[1, 2]|random == 1", "lipsum() == ''",
    "'x' * 10**9 == 'y'", "not " * 60 + "true", "undefined_name", "repeat_index == 0", "recipe == 'x'",
    "(range(60000)|select('odd')|list|length) > 0", "light|length > 3", "ref.file.endswith('.png')",
]] + ["[]", "['true', 'false']", "[1, 'true']", "''", "3", "{a: 1}", "[" + ", ".join(["'true'"] * 50) + "]"]
RAW = NUMBERS + STRINGS + TAGS + NESTED + TEMPLATES + FILE_AXES + FILTERS
KEYS = ["version", "name", "app", "extends", "vars", "matrix", "input", "repeat", "output", "budget",
        "concurrency", "price", "webhook", "include", "exclude", "zip", "filter", "files", "prompt", "image", "n",
        "aspect_ratio", "dir", "filename", "max_usd", "usd_per_image", "exlude", "filtre", "subject", "x y", "<<"]
SMALL_AXES = ["[a]", "[a, b]", "[" + ", ".join(f"v{i}" for i in range(17)) + "]"]
# pipelines: what a stage needs and takes, the apps it may run, what its templates read upstream
NEEDS = ["draft", "refine", "animate", "nope", "[draft, refine]", "[]", "[draft]", "3", "null", "{a: 1}", "''",
         json.dumps("a\0b")]
WHERES = ["{finish: glossy}", "{finish: [glossy, nope]}", "{subject: 'ceramic mug'}", "{nope: 1}", "[]", "{}",
          "{finish: []}", "{finish: [{a: 1}]}", "3", "{draft: x}", "{finish: " + "[" * 40 + "]" * 40 + "}",
          "{finish: [glossy, matte], subject: [x, 'brass desk lamp']}"]
APPS = ["klingai/video-o1@ef28809a", "google/gemini-2-5-flash-image@57fbd965", "elevenlabs/tts@0b666f9a",
        "elevenlabs/sound-effects", "klingai/image-o1", "nope/app", "klingai/video-o1@nope", "3"]
UPSTREAM = [json.dumps(t) for t in [
    "{{ draft.image }}", "{{ draft }}", "{{ draft.imagez }}", "see {{ draft.image }}", "{{ refine.input.image }}",
    "{{ draft.images }}", "{{ refine.video }}", "{{ animate.video }}", "{{ draft.input.prompt|upper }}",
    "{{ draft.input }}", "{{ draft.axes }}", "{{ draft.key }}", "{{ draft['image'] }}", "{{ draft[0] }}",
    "{{ draft.items }}", "{{ refine.subject }}", "{{ draft.job_id }}{{ draft.image }}", "{{ refine.description }}",
    "{{ refine.image if refine.finish == 'glossy' else refine.input.image }}", "{{ draft.input.image }}",
    "{{ refine.description|upper }}", "{% for x in refine.images %}{{ x }}{% endfor %}", "{{ refine.axes.finish }}",
    "{{ refine.input.prompt * 999999 }}", "https://upstream.invalid/draft/" + "0" * 64 + "/image/0",
]]
STAGE_FIELDS = ["prompt", "prompt", "image", "image", "text", "reference_video", "reference_images", "duration",
                "mode", "images", "num_images"]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shipped recipes and their files, beside the hostile files a mutation may name."""
    root = tmp_path_factory.mktemp("fuzz")
    shutil.copytree(ROOT / "recipes", root, dirs_exist_ok=True, ignore=shutil.ignore_patterns("out"))
    os.mkfifo(root / "fifo.yaml")
    os.mkfifo(root / "fifo.png")
    os.symlink("loop2.yaml", root / "loop.yaml")
    os.symlink("loop.yaml", root / "loop2.yaml")
    os.symlink("/dev/zero", root / "zero.yaml")
    (root / "dir").mkdir()
    (root / "trunc.png").write_bytes(png(400, 400)[:60])
    return root


def _paths(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [path]
    if isinstance(value, dict):
        for key, child in value.items():
            out += _paths(child, (*path, key))
    elif isinstance(value, list):
        for i, child in enumerate(value):
            out += _paths(child, (*path, i))
    return out


def _set(tree: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    node = tree
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = value
    return tree


@st.composite
def mutated(draw: st.DrawFn) -> tuple[str, str]:
    """(recipe file name inside the workspace, its mutated text)."""
    name = draw(st.sampled_from(SHIPPED + ["pipeline.yaml"] * 3))
    tree = yaml.safe_load((ROOT / "recipes" / name).read_text(encoding="utf-8"))
    raws: list[str] = []

    def raw(snippet: str) -> str:
        raws.append(snippet)
        return f"RAW{len(raws) - 1}XX"

    for _ in range(draw(st.integers(1, 2))):
        kind = draw(st.sampled_from(["template", "template", "template", "replace", "replace", "add", "axes",
                                     "explode", "extends", "image", "files", "filter", "stage", "stage", "stage"]))
        paths = _paths(tree)[1:]  # not the whole document (that is one mutation among many below)
        if kind == "template" and isinstance(tree, dict) and isinstance(tree.get("input"), dict):
            field = draw(st.sampled_from(["prompt", "prompt", "negative_prompt", "aspect_ratio", "n", "image"]))
            tree["input"][field] = raw(draw(st.sampled_from(TEMPLATES)))
        elif kind == "replace" and paths:
            tree = _set(tree, draw(st.sampled_from(paths)), raw(draw(st.sampled_from(RAW))))
        elif kind == "add" and isinstance(tree, dict):
            target = draw(st.sampled_from([p for p in paths if isinstance(_get(tree, p), dict)] or [()]))
            node = _get(tree, target)
            if isinstance(node, dict):
                node[draw(st.sampled_from(KEYS))] = raw(draw(st.sampled_from(RAW)))
        elif kind == "axes" and isinstance(tree, dict):
            tree["matrix"] = {f"ax{i}": raw(draw(st.sampled_from(SMALL_AXES))) for i in range(draw(st.integers(1, 3)))}
        elif kind == "explode" and isinstance(tree, dict):
            tree[draw(st.sampled_from(["repeat", "matrix"]))] = raw(draw(st.sampled_from(
                ["1000000001", "999999999999999999999", "{" + ", ".join(f"e{i}: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]"
                                                                      for i in range(8)) + "}"])))
        elif kind == "extends" and isinstance(tree, dict):
            tree["extends"] = raw(draw(st.sampled_from(
                ["fifo.yaml", "loop.yaml", "zero.yaml", "dir", "/dev/zero", "[]", "[fifo.yaml, bases/defaults.yaml]",
                 name, "nope.yaml", json.dumps("a\0b"), "[" + ", ".join(["bases/defaults.yaml"] * 30) + "]"])))
        elif kind == "files" and isinstance(tree, dict):
            if not isinstance(tree.get("matrix"), dict):
                tree["matrix"] = {}
            axis = draw(st.sampled_from(["pic", "ref", "style"]))  # a new axis, or one the recipe's templates read
            tree["matrix"][axis] = raw(draw(st.sampled_from(FILE_AXES)))
            if isinstance(tree.get("input"), dict) and draw(st.booleans()):
                tree["input"]["image"] = raw(json.dumps("{{ " + axis + " }}"))
        elif kind == "filter" and isinstance(tree, dict):
            if not isinstance(tree.get("matrix"), dict):
                tree["matrix"] = {}
            tree["matrix"]["filter"] = raw(draw(st.sampled_from(FILTERS + RAW[:10])))
        elif kind == "stage" and isinstance(tree, dict) and isinstance(tree.get("stages"), dict):
            _mutate_stage(draw, tree["stages"], raw)
        elif kind == "image" and isinstance(tree, dict):
            tree.setdefault("input", {})
            if isinstance(tree["input"], dict):
                tree["input"]["image"] = raw(draw(st.sampled_from(
                    ["fifo.png", "trunc.png", "dir", "/dev/zero", "loop.yaml", "refs/teal-square.png",
                     json.dumps("x\0.png"), "'data:image/png;base64,iVBORw0KGgo='"])))
    text = yaml.safe_dump(tree, default_flow_style=None, width=10**9, allow_unicode=True, sort_keys=False)
    for i, snippet in enumerate(raws):
        text = text.replace(f"'RAW{i}XX'", snippet).replace(f"RAW{i}XX", snippet)
    cut = draw(st.sampled_from([None] * 8 + ["truncate", "splice", "whole"]))
    if cut == "truncate":
        text = text[:draw(st.integers(0, len(text)))]
    elif cut == "whole":
        text = draw(st.sampled_from(RAW)) + "\n"
    elif cut == "splice":
        at = draw(st.integers(0, len(text)))
        text = text[:at] + draw(st.sampled_from(["\n  - ", ": ", "\t", "{", "]", "*x", "&a ", "\n<<: *a\n", "\x00"])) \
            + text[at:]
    return name, text


def _mutate_stage(draw: st.DrawFn, stages: dict[Any, Any], raw: Any) -> None:
    """One mutation of a pipeline's stages: a stage's needs, where, app, matrix, repeat or a
    template reading upstream made wrong, or a new stage."""
    names = list(stages)
    what = draw(st.sampled_from(["needs", "where", "template", "template", "app", "explode", "new", "output"]))
    if what == "new" or not names:
        stages[draw(st.sampled_from(["extra", "1x", "recipe", "draft", "a-b", "input", "loop"]))] = {
            "needs": raw(draw(st.sampled_from(NEEDS))),
            "input": {draw(st.sampled_from(STAGE_FIELDS)): raw(draw(st.sampled_from(UPSTREAM)))}}
        return
    stage = stages[draw(st.sampled_from(names))]
    if not isinstance(stage, dict):
        return
    if what == "needs":
        stage["needs"] = raw(draw(st.sampled_from(NEEDS)))
    elif what == "where":
        stage["where"] = raw(draw(st.sampled_from(WHERES)))
    elif what == "app":
        stage["app"] = raw(draw(st.sampled_from(APPS)))
    elif what == "explode":
        stage[draw(st.sampled_from(["repeat", "matrix"]))] = raw(draw(st.sampled_from(
            ["1000", "999999999999", "{a: [" + ", ".join(map(str, range(800))) + "]}", "{draft: [a, b]}",
             "{filter: 'refine.image != 1'}", "{finish: [a, b], zip: [[finish, draft]]}"])))
    elif what == "output":
        stage["output"] = raw(draw(st.sampled_from(
            ["{filename: '{{ draft.image }}'}", "{filename: '{{ refine.input.prompt }}'}", "{dir: x}", "[]"])))
    elif isinstance(stage.get("input"), dict):
        stage["input"][draw(st.sampled_from(STAGE_FIELDS))] = raw(draw(st.sampled_from(UPSTREAM + TEMPLATES[:8])))


def _get(tree: Any, path: tuple[Any, ...]) -> Any:
    for part in path:
        tree = tree[part]
    return tree


@settings(max_examples=300, deadline=timedelta(seconds=10), derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                 HealthCheck.data_too_large])
@given(case=mutated(), command=st.sampled_from(["validate", "plan", "plan-json"]),
       target=st.sampled_from([None] * 12 + ["fifo.yaml", "loop.yaml", "zero.yaml", "dir"]))
def test_mutated_recipes_end_in_0_2_or_3_without_a_traceback(workspace: Path, case: tuple[str, str], command: str,
                                                            target: str | None) -> None:
    name, text = case
    path = workspace / f"mutated-{name}"
    path.write_text(text, encoding="utf-8")
    recipe = str(path if target is None else workspace / target)
    argv = {"validate": ["validate", recipe], "plan": ["plan", recipe, "--rows", "3"],
            "plan-json": ["plan", recipe, "--json"]}[command]
    out, err = io.StringIO(), io.StringIO()
    code = main(argv, out=out, err=err)
    assert code in (0, 2, 3), err.getvalue()[-2000:]
    assert "Traceback" not in err.getvalue() + out.getvalue()
    assert "internal error" not in err.getvalue()
