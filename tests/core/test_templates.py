"""Request templates: Jinja2 in a sandbox, StrictUndefined, native types, the context."""

from __future__ import annotations

from typing import Any

import jinja2
import pytest

from kling_pipeline.core.errors import Position
from kling_pipeline.core.render import RenderError, TemplateSet, compile_leaf, make_environment
from kling_pipeline.core.yamlsrc import parse_yaml

from .conftest import WriteRecipe
from .util import HEAD, errors, ok


def request(write: WriteRecipe, body: str) -> list[dict[str, Any]]:
    p = ok(write(HEAD + body))
    return [p.render(j).request for j in p.jobs]


def test_a_single_expression_keeps_its_native_type(write: WriteRecipe) -> None:
    assert request(write, """\
vars: {count: 2, ratio: "1:1"}
input:
  prompt: "{{ count }} mugs"
  n: "{{ count }}"
  aspect_ratio: "{{ ratio }}"
""") == [{"prompt": "2 mugs", "n": 2, "aspect_ratio": "1:1"}]


def test_expressions_keep_their_native_type(write: WriteRecipe) -> None:
    got = request(write, """\
vars: {count: 2}
input:
  prompt: "x"
  n: "{{ count + 1 }}"
""")
    assert got == [{"prompt": "x", "n": 3}]
    assert type(got[0]["n"]) is int


def test_spaces_around_a_single_expression_do_not_make_it_text(write: WriteRecipe) -> None:
    assert request(write, "vars: {count: 2}\ninput:\n  prompt: x\n  n: '  {{ count }} '\n")[0]["n"] == 2


def test_non_strings_pass_through(write: WriteRecipe) -> None:
    assert request(write, "input:\n  prompt: '{% raw %}{{ literal }}{% endraw %}'\n  n: 1\n  image: null\n") == [
        {"prompt": "{{ literal }}", "n": 1, "image": None}
    ]


def test_a_string_without_template_markers_is_left_alone(write: WriteRecipe) -> None:
    assert request(write, "input:\n  prompt: 'curly } and { braces, 100% {ok}'\n") == [
        {"prompt": "curly } and { braces, 100% {ok}"}
    ]


def test_mapping_valued_axis(write: WriteRecipe) -> None:
    got = request(write, """\
matrix:
  style:
    - {name: noir, suffix: "high contrast, black and white"}
    - {name: pop, suffix: bright flat colours}
input:
  prompt: "A mug, {{ style.suffix }}"
""")
    assert got == [{"prompt": "A mug, high contrast, black and white"}, {"prompt": "A mug, bright flat colours"}]


def test_the_context_holds_vars_combination_recipe_and_repeat_index(write: WriteRecipe) -> None:
    got = request(write, """\
name: ctx-demo
vars: {light: soft}
matrix:
  subject: [mug]
repeat: 2
input:
  prompt: "{{ recipe }}/{{ subject }}/{{ light }}/{{ repeat_index }}"
""")
    assert got == [{"prompt": "ctx-demo/mug/soft/0"}, {"prompt": "ctx-demo/mug/soft/1"}]


def test_keys_added_by_include_are_in_the_context(write: WriteRecipe) -> None:
    got = request(write, """\
matrix:
  subject: [mug, lamp]
  include:
    - subject: mug
      accent: steam
input:
  prompt: "{{ subject }}{% if accent is defined %} with {{ accent }}{% endif %}"
""")
    assert got == [{"prompt": "mug with steam"}, {"prompt": "lamp"}]


def test_jinja_filters_conditionals_loops_and_globals(write: WriteRecipe) -> None:
    got = request(write, """\
vars: {tags: [warm, grainy]}
matrix:
  style: [noir, pop]
input:
  prompt: >-
    {{ style | upper }}: {% if style == 'noir' %}dark{% else %}bright{% endif %};
    {{ tags | join(', ') }}; {% for i in range(2) %}[{{ i }}]{% endfor %}; {{ "%03d" % 7 }}
""")
    assert got == [{"prompt": "NOIR: dark; warm, grainy; [0][1]; 007"},
                   {"prompt": "POP: bright; warm, grainy; [0][1]; 007"}]


def test_undefined_name_is_reported_once_with_position_and_suggestion(write: WriteRecipe) -> None:
    path = write(HEAD + """\
matrix:
  subject: [a, b, c, d]
input:
  prompt: "A {{ subjetc }} on a table"
""")
    assert errors(path) == [
        "r.yaml:6:11: input.prompt: 'subjetc' is undefined; did you mean 'subject'? "
        "(known names: recipe, repeat_index, subject)"
    ]


def test_output_names_are_not_known_in_input(write: WriteRecipe) -> None:
    path = write(HEAD + "input:\n  prompt: '{{ job_id }}'\n")
    assert errors(path) == ["r.yaml:4:11: input.prompt: 'job_id' is undefined (known names: recipe, repeat_index)"]


