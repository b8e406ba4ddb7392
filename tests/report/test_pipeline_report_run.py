"""recipes/pipeline.yaml (draft -> refine -> animate) run against the emulator, its report read as a
reader would: a budget that stops before the last animation, then a run that finishes it. What
each page says is checked against the emulator's ledger and the outputs' sidecars, never against
the report's own account."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kling_pipeline.core.money import format_usd

from .chainsite import ChainSite, Resolver, elements, job_of, read_chain_site
from .site import target

RECIPE = Path(__file__).resolve().parents[2] / "recipes" / "pipeline.yaml"
STAGES = ("draft", "refine", "animate")


def stage_of_charge(charge: dict[str, Any]) -> str:
    """Which stage the emulator billed: a video is an animation, an image with an image in is a refinement."""
    if str(charge["app"]).startswith("klingai/video-o1"):
        return "animate"
    return "refine" if "image" in charge["input"] else "draft"


def billed_cell(site: ChainSite, stage: str) -> str:
    return site.stage_row(stage).all("td")[5].text


def counts(site: ChainSite, stage: str) -> dict[str, int]:
    return {b.get("data-count"): int(b.text.split()[0]) for b in site.stage_row(stage).all("span.badge")
            if "data-count" in b.attrs}


def sidecars(out: Path) -> dict[tuple[str, str], dict[str, Any]]:
    """(stage, job id) -> the sidecar of the job's output."""
    found = {}
    for path in out.rglob("*.json"):
        side = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(side, dict) and "stage" in side:
            found[(side["stage"], side["job"]["id"])] = side
    return found


def check_lineage(site: ChainSite, out: Path) -> int:
    """Each job of each grid that has a sidecar links to the job (and file) its sidecar says it was
    made from; the chains pages nest it under that job. Returns how many were checked."""
    sides, resolve, checked = sidecars(out), Resolver(), 0
    for stage in STAGES[1:]:
        for page, linked in site.linked(stage):
            side = sides.get((stage, job_of(linked)))
            if side is None:
                continue
            parent = side["chain"][-1]
            up = resolve.element(page.path, linked.one("a.up").get("href"))
            assert up is not None and job_of(up) == parent["job"]
            source = side["input_files"]["image"]["source"]
            assert target(page.path, linked.one("a.upfile").get("href")) == out / source
            assert parent["files"]["image"] == side["input_files"]["image"]["sha256"]
            card = resolve.element(page.path, linked.one("a.to-chain").get("href"))
            assert card is not None and job_of(card) == side["job"]["id"]
            checked += 1
    return checked


def chain_trees(site: ChainSite) -> dict[str, tuple[Any, ...]]:
    def tree(node: Any) -> tuple[Any, ...]:
        card, *rest = elements(node)
        kids = elements(rest[0]) if rest else []
        job = card.one("div.job")
        return (card.get("data-stage"), job.get("data-job"), job.get("data-status"), sorted(tree(k) for k in kids))

    out = {}
    for page in site.chains:
        for section in page.root.all("section.chain"):
            t = tree(elements(section.one("div.tree"))[0])
            out[t[1]] = t
    return out


def expected_tree(subject: str, animated: str) -> tuple[Any, ...]:
    return ("draft", subject, "completed", sorted([
        ("refine", f"{subject}-glossy", "completed", [("animate", f"{subject}-glossy", animated, [])]),
        ("refine", f"{subject}-matte", "completed", []),
    ]))


def test_the_report_of_the_pipeline_recipe_shows_its_chains_stages_and_lineage(
        cli: Callable[..., Any], emulator: Callable[..., Any], tmp_path: Path) -> None:
    recipe = tmp_path / "pipeline.yaml"
    shutil.copy(RECIPE, recipe)
    out = tmp_path / "out" / "pipeline"
    emu = emulator()
    # $0.60: the drafts and refinements ($0.168) and one of the two 5-second animations ($0.42)
    first = cli("run", str(recipe), "--base-url", emu.base_url, "--budget", "0.60")
    assert first.code == 3, first.err
    assert f"report: {out / 'report.html'}" in first.err
    site = read_chain_site(out / "report.html")
    assert Resolver().broken([site.index, *site.pages]) == []
    assert [counts(site, s) for s in STAGES] == [{"completed": 2}, {"completed": 4},
                                                  {"completed": 1, "not_run": 1}]
    billed = dict.fromkeys(STAGES, 0)
    for charge in emu.ledger()["charges"]:
        billed[stage_of_charge(charge)] += charge["microcents"]
    assert [billed_cell(site, s) for s in STAGES] == [format_usd(billed[s]) for s in STAGES]
    assert billed["animate"] == 42_000_000
    trees = chain_trees(site)
    assert sorted(trees) == ["brass_desk_lamp", "ceramic_mug"]
    animated = {s for s, t in trees.items() if t == expected_tree(s, "completed")}
    waiting = {s for s, t in trees.items() if t == expected_tree(s, "not_run")}
    assert len(animated) == len(waiting) == 1
    assert check_lineage(site, out) == 4 + 1  # the refinements, the one animation made
    (not_run,) = [linked for _, linked in site.linked("animate")
                  if linked.one("div.job").get("data-status") == "not_run"]
    assert job_of(not_run) == f"{waiting.pop()}-glossy"
    assert not_run.all("a.upfile") == []  # not made yet: no file read
    up = Resolver().element(site.grids["animate"][0].path, not_run.one("a.up").get("href"))
    assert up is not None and job_of(up) == job_of(not_run)  # its glossy refinement (the same id)

    second = cli("run", str(recipe), "--base-url", emu.base_url)
    assert second.code == 0, second.err
    site = read_chain_site(out / "report.html")
    assert Resolver().broken([site.index, *site.pages]) == []
    assert [counts(site, s) for s in STAGES] == [{"completed": 2}, {"completed": 4}, {"completed": 2}]
    assert chain_trees(site) == {s: expected_tree(s, "completed") for s in ("brass_desk_lamp", "ceramic_mug")}
    assert check_lineage(site, out) == 4 + 2
    assert emu.ledger()["total_microcents"] == 6 * 2_800_000 + 2 * 42_000_000
    again = cli("report", str(recipe))
    assert again.code == 0 and "(0 written," in again.out, again.out
    assert "8 jobs (8 done); 6 images, 2 other output files; billed $1.008" in again.out  # 2 of them are videos

    # a new animate prompt: the animations made are from another recipe now, listed apart
    text = recipe.read_text(encoding="utf-8")
    recipe.write_text(text.replace("turns slowly on a turntable", "spins under a spotlight"), encoding="utf-8")
    assert cli("report", str(recipe)).code == 0
    site = read_chain_site(out / "report.html")
    assert Resolver().broken([site.index, *site.pages]) == []
    assert [counts(site, s) for s in STAGES] == [{"completed": 2}, {"completed": 4}, {"not_run": 2}]
    assert chain_trees(site) == {s: expected_tree(s, "not_run") for s in ("brass_desk_lamp", "ceramic_mug")}
    apart = sorted((o.one("span.stage-name").text, job_of(o)) for p in site.others for o in p.root.all("div.other"))
    assert apart == [("animate", "brass_desk_lamp-glossy"), ("animate", "ceramic_mug-glossy")]
