"""Templates are bounded in time and memory, and render data: hostile and careless templates
end in a positioned error, quickly, never in a hang, a MemoryError or a RecursionError."""

from __future__ import annotations

import pytest

from kling_pipeline.core.errors import Position
from kling_pipeline.core.meter import PLAN_STEPS, PlanMeter, plan_meter
from kling_pipeline.core.render import RenderError, compile_leaf, make_environment

from .conftest import WriteRecipe
from .util import HEAD, cli, errors, ok

STEPS = ("template error: the template takes more than 100,000 steps to render (loop iterations and calls); "
         "a request template should need far fewer")
WORK = "template error: the template builds or scans more than 10,000,000 characters and items in one render"


def prompt_errors(write: WriteRecipe, template: str, body: str = "") -> list[str]:
    quoted = template.replace("\\", "\\\\").replace('"', '\\"')
    return errors(write(HEAD + body + f'input:\n  prompt: "{quoted}"\n'))


@pytest.mark.parametrize(("template", "message"), [
    # loops that call nothing still tick
    ("{% for i in range(99999) %}{% for j in range(99999) %}{% endfor %}{% endfor %}", STEPS),
    ("{% for i in range(99999) %}{% for j in range(99999) if false %}{% endfor %}{% endfor %}", STEPS),
    # calls: macros, exponential recursion, endless recursion
    ("{% macro f(n) %}{% if n %}{{ f(n-1) }}{{ f(n-1) }}{% endif %}{% endmacro %}{{ f(40) }}", STEPS),
    ("{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}",
     "template error: calls nest too deeply (a macro or a recursive loop that does not end?)"),
    # memory: values built from short arguments, checked before they are built
    ("{{ range(99999)|join('x'*999999) }}",
     "template error: the filter 'join' would build a value of 99,997,900,002 items (at most 1,000,000)"),
    ("{{ 'x'.center(10**9) }}", "template error: 'center' would build a value of 1,000,000,000 items "
                                "(at most 1,000,000)"),
    ("{{ 'x'|center(1000000000) }}", "template error: the filter 'center' would build a value of 1,000,000,000 "
                                     "items (at most 1,000,000)"),
    ("{{ '{:>1000000000}'.format(1) }}", "template error: 'format' would build a value of 1,000,000,016 items "
                                         "(at most 1,000,000)"),
    ("{{ '%1000000000s' % 'x' }}", "template error: '%' would build a value of 1,000,000,013 items "
                                   "(at most 1,000,000)"),
    ("{{ [1]|batch(10**9, 0)|list }}", "template error: the filter 'batch' would build a value of 1,000,000,000 "
                                       "items (at most 1,000,000)"),
    # doubling through a namespace, by ~, + or a list method
    ("{% set ns = namespace(s='x') %}{% for i in range(40) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}",
     "template error: '~' would build a value of 1,048,576 items (at most 1,000,000)"),
    ("{% set ns = namespace(s='x') %}{% for i in range(40) %}{% set ns.s = ns.s + ns.s %}{% endfor %}",
     "template error: '+' would build a value of 1,048,576 items (at most 1,000,000)"),
    ("{% set l = [0] %}{% for i in range(40) %}{% if l.extend(l) %}{% endif %}{% endfor %}",
     "template error: 'extend' would build a value of 1,048,576 items (at most 1,000,000)"),
    # a list of a thousand references to one long string prints a thousand times as long
    ("{{ ['x' * 999999] * 1000 }}", "template error: renders a value of more than 1,000,000 characters"),
    # work without a call: scanning, slicing, literal text written again and again
    ("{% set b = 'x' * 999999 %}{% for i in range(99999) %}{% if 'y' in b %}{% endif %}{% endfor %}", WORK),
    ("{% set b = 'x' * 999999 %}{% for i in range(99999) %}{% set c = b[1:] %}{% endfor %}", WORK),
    ("{% for i in range(99999) %}" + "y" * 2000 + "{% endfor %}", WORK),
    # numbers
    ("{{ 2 ** 50000 }}", "template error: renders a number of more than 4,000 digits"),
    ("{{ (10 ** 30000) * (10 ** 30000) }}",
     "template error: '*' would build a number of about 199,316 bits (at most 100,000)"),
])
def test_templates_past_their_bounds_stop_with_a_positioned_error(write: WriteRecipe, template: str,
                                                                   message: str) -> None:
    assert prompt_errors(write, template) == [f"r.yaml:4:11: [] input.prompt: {message}"]


@pytest.mark.parametrize(("template", "message"), [
    ("{{ lipsum(10**6) }}", "lipsum() writes a different request on every run: the job's content key would "
                            "change and a re-run would pay for it again; write the text in the recipe"),
    ("{{ [1, 2]|random }}", "the 'random' filter makes a different request on every run: the job's content key "
                            "would change and a re-run would pay for it again; use a matrix axis (or repeat) to "
                            "vary the jobs"),
])
def test_what_changes_on_every_run_is_refused(write: WriteRecipe, template: str, message: str) -> None:
    assert prompt_errors(write, template) == [f"r.yaml:4:11: [] input.prompt: template error: {message}"]


NOT_DATA = "not data (text, a number, a boolean, null, a list or a mapping)"