def test_undefined_attribute_is_reported_per_job_with_its_combination(write: WriteRecipe) -> None:
    path = write(HEAD + """\
matrix:
  style:
    - {name: noir, suffix: dark}
    - {name: pop}
    - {name: pastel}
input:
  prompt: "A mug, {{ style.suffix }}"
""")
    assert errors(path) == [
        "r.yaml:9:11: [style=pop] input.prompt: 'style' has no attribute 'suffix' (and 1 more combination)"
    ]


def test_undefined_attribute_inside_a_jinja_expression(write: WriteRecipe) -> None:
    path = write(HEAD + """\
matrix:
  style: [{name: noir}]
input:
  prompt: "A mug, {{ style.suffix | upper }}"
""")
    assert errors(path) == ["r.yaml:6:11: [style=noir] input.prompt: 'dict object' has no attribute 'suffix'"]


def test_name_missing_from_some_combinations(write: WriteRecipe) -> None:
    path = write(HEAD + """\
matrix:
  subject: [mug, lamp]
  include:
    - subject: mug
      accent: steam
input:
  prompt: "{{ subject }} {{ accent }}"
""")
    assert errors(path) == ["r.yaml:9:11: [subject=lamp] input.prompt: 'accent' is undefined"]


@pytest.mark.parametrize(("template", "message"), [
    ("{{ subject ", "template syntax error: unexpected end of template, expected 'end of print statement'."),
    ("{% if x %}never closed", "template syntax error: Unexpected end of template. Jinja was looking for the "
                               "following tags: 'elif' or 'else' or 'endif'. The innermost block that needs to be "
                               "closed is 'if'."),
    ("{{ a b }}", "template syntax error: expected token 'end of print statement', got 'b'"),
    ("line one\nline {{ two", "template syntax error (template line 2): unexpected end of template, expected "
                              "'end of print statement'."),
])
def test_template_syntax_errors_have_positions(write: WriteRecipe, template: str, message: str) -> None:
    quoted = template.replace("\n", "\\n")
    path = write(HEAD + f'input:\n  prompt: "{quoted}"\n')
    assert errors(path) == [f"r.yaml:4:11: input.prompt: {message}"]


@pytest.mark.parametrize(("template", "message"), [
    ("{{ ''.__class__.__mro__ }}", "access to attribute '__class__' of 'str' object is unsafe."),
    ("{{ ''.__class__.__mro__[1].__subclasses__() }}", "access to attribute '__class__' of 'str' object is unsafe."),
    ("{{ cycler.__init__.__globals__ }}", "access to attribute '__init__' of 'type' object is unsafe."),
    ("{{ range.__globals__ }}", "access to attribute '__globals__' of 'function' object is unsafe."),
    ("x {{ subject.__class__ }}", "access to attribute '__class__' of 'str' object is unsafe."),
])
def test_the_sandbox_refuses_internals(write: WriteRecipe, template: str, message: str) -> None:
    path = write(HEAD + f'matrix:\n  subject: [mug]\ninput:\n  prompt: "{template}"\n')
    assert errors(path) == [f"r.yaml:6:11: [subject=mug] input.prompt: template error: {message}"]


@pytest.mark.parametrize(("template", "message"), [
    ("{{ 'x' * 10**10 }}", "'*' would build a value of 10,000,000,000 items (at most 1,000,000)"),
    ("{{ [0] * 2000000 }}", "'*' would build a value of 2,000,000 items (at most 1,000,000)"),
    ("{{ 9 ** 1000000000 }}", "'**' would build a number of about 3,000,000,000 bits (at most 100,000)"),
])
def test_templates_cannot_exhaust_memory_or_time(write: WriteRecipe, template: str, message: str) -> None:
    path = write(HEAD + f'input:\n  prompt: "{template}"\n')
    assert errors(path) == [f"r.yaml:4:11: [] input.prompt: template error: {message}"]


def test_ordinary_arithmetic_still_works(write: WriteRecipe) -> None:
    assert request(write, "input:\n  prompt: \"{{ 'ab' * 3 }} {{ 3 * 'c' }} {{ 2 ** 10 }} {{ 1.5 * 2 }}\"\n") == [
        {"prompt": "ababab ccc 1024 3.0"}
    ]


def test_a_template_error_inside_jinja_is_reported_not_raised(write: WriteRecipe) -> None:
    path = write(HEAD + 'matrix:\n  d: [0, 2]\ninput:\n  prompt: "x"\n  n: "{{ 4 // d }}"\n')
    assert errors(path) == ["r.yaml:7:6: [d=0] input.n: ZeroDivisionError: integer division or modulo by zero"]


