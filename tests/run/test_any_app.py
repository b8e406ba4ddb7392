"""Other apps end to end against the emulator: `schema pull` into the project's schema store, then a
recipe for the app validates, plans by the app's unit, runs under a budget and saves outputs of
their kind (MP4, several PNGs and a text, WAV) with sidecars, billed as the emulator's ledger says."""

from __future__ import annotations

import hashlib
import json
import textwrap
from pathlib import Path

import pytest
from emulator.media_check import read_mp4, read_wav
from helpers import manifest, records

from kling_pipeline.core.schemas import schemas_root
from kling_pipeline.emulator.apps import app_id_for

VIDEO = """
version: 1
name: teaser
app: klingai/video-o1@ef28809a
matrix:
  mode: [std, pro]
  duration: [5, 10]
input:
  prompt: "a paper boat drifting on a pond"
  mode: "{{ mode }}"
  duration: "{{ duration }}"
  aspect_ratio: "16:9"
output: {dir: out}
budget:
  max_usd: 3
concurrency: 4
"""

GEMINI = """
version: 1
name: cards
app: google/gemini-2-5-flash-image@57fbd965
matrix:
  subject: [a fox, an owl]
input:
  prompt: "{{ subject }} in a snowy forest, as a greeting card"
  num_images: 2
output: {dir: out}
budget:
  max_usd: 1
"""

SPEECH = """
version: 1
name: lines
app: elevenlabs/tts@0b666f9a
matrix:
  line: ["Hello there.", "The quick brown fox jumps over the lazy dog."]
  model: [eleven_multilingual_v2, eleven_turbo_v2_5]
input:
  text: "{{ line }}"
  model: "{{ model }}"
output: {dir: out}
budget:
  max_usd: 1
"""


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The working directory: recipes are written here, `schema pull` makes ./kling-schemas."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def write(project: Path, name: str, text: str) -> str:
    (project / name).write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
    return name


def pull(cli, emu, *apps: str) -> str:
    result = cli("schema", "pull", *apps, "--base-url", emu.base_url)
    assert result.code == 0, result.err
    return str(result.out)


def bundled(app: str, name: str) -> object:
    return json.loads((schemas_root() / app / name).read_text(encoding="utf-8"))


def test_schema_pull_writes_the_video_app_into_the_projects_schema_store(cli, emulator, project):
    emu = emulator()
    out = pull(cli, emu, "klingai/video-o1")
    assert out == (
        f"klingai/video-o1@ef28809a: read from {emu.base_url}/apps/klingai/video-o1 (the current version)\n"
        "  price: $0.112/second x duration, 4 rates by mode, reference_video (exact), from the app document\n"
        "  against version ef28809a in the bundled data: no change\n"
        "  wrote kling-schemas/klingai/video-o1/ef28809a.json (a new schema store: set KLING_PIPELINE_SCHEMAS or "
        "keep recipes in this directory or below)\n"
        "  use it: app: klingai/video-o1@ef28809a\n")
    stored = json.loads((project / "kling-schemas/klingai/video-o1/ef28809a.json").read_text(encoding="utf-8"))
    read_on = stored["read_at"][:10]
    assert stored["read_at"] == f"{read_on}T{stored['read_at'][11:19]}Z"
    assert {k: v for k, v in stored.items() if k not in ("input_schema", "output_schema", "read_at")} == {
        "format": "kling-pipeline.app/1", "app": "klingai/video-o1", "version": "ef28809a",
        "id": app_id_for("klingai/video-o1"), "title": "Kling Video O1",
        "read_from": f"{emu.base_url}/apps/klingai/video-o1", "current": True, "versions": ["ef28809a"],
        "price_from": "app document",
        "pricing": {
            "unit": "second", "confidence": "exact", "usd_per_unit": "0.112", "quantity_field": "duration",
            "quantity_of": "value",
            "rates": [{"when": {"mode": "std", "reference_video": None}, "usd_per_unit": "0.084"},
                      {"when": {"mode": "std"}, "usd_per_unit": "0.126"},
                      {"when": {"mode": "pro", "reference_video": None}, "usd_per_unit": "0.112"},
                      {"when": {"mode": "pro"}, "usd_per_unit": "0.168"}],
            "note": bundled("klingai/video-o1", "app.json")["pricing"]["note"],
            "source": f"GET {emu.base_url}/apps/klingai/video-o1 (pricing)", "read_on": read_on,
        },
    }
    assert stored["input_schema"] == bundled("klingai/video-o1", "input.schema.json")
    assert stored["output_schema"] == bundled("klingai/video-o1", "output.schema.json")


