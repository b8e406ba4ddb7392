"""The example recipes in recipes/ are valid, warning-free and plan what their headers say."""

from __future__ import annotations

import importlib.util
import struct
import zlib
from pathlib import Path

import pytest

from kling_pipeline import plan_file
from kling_pipeline.core.localfiles import FileLimits, check_path
from kling_pipeline.core.money import format_usd
from kling_pipeline.core.schemas import load_app

from .conftest import WriteRecipe
from .util import cli

ROOT = Path(__file__).resolve().parents[2]
RECIPES = ROOT / "recipes"
# bases/ holds shared defaults for `extends`, without `input`: not recipes on their own, so
# they are checked through the recipes that extend them (and below), and kept out of the way
# of the README's `kling-pipeline validate recipes/*.yaml`.
BASE = RECIPES / "bases" / "defaults.yaml"
EXAMPLES = sorted(p.name for p in RECIPES.glob("*.yaml"))
JOBS = {"quickstart.yaml": 4, "product-shots.yaml": 17, "image-to-image.yaml": 6, "paired-zip.yaml": 12,
        "folder-sweep.yaml": 5, "video-teaser.yaml": 4, "pipeline.yaml": 8}
# pipeline: 2 drafts + 4 refinements at $0.028, 2 videos of 5 s at $0.084/s (std)
COST = {name: jobs * 2_800_000 for name, jobs in JOBS.items()} | {"video-teaser.yaml": 156_800_000,
                                                                  "pipeline.yaml": 6 * 2_800_000 + 2 * 42_000_000}


def test_the_examples_are_the_ones_documented() -> None:
    assert sorted(JOBS) == EXAMPLES


@pytest.mark.parametrize("name", EXAMPLES)
def test_every_example_recipe_validates_without_warnings(name: str) -> None:
    p = plan_file(RECIPES / name)
    assert [str(w) for w in p.warnings] == []
    assert len(p.jobs) == JOBS[name]
    assert p.over_budget == 0


@pytest.mark.parametrize("name", [*EXAMPLES, "bases/defaults.yaml"])
def test_every_example_starts_with_a_comment_saying_what_it_shows(name: str) -> None:
    first = (RECIPES / name).read_text(encoding="utf-8").splitlines()[0]
    assert first.startswith("# ") and len(first) > 20


def test_the_readme_tour_validates_every_recipe_the_glob_finds(monkeypatch: pytest.MonkeyPatch) -> None:
    """``kling-pipeline validate recipes/*.yaml``, the README's first command, passes on what ships."""
    monkeypatch.chdir(ROOT)
    paths = sorted(str(p.relative_to(ROOT)) for p in RECIPES.glob("*.yaml"))
    assert cli("validate", *paths) == (0, "".join(f"{p}: ok — {JOBS[Path(p).name]} jobs, "
                                                  f"{format_usd(COST[Path(p).name])}\n" for p in paths), "")
    assert "kling-pipeline validate recipes/*.yaml" in (ROOT / "README.md").read_text(encoding="utf-8")


def test_base_is_shared_by_at_least_two_examples() -> None:
    users = [n for n in EXAMPLES if "extends: bases/defaults.yaml" in (RECIPES / n).read_text(encoding="utf-8")]
    assert len(users) >= 2


def test_base_completes_any_input(write: WriteRecipe, tmp_path: Path) -> None:
    (tmp_path / "bases").mkdir()
    (tmp_path / "bases/defaults.yaml").write_bytes(BASE.read_bytes())
    p = plan_file(write("extends: bases/defaults.yaml\ninput: {prompt: '{{ light }}, {{ quality }}'}\n", "mine.yaml"))
    assert str(p.recipe.app) == "klingai/image-o1@0pbaxv40"
    assert p.output_dir == Path("out")  # the base's ../out, next to the recipes
    assert p.jobs[0].output_name.startswith("mine/")


def test_a_base_alone_is_not_a_recipe(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    assert cli("validate", "recipes/bases/defaults.yaml") == (2, "", (
        "recipes/bases/defaults.yaml:6:1: missing required key 'input' (the request template, e.g. "
        "'input: {prompt: ...}')\n1 error in recipes/bases/defaults.yaml; nothing was sent\n"))


def test_product_shots_uses_include_exclude_and_a_mapping_axis() -> None:
    p = plan_file(RECIPES / "product-shots.yaml")
    ids = [j.id for j in p.jobs]
    assert not any(i.startswith("glass_bottle-marble") for i in ids)  # excluded
    assert ids[-1] == "leather_wallet-walnut-21_9"  # added by include
    assert all(i.endswith("-steam") for i in ids if i.startswith("ceramic_mug"))  # merged by include
    assert p.render(p.jobs[0]).request["prompt"] == (
        "Product photograph of a ceramic mug on white marble, wisps of steam rising from the cup, "
        "soft studio lighting, sharp focus, high detail")


def test_paired_zip_pairs_subjects_with_settings() -> None:
    p = plan_file(RECIPES / "paired-zip.yaml")
    pairs = {(j.combination.values["subject"], j.combination.values["setting"]) for j in p.jobs}
    assert pairs == {("lighthouse keeper", "a stormy cliff at dusk"), ("beekeeper", "a sunlit meadow"),
                     ("glassblower", "a glowing workshop")}


def _pixels(data: bytes) -> tuple[bytes, bytes]:
    """IHDR and the decompressed image data of a PNG (zlib's bytes may differ by version)."""
    chunks: dict[bytes, bytes] = {}
    i = 8
    while i < len(data):
        (length,) = struct.unpack(">I", data[i:i + 4])
        kind = data[i + 4:i + 8]
        chunks[kind] = chunks.get(kind, b"") + data[i + 8:i + 8 + length]
        i += 12 + length
    return chunks[b"IHDR"], zlib.decompress(chunks[b"IDAT"])


def test_reference_images_are_small_valid_and_made_by_make_refs() -> None:
    spec = importlib.util.spec_from_file_location("make_refs", RECIPES / "refs/make_refs.py")
    assert spec is not None and spec.loader is not None
    make_refs = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(make_refs)
    limits = FileLimits.from_schema(load_app("klingai/image-o1").input_schema["properties"]["image"]["x-file"])
    for name, (w, h, top, bottom) in make_refs.IMAGES.items():
        path = RECIPES / "refs" / name
        found = check_path(path, name, limits)
        assert (found.media_type, found.width, found.height) == ("image/png", w, h)
        assert found.size < 4096
        assert _pixels(path.read_bytes()) == _pixels(make_refs.png(w, h, top, bottom))