def test_nested_values_render_recursively() -> None:
    tree = parse_yaml("input:\n  a: {b: ['{{ x }}', '{{ x }}!', 3]}\n", "t.yaml")
    ts = TemplateSet(make_environment(), tree.value["input"])
    assert ts.render({"x": 1}) == {"a": {"b": [1, "1!", 3]}}
    _, errs = ts.render_all({})
    assert [(e.path, e.message) for e in errs] == [(("a", "b", 0), "input.a.b[0]: 'x' is undefined"),
                                                  (("a", "b", 1), "input.a.b[1]: 'x' is undefined")]


# --- the fast paths (plain references read straight from the context) give what Jinja gives ---

CONTEXT: dict[str, Any] = {
    "s": "abc", "n": 2, "f": 1.0, "b": True, "none": None, "l": [1, "a"], "big": 10**20,
    "style": {"name": "noir", "suffix": "dark", "items": "ITEMS", "values": "VALUES", "nested": {"deep": 5}},
    "plain": {"a": 1, "b": 2},
}
PARITY = [
    "{{ s }}", "{{ n }}", "{{ f }}", "{{ b }}", "{{ none }}", "{{ l }}", "{{ big }}", "{{ style }}",
    "{{ style.suffix }}", "{{ style.nested.deep }}", "{{ style.items }}", "{{ style.values }}",
    "A {{ s }} of {{ n }}, {{ f }} {{ b }} {{ none }} {{ l }} {{ style }}",
    "{{ style.suffix }}/{{ style.nested.deep }}/{{ style.items }}",
    "  {{ s }}  ", "{{s}}", "{{ s }}{{ s }}", "{{ s | upper }}", "{{ n + 1 }}", "{{ range(3) | list }}",
    "x {{ range(2) | list }} {{ s }}", "{{ style['items'] }}", "{{ plain.items() | list | length }}",
    "{% for k, v in plain.items() %}{{ k }}={{ v }};{% endfor %}",
]


@pytest.mark.parametrize("template", PARITY)
def test_fast_paths_render_what_jinja_renders(template: str) -> None:
    env = make_environment()
    leaf = compile_leaf(env, ("prompt",), template, Position("t.yaml", 1, 1))
    got = leaf.render(CONTEXT)
    if template.strip().startswith("{{") and template.strip().endswith("}}") and template.count("{{") == 1:
        # a single expression: Jinja's own expression evaluation, native value
        assert got == env.compile_expression(template.strip()[2:-2], undefined_to_none=False)(**CONTEXT)
        assert type(got) is type(env.compile_expression(template.strip()[2:-2])(**CONTEXT))
    else:
        assert got == env.from_string(template).render(CONTEXT)


@pytest.mark.parametrize("template", ["{{ nope }}", "x {{ nope }}", "{{ style.nope }}", "x {{ style.nope.deep }}",
                                      "{{ s.nope }}", "{{ l.nope }}", "{{ n.real.nope }}"])
def test_fast_paths_fail_where_jinja_fails(template: str) -> None:
    env = make_environment()
    leaf = compile_leaf(env, ("prompt",), template, Position("t.yaml", 1, 1))
    with pytest.raises(RenderError):
        leaf.render(CONTEXT)
    with pytest.raises(jinja2.UndefinedError):
        env.from_string(template).render(CONTEXT)


def test_attribute_of_a_non_mapping_is_what_jinja_gives() -> None:
    env = make_environment()
    leaf = compile_leaf(env, ("prompt",), "{{ n.real }} {{ s.upper() }}", Position("t.yaml", 1, 1))
    assert leaf.render(CONTEXT) == env.from_string("{{ n.real }} {{ s.upper() }}").render(CONTEXT) == "2 ABC"
    assert compile_leaf(env, ("n",), "{{ n.real }}", Position("t.yaml", 1, 1)).render(CONTEXT) == 2


def test_a_mapping_key_named_like_a_dict_method_is_the_key(write: WriteRecipe) -> None:
    """``{{ style.items }}`` is the value under ``items`` (plain Jinja would print the
    method with its memory address, which would change the content key on every run)."""
    got = request(write, """\
matrix:
  style: [{name: a, items: cup and saucer}]
input:
  prompt: "{{ style.items }} / {{ style.items | upper }}"
""")
    assert got == [{"prompt": "cup and saucer / CUP AND SAUCER"}]


def test_dict_methods_still_work_on_mappings_without_such_a_key(write: WriteRecipe) -> None:
    got = request(write, """\
vars:
  lens: {mm: 50, f: 1.8}
input:
  prompt: "{% for k, v in lens.items() %}{{ k }}={{ v }} {% endfor %}"
""")
    assert got == [{"prompt": "mm=50 f=1.8 "}]