def test_the_estimate_endpoint_gives_the_same_price_table_as_the_app_document(cli, emulator, project):
    emu = emulator()
    result = cli("schema", "pull", "klingai/video-o1", "elevenlabs/tts", "--price-from", "estimate",
                 "--base-url", emu.base_url)
    assert result.code == 0, result.err
    assert "  price: $0.112/second x duration, 4 rates by mode, reference_video (exact), from the estimate endpoint\n" \
           "  against version ef28809a in the bundled data: no change\n" in result.out
    assert "  price: $0.00017/character x length of text, 1 rate by model (exact), from the estimate endpoint\n" \
           "  against version 0b666f9a in the bundled data: no change\n" in result.out
    stored = json.loads((project / "kling-schemas/elevenlabs/tts/0b666f9a.json").read_text(encoding="utf-8"))
    assert stored["price_from"] == "estimate endpoint"
    assert stored["pricing"]["rates"] == [{"when": {"model": ["eleven_turbo_v2_5", "eleven_flash_v2_5"]},
                                           "usd_per_unit": "0.00008"}]
    assert stored["pricing"]["source"].startswith("POST /store/apps/app_")
    assert emu.ledger()["charges"] == []  # estimates bill nothing


def test_a_video_recipe_is_checked_against_the_pulled_schema_at_file_line_col(cli, emulator, project):
    pull(cli, emulator(), "klingai/video-o1")
    name = write(project, "teaser.yaml", VIDEO.replace("[std, pro]", "[std, ultra]").replace("[5, 10]", "[5, 12]")
                 .replace('aspect_ratio: "16:9"', 'aspect_ratio: "4:3"\n  loop: true'))
    result = cli("validate", name)
    assert (result.code, result.out) == (2, "")
    assert result.err == (
        "teaser.yaml:5:15: [mode=ultra, duration=5] input.mode: 'ultra' is not one of: std, pro "
        "(and 1 more combination)\n"
        "teaser.yaml:6:17: [mode=std, duration=12] input.duration: 12 is out of range: must be at most 10 "
        "(and 1 more combination)\n"
        "teaser.yaml:11:17: [mode=std, duration=5] input.aspect_ratio: '4:3' is not one of: 16:9, 9:16, 1:1 (or null) "
        "(and 3 more combinations)\n"
        "3 errors in teaser.yaml; nothing was sent\n")
    fixed = cli("validate", write(project, "teaser.yaml", VIDEO.replace('"16:9"', '"16:9"\n  loop: true')))
    assert (fixed.code, fixed.out) == (0, "teaser.yaml: ok — 4 jobs, $2.94\n")
    fields = ", ".join(bundled("klingai/video-o1", "input.schema.json")["properties"])
    assert fixed.err == ("teaser.yaml:12:3: warning: input.loop is not a field of klingai/video-o1 (its schema lets "
                         f"it through; the app will most likely ignore it; fields: {fields})\n")


def test_a_video_plan_is_priced_per_second_at_the_rate_of_its_mode(cli, emulator, project):
    pull(cli, emulator(), "klingai/video-o1")
    result = cli("plan", write(project, "teaser.yaml", VIDEO))
    assert (result.code, result.err) == (0, "")  # no "billed as 10 images" for 10 seconds
    assert result.out == textwrap.dedent("""\
        teaser.yaml: teaser — klingai/video-o1@ef28809a
          4 jobs · 30 seconds billed · $2.94 at $0.084 to $0.112/second (by mode, reference_video) (price read {day})
          budget $3.00: within budget ($0.06 to spare)
          output: out
          by mode:
            std      2 jobs    15 seconds       $1.26
            pro      2 jobs    15 seconds       $1.68
          by duration:
            5       2 jobs    10 seconds       $0.98
            10      2 jobs    20 seconds       $1.96
          jobs:
        """).format(day=json.loads((project / "kling-schemas/klingai/video-o1/ef28809a.json").read_text())
                    ["pricing"]["read_on"]) + result.out.split("  jobs:\n")[1]
    rows = result.out.split("  jobs:\n")[1].splitlines()
    assert [row.split()[2:5] for row in rows] == [["5", "seconds", "$0.42"], ["10", "seconds", "$0.84"],
                                                 ["5", "seconds", "$0.56"], ["10", "seconds", "$1.12"]]


def test_a_video_sweep_runs_under_its_budget_and_saves_mp4s_with_sidecars(cli, emulator, project):
    emu = emulator()
    pull(cli, emu, "klingai/video-o1")
    result = cli("run", write(project, "teaser.yaml", VIDEO), "--base-url", emu.base_url)
    assert result.code == 0, result.err
    assert "spend: $2.94 this run; $2.94 settled + $0.00 unresolved in total of the $3.00 cap" in result.err
    out = project / "out"
    ledger = emu.ledger()
    assert ledger["total_microcents"] == 294_000_000
    assert sorted(c["seconds"] for c in ledger["charges"]) == [5, 5, 10, 10]
    jobs = list(manifest(out))
    assert sorted(j.done.billed_microcents for j in jobs if j.done) == [42_000_000, 56_000_000, 84_000_000,
                                                                        112_000_000]
    for job in jobs:
        assert job.done is not None and job.intent is not None
        assert job.done.units == job.intent.input["duration"]
        (entry,) = job.done.outputs
        assert entry.path.endswith(".mp4") and entry.content_type == "video/mp4"
        data = (out / entry.path).read_bytes()
        assert hashlib.sha256(data).hexdigest() == entry.sha256 and len(data) == entry.size
        video = read_mp4(data)
        assert (video.major_brand, video.seconds, video.width * 9) == (b"isom", job.intent.input["duration"],
                                                                       video.height * 16)
        side = json.loads((out / entry.sidecar).read_text(encoding="utf-8"))
        assert side["kind"] == "video" and side["field"] == "video" and side["sha256"] == entry.sha256
        assert side["outputs"] == [{"file": entry.path, "field": "video", "kind": "video"}]
        assert side["billed_usd"] == f"{job.done.billed_microcents / 100_000_000:g}"
        assert side["app"] == "klingai/video-o1@ef28809a"


