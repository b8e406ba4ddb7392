"""Shell completion, driven in-process the way the shell drives it: COMP_LINE in, candidates out."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from kling_pipeline.cli._complete import complete, script
from kling_pipeline.cli._main import build_parser, main


def candidates(monkeypatch: pytest.MonkeyPatch, line: str, shell: str = "bash") -> list[str]:
    monkeypatch.setenv("_ARGCOMPLETE", "1")
    monkeypatch.setenv("_ARGCOMPLETE_SHELL", shell)
    monkeypatch.setenv("COMP_LINE", line)
    monkeypatch.setenv("COMP_POINT", str(len(line)))
    monkeypatch.delenv("COMP_WORDBREAKS", raising=False)
    out = io.StringIO()
    exits: list[int] = []
    complete(build_parser(), output_stream=out, exit_method=exits.append)
    assert exits == [0]
    return out.getvalue().split("\v") if out.getvalue() else []


@pytest.fixture
def recipes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    (tmp_path / "sweep.yaml").write_text(
        "version: 1\napp: klingai/image-o1@0pbaxv40\nmatrix:\n  subject: [ceramic mug, lamp]\n"
        "  style: [watercolor, film noir]\n  include:\n    - {style: pop, accent: red}\ninput: {prompt: x}\n")
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / "out").mkdir()
    return tmp_path


def test_commands_and_flags_complete(monkeypatch: pytest.MonkeyPatch, recipes: Path) -> None:
    assert candidates(monkeypatch, "kling-pipeline ") == [
        "-h", "--help", "--version", "validate", "plan", "run", "collect", "status", "runs", "doctor", "prune",
        "schema", "completion", "report", "webhook-receiver", "merge", "emulator"]
    assert candidates(monkeypatch, "kling-pipeline pr") == ["prune "]
    assert candidates(monkeypatch, "kling-pipeline run sweep.yaml --ret") == ["--retry-failed", "--retry-unknown"]
    assert candidates(monkeypatch, "kling-pipeline completion ") == ["-h", "--help", "bash", "zsh", "fish"]


def test_recipe_arguments_complete_yaml_files_and_directories(monkeypatch: pytest.MonkeyPatch, recipes: Path) -> None:
    assert candidates(monkeypatch, "kling-pipeline plan o") == ["out/"]
    assert candidates(monkeypatch, "kling-pipeline plan n") == []  # notes.txt is not a recipe
    assert candidates(monkeypatch, "kling-pipeline validate sweep.yaml s") == ["sweep.yaml "]
    assert candidates(monkeypatch, "kling-pipeline status sw") == ["sweep.yaml "]


def test_only_completes_the_recipes_matrix_keys_then_their_values(monkeypatch: pytest.MonkeyPatch,
                                                                  recipes: Path) -> None:
    assert candidates(monkeypatch, "kling-pipeline plan sweep.yaml --only ") == ["subject=", "style=", "accent="]
    assert candidates(monkeypatch, "kling-pipeline run sweep.yaml --only st") == ["style="]
    assert candidates(monkeypatch, "kling-pipeline plan sweep.yaml --only style=") == [
        "style=watercolor", "style=film\\ noir", "style=pop"]
    assert candidates(monkeypatch, "kling-pipeline plan sweep.yaml --only subject=ce") == ["subject=ceramic\\ mug "]
    assert candidates(monkeypatch, "kling-pipeline plan sweep.yaml --only style=", "fish") == [
        "style=watercolor", "style=film noir", "style=pop"]
    assert candidates(monkeypatch, "kling-pipeline report sweep.yaml --rows ") == ["subject", "style", "accent"]
    assert candidates(monkeypatch, "kling-pipeline plan missing.yaml --only ") == []


def test_profiles_complete_from_the_config_file(monkeypatch: pytest.MonkeyPatch, recipes: Path) -> None:
    config = recipes / "xdg" / "kling-pipeline" / "config.yaml"
    config.parent.mkdir(parents=True)
    config.write_text("profiles:\n  work: {}\n  staging: {}\n")
    assert candidates(monkeypatch, "kling-pipeline doctor --profile ") == ["work", "staging"]
    config.write_text("profiles: [broken\n")
    assert candidates(monkeypatch, "kling-pipeline doctor --profile ") == []


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completion_prints_the_hook_for_each_shell(shell: str) -> None:
    out, err = io.StringIO(), io.StringIO()
    assert main(["completion", shell], out=out, err=err) == 0
    assert out.getvalue() == script(shell)
    assert "kling-pipeline" in out.getvalue() and "_ARGCOMPLETE" in out.getvalue()
