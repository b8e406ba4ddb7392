"""Shared fixtures: a real emulator on loopback, recipe files, and the CLI run in-process."""

from __future__ import annotations

import io
import textwrap
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from tests_support import TEST_LIMITS

from kling_pipeline.cli import main
from kling_pipeline.emulator import EmulatorConfig, EmulatorServer, Faults, Latency, RateLimits

TEST_KEY = "inf_test_key_that_must_never_be_written_anywhere_0123456789"


@dataclass
class CliResult:
    code: int
    out: str
    err: str


@pytest.fixture(autouse=True, scope="session")
def session_result_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Session- and module-scoped fixtures run before any test's own cache is set: they get an
    empty cache of the session's, so the user's real cache is never read nor written."""
    root = tmp_path_factory.mktemp("session-result-cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("KLING_PIPELINE_CACHE", str(root))
        yield root


@pytest.fixture(autouse=True)
def own_result_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets an empty shared result cache of its own: a result paid in one test is never
    served to another (and the user's real cache is never touched)."""
    root = tmp_path_factory.mktemp("result-cache")
    monkeypatch.setenv("KLING_PIPELINE_CACHE", str(root))
    return root


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> Callable[..., CliResult]:
    """Run ``kling-pipeline ARGS`` in-process with the test API key in the environment (and no
    user config file: an empty ``$XDG_CONFIG_HOME``)."""
    monkeypatch.setenv("INFERENCE_API_KEY", TEST_KEY)
    for name in ("INFERENCE_BASE_URL", "INFERENCE_API_KEY_FILE", "KLING_PIPELINE_CONFIG", "KLING_PIPELINE_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path_factory.mktemp("xdg")))

    def run(*args: str) -> CliResult:
        out, err = io.StringIO(), io.StringIO()
        code = main(list(args), out=out, err=err)
        return CliResult(code, out.getvalue(), err.getvalue())

    return run


@pytest.fixture
def emulator() -> Iterator[Callable[..., EmulatorServer]]:
    """``emulator(latency=0.05, limits=TEST_LIMITS, **faults)`` starts a real emulator on
    127.0.0.1 for the test (``limits=RateLimits.off()`` for none)."""
    servers: list[EmulatorServer] = []

    def start(latency: float = 0.05, seed: int = 0, limits: RateLimits = TEST_LIMITS, **faults: Any) -> EmulatorServer:
        server = EmulatorServer(EmulatorConfig(latency=Latency.fixed(latency), seed=seed, faults=Faults(**faults),
                                               limits=limits, heartbeat_interval=0.5, min_progress_interval=0.01))
        server.start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def recipe(tmp_path: Path) -> Callable[..., Path]:
    """``recipe(yaml_text, name="r.yaml")`` writes a recipe file into the test's directory."""

    def write(text: str, name: str = "r.yaml") -> Path:
        path = tmp_path / name
        path.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
        return path

    return write


def sweep_text(n: int, *, budget: str = "10", concurrency: int = 8, extra: str = "") -> str:
    """A recipe of ``n`` distinct jobs (one axis), output into ./out next to it."""
    items = ", ".join(f"s{i}" for i in range(n))
    return f"""
    version: 1
    name: sweep
    app: klingai/image-o1@0pbaxv40
    matrix:
      subject: [{items}]
    input:
      prompt: "a photo of {{{{ subject }}}}"
      aspect_ratio: "1:1"
    output:
      dir: out
    budget:
      max_usd: {budget}
    concurrency: {concurrency}
    {extra}
    """


@pytest.fixture
def sweep(recipe: Callable[..., Path]) -> Callable[..., Path]:
    """``sweep(n, budget="10", concurrency=8, extra="")`` writes a recipe of ``n`` distinct jobs."""

    def write(n: int, **kw: Any) -> Path:
        return recipe(textwrap.dedent(sweep_text(n, **kw)))

    return write