def test_a_budget_too_small_for_the_video_sweep_stops_it(cli, emulator, project):
    emu = emulator()
    pull(cli, emu, "klingai/video-o1")
    result = cli("run", write(project, "teaser.yaml", VIDEO.replace("max_usd: 3", "max_usd: 1.50")),
                 "--base-url", emu.base_url)
    assert result.code == 3, result.err
    settled = sum(j.done.billed_microcents for j in manifest(project / "out") if j.done)
    assert settled == emu.ledger()["total_microcents"] <= 150_000_000


def test_a_multi_output_app_saves_every_image_and_its_text(cli, emulator, project):
    emu = emulator()
    pull(cli, emu, "google/gemini-2-5-flash-image")
    name = write(project, "cards.yaml", GEMINI)
    plan = cli("plan", name)
    assert (plan.code, plan.err) == (0, "")  # it returns num_images images: no warning
    assert plan.out.splitlines()[1:3] == [
        "  2 jobs · 4 images billed · 4 images returned · $0.1548 to $0.48248 at $0.0387 to $0.12062/image: a "
        f"range, the budget reserves the upper bound (price read {plan.out.split('price read ')[1][:10]})",
        "  budget $1.00: within budget ($0.51752 to spare)",
    ]
    result = cli("run", name, "--base-url", emu.base_url)
    assert result.code == 0, result.err
    # settled at the table's typical price, $0.039 an image, as the ledger charged
    assert "spend: $0.156 this run; $0.156 settled + $0.00 unresolved in total of the $1.00 cap" in result.err
    assert emu.ledger()["total_microcents"] == 15_600_000
    out = project / "out"
    for job in manifest(out):
        assert job.done is not None
        stem = job.done.outputs[0].path.removesuffix(".png")
        assert [(o.path, o.content_type) for o in job.done.outputs] == [
            (f"{stem}.png", "image/png"), (f"{stem}-1.png", "image/png"),
            (f"{stem}-description.txt", "text/plain; charset=utf-8")]
        text = (out / f"{stem}-description.txt").read_bytes()
        assert text == f"Here are 2 image(s) for: {job.intent.input['prompt']}".encode()
        for o in job.done.outputs:
            data = (out / o.path).read_bytes()
            assert hashlib.sha256(data).hexdigest() == o.sha256 and len(data) == o.size
            side = json.loads((out / o.sidecar).read_text(encoding="utf-8"))
            assert side["outputs"] == [{"file": f"{stem}.png", "field": "images", "kind": "image"},
                                       {"file": f"{stem}-1.png", "field": "images", "kind": "image"},
                                       {"file": f"{stem}-description.txt", "field": "description", "kind": "text"}]
            assert (side["file"], side["sha256"], side["content_type"]) == (o.path, o.sha256, o.content_type)
        assert (out / f"{stem}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    done = records(out, "done")
    assert all(len(r["outputs"]) == 3 and r["outputs"][2]["uri"] == "" for r in done)


def test_a_speech_app_is_priced_per_character_and_saves_wavs(cli, emulator, project):
    emu = emulator()
    pull(cli, emu, "elevenlabs/tts")
    name = write(project, "lines.yaml", SPEECH)
    plan = cli("plan", name, "--rows", "4")
    assert plan.code == 0, plan.err
    assert plan.out.splitlines()[1].startswith(
        "  4 jobs · 112 characters billed · $0.014 at $0.00008 to $0.00017/character (by model) (price read ")
    result = cli("run", name, "--base-url", emu.base_url)
    assert result.code == 0, result.err
    charged = {(c["input"]["text"], c["input"]["model"]): (c["characters"], c["microcents"])
               for c in emu.ledger()["charges"]}
    assert charged == {("Hello there.", "eleven_multilingual_v2"): (12, 204_000),
                       ("Hello there.", "eleven_turbo_v2_5"): (12, 96_000),
                       ("The quick brown fox jumps over the lazy dog.", "eleven_multilingual_v2"): (44, 748_000),
                       ("The quick brown fox jumps over the lazy dog.", "eleven_turbo_v2_5"): (44, 352_000)}
    out = project / "out"
    for job in manifest(out):
        assert job.done is not None and job.intent is not None
        assert job.done.billed_microcents == charged[(job.intent.input["text"], job.intent.input["model"])][1]
        (entry,) = job.done.outputs
        assert entry.path.endswith(".wav") and entry.content_type == "audio/wav"
        audio = read_wav((out / entry.path).read_bytes())
        assert audio.frames > 0 and audio.channels >= 1
        assert json.loads((out / entry.sidecar).read_text())["kind"] == "audio"
