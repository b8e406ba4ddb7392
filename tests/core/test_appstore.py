"""The schema store (which app data a recipe's ``app`` uses), the change lines between two
descriptions of an app, and prices by the app's unit from the data: rates, ranges, unknown."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from kling_pipeline.core.appstore import SchemaStore, StoredApp, locate_store, pricing_table, resolve_app
from kling_pipeline.core.schemadiff import app_changes, field_changes, price_changes
from kling_pipeline.core.schemas import AppRef, known_apps, load_app, parse_pricing

from .conftest import WriteRecipe
from .util import errors, ok, warnings


def store_version(root: Path, app: str, version: str, read_at: str, *, current: bool = True,
                  **changes: object) -> StoredApp:
    stored = dataclasses.replace(StoredApp.from_spec(load_app(app)), version=version, read_at=read_at,
                                 current=current, **changes)  # type: ignore[arg-type]
    path = SchemaStore(root).file_for(app, version)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(stored.encode())
    return stored


@pytest.mark.parametrize("app", known_apps())
def test_a_bundled_price_table_reads_back_the_same_from_the_stores_form(app: str) -> None:
    spec = load_app(app)
    again = parse_pricing(pricing_table(spec.pricing), spec.input_schema)
    assert dataclasses.replace(again, source=spec.pricing.source) == spec.pricing
    assert StoredApp.from_document(StoredApp.from_spec(spec).document()) == StoredApp.from_spec(spec)


def test_the_store_is_the_nearest_kling_schemas_directory_or_the_one_the_environment_names(tmp_path: Path) -> None:
    nested = tmp_path / "sweeps" / "video"
    nested.mkdir(parents=True)
    assert locate_store(nested, {}) is None
    (tmp_path / "kling-schemas").mkdir()
    assert locate_store(nested, {}) == SchemaStore(tmp_path / "kling-schemas")
    assert locate_store(nested, {"KLING_PIPELINE_SCHEMAS": "/elsewhere"}) == SchemaStore(Path("/elsewhere"))


def test_the_newest_pulled_version_is_the_one_current_at_the_latest_pull(tmp_path: Path) -> None:
    store = SchemaStore(tmp_path)
    store_version(tmp_path, "klingai/video-o1", "v1", "2026-11-01T10:00:00Z")
    store_version(tmp_path, "klingai/video-o1", "v2", "2026-11-02T10:00:00Z")
    store_version(tmp_path, "klingai/video-o1", "v0", "2026-11-03T10:00:00Z", current=False)  # an old one, later
    assert [s.version for s in store.pulled("klingai/video-o1")] == ["v1", "v2", "v0"]
    assert resolve_app(AppRef("klingai/video-o1"), store).spec.pinned_version == "v2"
    assert resolve_app(AppRef("klingai/video-o1", "v0"), store).spec.pinned_version == "v0"
    bundled = resolve_app(AppRef("klingai/video-o1", "ef28809a"), store)
    assert (bundled.origin, bundled.path) == ("bundled", load_app("klingai/video-o1").directory / "app.json")
    assert resolve_app(AppRef("klingai/image-o1"), store).origin == "bundled"
    with pytest.raises(ValueError, match="cannot name a file"):
        store.file_for("klingai/video-o1", "../x")


def test_a_pulled_version_wins_over_the_bundled_data_of_the_same_version(write: WriteRecipe, tmp_path: Path) -> None:
    spec = load_app("klingai/image-o1")
    table = {**pricing_table(spec.pricing), "usd_per_unit": "0.03", "read_on": "2026-11-27"}
    store_version(tmp_path / "kling-schemas", "klingai/image-o1", "0pbaxv40", "2026-11-27T09:00:00Z", pricing=table)
    plan = ok(write("version: 1\napp: klingai/image-o1@0pbaxv40\ninput: {prompt: a mug}\n"))
    assert (plan.total_cost, plan.app.pricing.read_on) == (3_000_000, "2026-11-27")
    unpinned = ok(write("version: 1\napp: klingai/image-o1\ninput: {prompt: a mug}\n"))
    assert warnings(unpinned) == ["r.yaml:2:6: app is not pinned: write 'klingai/image-o1@0pbaxv40' for a "
                                  "reproducible sweep"]


def test_a_store_with_a_broken_file_says_which_and_what_to_do(write: WriteRecipe, tmp_path: Path) -> None:
    broken = tmp_path / "kling-schemas" / "klingai" / "video-o1" / "v9.json"
    broken.parent.mkdir(parents=True)
    broken.write_text("{", encoding="utf-8")
    from kling_pipeline.core.errors import SchemaDataError

    with pytest.raises(SchemaDataError) as info:
        ok(write("version: 1\napp: klingai/video-o1@v9\ninput: {prompt: a wave}\n"))
    assert str(info.value) == (f"{broken.resolve()}: not a schema pulled by kling-pipeline (Expecting property name "
                               "enclosed in double quotes: line 1 column 2 (char 1)); pull it again")


VIDEO_HEAD = "version: 1\napp: klingai/video-o1@ef28809a\n"


def test_each_job_is_priced_at_the_rate_its_own_fields_select(write: WriteRecipe) -> None:
    plan = ok(write(VIDEO_HEAD + "matrix:\n  mode: [std, pro]\n  ref: [null, 'https://example.com/v.mp4']\n"
                                 "input:\n  prompt: a wave\n  duration: 4\n  mode: '{{ mode }}'\n"
                                 "  reference_video: '{{ ref }}'\n"))
    # std $0.084, pro $0.112; with a reference video std $0.126, pro $0.168; x 4 seconds
    assert [(j.id, j.units, j.cost) for j in plan.jobs] == [
        ("std-null", 4, 33_600_000), ("std-https_example.com_v.mp4", 4, 50_400_000),
        ("pro-null", 4, 44_800_000), ("pro-https_example.com_v.mp4", 4, 67_200_000)]
    assert warnings(plan) == []


def test_a_text_is_priced_by_its_length_and_its_model(write: WriteRecipe) -> None:
    plan = ok(write("version: 1\napp: elevenlabs/tts@0b666f9a\nmatrix:\n"
                    "  model: [eleven_multilingual_v2, eleven_flash_v2_5]\ninput:\n  text: 'Good morning!'\n"
                    "  model: '{{ model }}'\n"))
    assert [(j.units, j.cost) for j in plan.jobs] == [(13, 13 * 17_000), (13, 13 * 8_000)]


def test_max_job_usd_refuses_a_job_that_may_cost_more(write: WriteRecipe) -> None:
    path = write(VIDEO_HEAD + "matrix:\n  d: [5, 10]\ninput:\n  prompt: a wave\n  duration: '{{ d }}'\n")
    assert errors(path, max_job_usd=100_000_000) == [
        "r.yaml:4:10: [d=10] a task costs up to $1.12, more than --max-job-usd $1.00"]


def test_field_changes_name_every_kind_of_change() -> None:
    old = {"properties": {"n": {"type": "integer", "minimum": 1, "maximum": 9},
                          "ratio": {"enum": ["1:1", "16:9", "21:9"], "type": "string"},
                          "refs": {"type": "array", "items": {"type": "string", "format": "file"}},
                          "seed": {"type": "integer"}},
           "required": ["n"]}
    new = {"$defs": {"R": {"enum": ["1:1", "16:9"], "type": "string"}},
           "properties": {"n": {"type": "integer", "minimum": 1},
                          "ratio": {"anyOf": [{"$ref": "#/$defs/R"}, {"type": "null"}]},
                          "refs": {"type": "array", "items": {"type": "string"}},
                          "seed": {"type": "integer"},
                          "mask": {"type": "string", "format": "file"}}}
    assert field_changes("input", old, new) == [
        "input.mask: added (string (file))",
        "input.n: maximum 9 -> none",
        "input.n: no longer required",
        "input.ratio: retyped: string -> string | null",
        "input.ratio: enum values removed: 21:9",
        "input.refs: retyped: array of string (file) -> array of string",
    ]


def test_price_changes_name_the_unit_the_rates_and_the_range() -> None:
    video = load_app("klingai/video-o1")
    cheaper = dict(pricing_table(video.pricing))
    cheaper["rates"] = [{"when": {"mode": "std"}, "usd_per_unit": "0.07"}]
    assert price_changes(video.pricing, parse_pricing(cheaper, video.input_schema)) == [
        "price: rate when mode=std: $0.126/second -> $0.07/second",
        "price: rate when mode=std, reference_video=null removed",
        "price: rate when mode=pro, reference_video=null removed",
        "price: rate when mode=pro removed",
    ]
    gemini = load_app("google/gemini-2-5-flash-image")
    wider = {**pricing_table(gemini.pricing), "max": "0.2"}
    assert price_changes(gemini.pricing, parse_pricing(wider, gemini.input_schema)) == [
        "price: range $0.0387 to $0.12062/image -> $0.0387 to $0.20/image"]
    runs = {"unit": "run", "usd_per_unit": "0.13"}
    assert price_changes(gemini.pricing, parse_pricing(runs, gemini.input_schema)) == [
        "price: billed per image -> per run", "price: range -> exact", "price: $0.039/image -> $0.13/run",
        "price: quantity from num_images -> one a task"]
    stored = StoredApp.from_spec(video)
    assert app_changes(stored, dataclasses.replace(stored, version="v2")) == ["version: ef28809a -> v2"]