@pytest.mark.parametrize(("template", "what"), [
    ("{{ range }}", "the global 'range' itself"),
    ("{{ cycler }}", "the global 'cycler' itself"),
    ("{{ lipsum }}", "the global 'lipsum' itself"),
    ("{{ joiner }}", "the global 'joiner' itself"),
    ("{{ namespace }}", "the global 'namespace' itself"),
    ("{{ dict }}", "the global 'dict' itself"),
    ("a {{ cycler }}", "the global 'cycler' itself"),
    ("{{ [1, 2]|map('string') }}", "a generator object (add '|list' for its items)"),
    ("x {{ 'a'.upper }}", "a function (upper)"),
    ("{% set ns = namespace(a=1) %}{{ ns }}", "a namespace object (write ns.name for one of its values)"),
    ("{% for i in [1] %}{{ loop }}{% endfor %}", "the loop object (write loop.index, loop.first...)"),
    ("{{ [range] }}", "the global 'range' itself"),
])
def test_a_rendered_value_must_be_data(write: WriteRecipe, template: str, what: str) -> None:
    assert prompt_errors(write, template) == [f"r.yaml:4:11: [] input.prompt: renders {what}, {NOT_DATA}"]


def test_a_native_value_must_be_json_data(write: WriteRecipe) -> None:
    """``aspect_ratio: "{{ range }}"`` used to put ``<function safe_range at 0x...>`` into the
    request, its content key and the plan's JSON, different on every run."""
    path = write(HEAD + """\
input:
  prompt: x
  aspect_ratio: "{{ range }}"
  negative_prompt: "{{ {1: 'a'} }}"
  n: "{{ 2 ** 50000 }}"
""")
    assert errors(path) == [
        f"r.yaml:5:17: [] input.aspect_ratio: renders the global 'range' itself, {NOT_DATA}",
        f"r.yaml:6:20: [] input.negative_prompt: renders a mapping with the key 1 (a JSON request's keys are "
        f"strings), {NOT_DATA}",
        "r.yaml:7:6: [] input.n: template error: renders a number of more than 4,000 digits",
    ]


def test_data_still_renders_as_before(write: WriteRecipe) -> None:
    p = ok(write(HEAD + """\
vars: {tags: [warm, grainy], lens: {mm: 50}}
input:
  prompt: "{{ tags }} {{ lens }} {{ (1, 2) }} {{ none }} {{ 1.5 }} {{ tags|map('upper')|list }} {{ 'ab' ~ 3 }}"
  negative_prompt: "{{ tags|join(', ') ~ '!' }}"
"""))
    assert p.render(p.jobs[0]).request == {
        "prompt": "['warm', 'grainy'] {'mm': 50} (1, 2) None 1.5 ['WARM', 'GRAINY'] ab3",
        "negative_prompt": "warm, grainy!",
    }


@pytest.mark.parametrize(("template", "message"), [
    ("{{ " + "(" * 1000 + "1" + ")" * 1000 + " }}", "nests"),
    ("{% if 1 %}" * 1000 + "x" + "{% endif %}" * 1000, "nests"),
    ("{{ 1" + "|abs" * 10000 + " }}", "nests"),
    ("{{ 1" + "+1" * 5000 + " }}", "nests"),
    ("{{ 1" + "+1" * 100000 + " }}", "long"),
])
def test_deep_or_long_templates_are_refused_when_compiled(write: WriteRecipe, template: str, message: str) -> None:
    text = {
        "nests": "the template nests more than 50 levels deep (blocks, brackets, filters or operators inside "
                 "each other); simplify it",
        "long": f"the template is {len(template):,} characters long (at most 100,000)",
    }[message]
    assert prompt_errors(write, template) == [f"r.yaml:4:11: input.prompt: {text}"]


def test_a_template_past_its_bounds_stops_the_plan_at_the_first_job(write: WriteRecipe) -> None:
    """The other jobs would only spend as much again: one error, for the first combination."""
    path = write(HEAD + """\
matrix:
  s: [a, b, c, d, e, f, g, h]
input:
  prompt: "{{ s }}{% for i in range(99999) %}{% for j in range(9) %}{% endfor %}{% endfor %}"
""")
    assert errors(path) == [f"r.yaml:6:11: [s=a] input.prompt: {STEPS}"]


def test_the_renders_of_a_plan_share_one_allowance() -> None:
    """A sweep of many jobs cannot multiply one render's allowance by its job count."""
    env = make_environment()
    leaf = compile_leaf(env, ("prompt",), "{% for i in range(40000) %}{% endfor %}x", Position("r.yaml", 3, 11))
    assert leaf.render({}) == "x"  # 40,000 steps: within one render's allowance
    with plan_meter() as meter:
        meter.steps = 100_000  # the plan's allowance, nearly spent by earlier jobs
        assert leaf.render({}) == "x"
        assert leaf.render({}) == "x"
        with pytest.raises(RenderError) as info:
            leaf.render({})
    assert info.value.fatal
    assert info.value.message == (
        f"input.prompt: template error: the templates take more than {PLAN_STEPS:,} steps in all over this plan's "
        "jobs (loop iterations and calls); simplify the templates or narrow the sweep")
    assert isinstance(meter, PlanMeter) and meter.steps == 0


def test_too_many_templates_in_one_request(write: WriteRecipe) -> None:
    items = "".join(f"    - '{{{{ s }}}}{i}'\n" for i in range(1001))
    path = write(HEAD + f"matrix:\n  s: [a]\ninput:\n  prompt: x\n  extra:\n{items}")
    assert errors(path) == [
        "r.yaml:1008:7: input.extra[1000]: more than 1,000 templates in input",
        "r.yaml:7:3: input.extra: unknown field for this app (fields: prompt, image, negative_prompt, aspect_ratio, "
        "resolution, n)",
    ]


def test_validate_of_a_hostile_template_exits_2_without_a_traceback(write: WriteRecipe) -> None:
    write(HEAD + "input:\n  prompt: \"{{ range(99999)|join('x'*999999) }}\"\n")
    assert cli("validate", "r.yaml") == (2, "", (
        "r.yaml:4:11: [] input.prompt: template error: the filter 'join' would build a value of 99,997,900,002 "
        "items (at most 1,000,000)\n1 error in r.yaml; nothing was sent\n"))
