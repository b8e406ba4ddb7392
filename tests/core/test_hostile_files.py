"""Recipe files are read safely: a pipe, a device, a symlink loop, a NUL byte or a huge number
is a positioned error (exit 2), never a hang, a MemoryError or an internal error."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from .conftest import WriteRecipe
from .util import HEAD, cli, errors


def test_extends_naming_a_fifo_does_not_hang(write: WriteRecipe, tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe.yaml")  # nothing ever writes to it: opening it for reading would block
    assert errors(write(HEAD + "extends: pipe.yaml\ninput: {prompt: x}\n")) == [
        "r.yaml:3:10: pipe.yaml: is not a regular file (a pipe or a device?); a recipe is a file"
    ]


def test_a_fifo_given_as_the_recipe(write: WriteRecipe, tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe.yaml")
    assert cli("validate", "pipe.yaml") == (2, "", "pipe.yaml: is not a regular file (a pipe or a device?); a recipe "
                                                   "is a file\n1 error; nothing was sent\n")


def test_extends_naming_dev_zero_is_not_read(write: WriteRecipe) -> None:
    assert errors(write(HEAD + "extends: /dev/zero\ninput: {prompt: x}\n")) == [
        "r.yaml:3:10: /dev/zero: is not a regular file (a pipe or a device?); a recipe is a file"
    ]


def test_an_empty_extends_list(write: WriteRecipe) -> None:
    assert errors(write(HEAD + "extends: []\ninput: {prompt: x}\n")) == [
        "r.yaml:3:10: extends is an empty list: name a recipe file, or remove the key"
    ]


def test_a_symlink_loop(write: WriteRecipe, tmp_path: Path) -> None:
    os.symlink("b.yaml", tmp_path / "a.yaml")
    os.symlink("a.yaml", tmp_path / "b.yaml")
    assert errors(write(HEAD + "extends: a.yaml\ninput: {prompt: x}\n")) == [
        "r.yaml:3:10: a.yaml: cannot read: too many levels of symbolic links (a symlink loop?)"
    ]
    assert cli("validate", "a.yaml")[0] == 2


@pytest.mark.parametrize(("line", "message"), [
    ('extends: "base\\0.yaml"', "r.yaml:3:10: extends: a file name cannot hold a NUL character"),
    ('output: {dir: "out\\0put"}', "r.yaml:3:15: output.dir cannot hold a NUL character"),
    ('matrix: {ref: ["a\\0.png"]}', "r.yaml:3:16: [ref=a\0.png] input.image: the file name 'a\\x00.png' holds a "
                                   "NUL character"),
])
def test_a_nul_byte_in_a_file_name(write: WriteRecipe, line: str, message: str) -> None:
    assert errors(write(HEAD + line + "\ninput: {prompt: x, image: '{{ ref }}'}\n"
                        if "ref" in line else HEAD + line + "\ninput: {prompt: x}\n")) == [message]


def test_a_directory_named_by_extends(write: WriteRecipe, tmp_path: Path) -> None:
    (tmp_path / "shared").mkdir()
    assert errors(write(HEAD + "extends: shared\ninput: {prompt: x}\n")) == [
        "r.yaml:3:10: shared: is a directory, not a recipe file"
    ]


def test_a_long_chain_of_extends(write: WriteRecipe) -> None:
    for i in range(40):
        write(f"extends: b{i + 1}.yaml\n", f"b{i}.yaml")
    write(HEAD, "b40.yaml")
    assert errors(write("extends: b0.yaml\ninput: {prompt: x}\n")) == [
        "b30.yaml:1:10: 'extends' goes more than 32 files deep"  # b30 names the 33rd file
    ]


def test_a_file_extended_many_times_over(write: WriteRecipe) -> None:
    """Each file extends the next one ten times: 10^4 reads of the last, unless bounded."""
    for i in range(4):
        write("extends: [" + ", ".join([f"d{i + 1}.yaml"] * 10) + "]\n", f"d{i}.yaml")
    write(HEAD, "d4.yaml")
    assert errors(write("extends: d0.yaml\ninput: {prompt: x}\n")) == [
        "d3.yaml:1:74: 'extends' reads more than 100 files for one recipe"
    ]


@pytest.mark.parametrize(("value", "message"), [
    ("9" * 5000, "a number of 5,000 characters is too large (at most 4,000 digits); quote it if it is text"),
    ("-" + "9" * 4301, "a number of 4,302 characters is too large (at most 4,000 digits); quote it if it is text"),
    ("0x" + "f" * 3400, "a number of 3,402 characters is too large (at most 4,000 digits); quote it if it is text"),
])
def test_an_integer_too_long_for_python_to_print(write: WriteRecipe, value: str, message: str) -> None:
    assert errors(write(HEAD + f"vars: {{big: {value}}}\ninput: {{prompt: '{{{{ big }}}}'}}\n")) == [
        f"r.yaml:3:13: {message}"
    ]


@pytest.mark.parametrize(("value", "number"), [("1:1", "61"), ("16:9", "969"), ("4:3", "243"), ("21:9", "1269"),
                                               ("1:2.5", "62.5")])
def test_an_unquoted_ratio_says_to_quote_it(write: WriteRecipe, value: str, number: str) -> None:
    """YAML 1.1 reads 16:9 as a base-60 number: the old message was "got an integer 969"."""
    assert errors(write(HEAD + f"input:\n  prompt: x\n  aspect_ratio: {value}\n")) == [
        f'r.yaml:5:17: {value} is read as the number {number} (YAML 1.1 reads N:M as a base-60 number); write '
        f'"{value}" in quotes for the text'
    ]


def test_an_unquoted_ratio_in_an_axis(write: WriteRecipe) -> None:
    path = write(HEAD + "matrix:\n  ratio: ['1:1', 16:9]\ninput: {prompt: x, aspect_ratio: '{{ ratio }}'}\n")
    assert errors(path) == [
        'r.yaml:4:18: 16:9 is read as the number 969 (YAML 1.1 reads N:M as a base-60 number); write "16:9" in '
        'quotes for the text'
    ]


@pytest.mark.parametrize(("text", "message"), [
    ("a: &a [1, *a]\n", "t.yaml:1:11: the alias *a is inside the value it names"),
    ("a: *nope\n", "t.yaml:1:4: the alias *nope names no anchor (&nope) written before it"),
    ("a: 1\n---\nb: 2\n", "t.yaml:2:1: YAML syntax error: expected a single document in the stream (started at "
                          "line 1, column 1): but found another document"),
])
def test_aliases_and_documents_that_cannot_be_a_recipe(text: str, message: str) -> None:
    from kling_pipeline.core.errors import RecipeError
    from kling_pipeline.core.yamlsrc import parse_yaml

    with pytest.raises(RecipeError) as info:
        parse_yaml(text, "t.yaml")
    assert str(info.value) == message


def test_an_output_directory_with_a_nul_character_is_a_usage_error(write: WriteRecipe) -> None:
    write(HEAD + "input: {prompt: x}\n")
    assert cli("plan", "r.yaml", "--out", "a\0b") == (2, "", "error: --out: a directory name cannot hold a NUL "
                                                           "character\n")
