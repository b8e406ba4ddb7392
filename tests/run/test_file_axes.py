"""A folder sweep end to end against the emulator: each file paid for once per job, uploaded
once per content; a file added later adds only its jobs, a file renamed pays for nothing."""

from __future__ import annotations

import json
import os
import shutil
from collections import Counter
from pathlib import Path

from helpers import completed_outputs_intact, records
from tests_support import write_png

ROOT = Path(__file__).resolve().parents[2]

FOLDER_SWEEP = """
    version: 1
    app: klingai/image-o1@0pbaxv40
    matrix:
      ref: {files: "refs/*.png"}
      style: [watercolor, noir]
      filter: not (style == "noir" and ref == "refs/teal-square.png")
    input:
      prompt: "Restyle the reference image as {{ style }}"
      image: "{{ ref }}"
    output: {dir: out}
    budget: {max_usd: 1}
"""


def charges_by_job(ledger: dict[str, object], uploads: list[dict[str, object]]) -> Counter[tuple[str, str]]:
    """(uploaded file's name, prompt) of every charge the emulator made."""
    names = {u["uri"]: u["file"] for u in uploads}
    charges = ledger["charges"]
    assert isinstance(charges, list)
    return Counter((str(names[c["input"]["image"]]), str(c["input"]["prompt"])) for c in charges)


def test_a_folder_sweep_pays_each_job_once_and_a_new_file_adds_only_its_jobs(cli, emulator, recipe, tmp_path):
    shutil.copytree(ROOT / "recipes/refs", tmp_path / "refs")
    emu = emulator()
    path = recipe(FOLDER_SWEEP)
    plan = json.loads(cli("plan", str(path), "--json").out)
    assert [j["id"] for j in plan["jobs"]] == ["amber-portrait.png-watercolor", "amber-portrait.png-noir",
                                               "teal-square.png-watercolor"]
    assert plan["totals"]["removed_by_filter"] == 1

    first = cli("run", str(path), "--base-url", emu.base_url)
    assert first.code == 0, first.err
    out = tmp_path / "out"
    assert completed_outputs_intact(out) == 3
    assert len(records(out, "upload")) == 2  # two files, each uploaded once for its jobs
    assert charges_by_job(emu.ledger(), records(out, "upload")) == {
        ("amber-portrait.png", "Restyle the reference image as watercolor"): 1,
        ("amber-portrait.png", "Restyle the reference image as noir"): 1,
        ("teal-square.png", "Restyle the reference image as watercolor"): 1,
    }

    write_png(tmp_path / "refs/blue-wide.png", 600, 400, rgb=(20, 40, 200))  # sorts first: no id moves
    second = cli("run", str(path), "--base-url", emu.base_url)
    assert second.code == 0, second.err
    assert "run: 2 completed, 3 done earlier" in second.err
    uploads = records(out, "upload")
    assert [u["file"] for u in uploads][2:] == ["blue-wide.png"]
    charged = charges_by_job(emu.ledger(), uploads)
    assert sum(charged.values()) == 5  # one new charge per job of the new file, none again for the others
    assert set(charged.values()) == {1}
    assert {job for job in charged if job[0] == "blue-wide.png"} == {
        ("blue-wide.png", "Restyle the reference image as watercolor"),
        ("blue-wide.png", "Restyle the reference image as noir"),
    }
    assert completed_outputs_intact(out) == 5


def test_renaming_or_removing_a_file_pays_for_nothing(cli, emulator, recipe, tmp_path):
    shutil.copytree(ROOT / "recipes/refs", tmp_path / "refs")
    emu = emulator()
    path = recipe(FOLDER_SWEEP)
    assert cli("run", str(path), "--base-url", emu.base_url).code == 0
    tasks = len(emu.tasks())

    os.rename(tmp_path / "refs/amber-portrait.png", tmp_path / "refs/portrait-of-amber.png")
    renamed = cli("run", str(path), "--base-url", emu.base_url)
    assert renamed.code == 0, renamed.err
    assert "nothing to do: 3 jobs done" in renamed.err
    os.remove(tmp_path / "refs/portrait-of-amber.png")
    removed = cli("run", str(path), "--base-url", emu.base_url)
    assert removed.code == 0, removed.err
    assert "nothing to do: 1 job done" in removed.err
    assert len(emu.tasks()) == tasks
    assert len(emu.ledger()["charges"]) == 3


def test_a_bad_file_in_the_folder_stops_the_run_before_anything_is_sent(cli, emulator, recipe, tmp_path):
    shutil.copytree(ROOT / "recipes/refs", tmp_path / "refs")
    (tmp_path / "refs/cut.png").write_bytes((tmp_path / "refs/teal-square.png").read_bytes()[:200])
    emu = emulator()
    path = recipe(FOLDER_SWEEP)
    result = cli("run", str(path), "--base-url", emu.base_url)
    assert result.code == 2
    assert f"{path}:4:16: [ref=cut.png, style=watercolor] input.image: {tmp_path}/refs/cut.png is a PNG cut short" \
        in result.err
    assert "1 error in" in result.err and "nothing was sent" in result.err
    assert emu.tasks() == [] and emu.ledger()["charges"] == []
