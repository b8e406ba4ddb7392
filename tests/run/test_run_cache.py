"""The shared cache of paid results: a job already paid and downloaded anywhere on this machine
is served from it (linked or copied) in another output directory, not paid again."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from helpers import completed_outputs_intact, manifest, records

pytestmark = pytest.mark.slow


def _files(out: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in out.glob("*.png")}


def test_another_output_directory_is_served_from_the_cache_and_pays_nothing(cli, emulator, sweep, tmp_path):
    emu = emulator()
    path = sweep(4)
    first = cli("run", str(path), "--base-url", emu.base_url)
    assert first.code == 0, first.err
    assert len(emu.ledger()["charges"]) == 4
    plan = cli("plan", str(path), "--out", str(tmp_path / "elsewhere"))
    assert "  cache: 4 jobs will be served from the shared cache of paid results ($0.112 saved;" in plan.out
    doc = json.loads(cli("plan", str(path), "--out", str(tmp_path / "elsewhere"), "--json").out)
    assert doc["cache"] == {"jobs": 4, "saved_usd": "0.112"} and [j["cached"] for j in doc["jobs"]] == [True] * 4
    off = json.loads(cli("plan", str(path), "--out", str(tmp_path / "elsewhere"), "--json", "--no-cache").out)
    assert "cache" not in off and "cached" not in off["jobs"][0]
    assert "cache:" not in cli("plan", str(path), "--out", str(tmp_path / "elsewhere"), "--no-cache").out
    second = cli("run", str(path), "--base-url", emu.base_url, "--out", str(tmp_path / "elsewhere"))
    assert second.code == 0, second.err
    assert len(emu.ledger()["charges"]) == 4  # nothing new was paid
    elsewhere = tmp_path / "elsewhere"
    assert _files(elsewhere) == _files(path.parent / "out")
    assert completed_outputs_intact(elsewhere) == 4
    done = records(elsewhere, "done")
    assert [r.get("cached") for r in done] == [True] * 4 and {r["billed_microcents"] for r in done} == {0}
    side = json.loads(next(elsewhere.glob("*.png.json")).read_text())
    assert side["cached"] is True and side["paid_usd_when_made"] == "0.028"
    assert manifest(elsewhere).settled == 0


def test_no_cache_pays_again(cli, emulator, sweep, tmp_path):
    emu = emulator()
    path = sweep(2)
    assert cli("run", str(path), "--base-url", emu.base_url).code == 0
    again = cli("run", str(path), "--base-url", emu.base_url, "--out", str(tmp_path / "b"), "--no-cache")
    assert again.code == 0, again.err
    assert len(emu.ledger()["charges"]) == 4


def test_a_damaged_cache_entry_is_dropped_and_the_job_paid(cli, emulator, sweep, tmp_path, own_result_cache):
    emu = emulator()
    path = sweep(2)
    assert cli("run", str(path), "--base-url", emu.base_url).code == 0
    victim = next(p for p in (own_result_cache / "files").rglob("*") if p.is_file())
    victim.write_bytes(b"not the image any more")  # the out dir's file is a hard link to it: break the link first
    result = cli("run", str(path), "--base-url", emu.base_url, "--out", str(tmp_path / "b"))
    assert result.code == 0, result.err
    assert len(emu.ledger()["charges"]) == 3  # the damaged one was paid again, the other served
    assert completed_outputs_intact(tmp_path / "b") == 2


def test_repeat_jobs_are_never_served_each_others_results(cli, emulator, recipe, tmp_path):
    emu = emulator()
    path = recipe("""
        version: 1
        name: rep
        app: klingai/image-o1@0pbaxv40
        input: {prompt: "the same request"}
        repeat: 3
        output: {dir: out}
        budget: {max_usd: 1}
    """)
    assert cli("run", str(path), "--base-url", emu.base_url).code == 0
    assert cli("run", str(path), "--base-url", emu.base_url, "--out", str(tmp_path / "b")).code == 0
    assert len(emu.ledger()["charges"]) == 3
    assert len(set(_files(tmp_path / "b").values())) == 3  # three different images, as paid
