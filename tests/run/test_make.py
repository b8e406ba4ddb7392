"""The documented Makefile example: `make images` twice does the work once."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")


def _make(where: Path, *targets: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    env.pop("INFERENCE_API_KEY", None)
    return subprocess.run(["make", "-f", str(ROOT / "docs" / "Makefile.example"), *targets,
                           "RECIPE=recipes/quickstart.yaml", "RUN_FLAGS=--emulator"],
                          cwd=where, capture_output=True, text=True, env=env, check=False)


def test_make_images_twice_does_the_work_once_and_exits_0(tmp_path):
    (tmp_path / "recipes").mkdir()
    shutil.copy(ROOT / "recipes" / "quickstart.yaml", tmp_path / "recipes" / "quickstart.yaml")
    first = _make(tmp_path, "images")
    assert first.returncode == 0, first.stderr
    assert "run: 4 completed" in first.stderr
    second = _make(tmp_path, "images")
    assert second.returncode == 0, second.stderr
    assert "nothing to do: 4 jobs done" in second.stderr
    assert "using the bundled emulator" not in second.stderr  # nothing was even started
    plan = _make(tmp_path, "plan")
    assert plan.returncode == 0 and "4 jobs" in plan.stdout
    assert len(list((tmp_path / "recipes" / "out" / "quickstart").glob("*.png"))) == 4
