"""`schema pull` against the emulator: what changed, `--check` for CI, pinning to pulled versions,
and prices the store says are unknown (refused by `run` unless bounded)."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
from helpers import manifest

from kling_pipeline.core.schemas import schemas_root

EDITED = [
    "    input.style: added (string, default \"cinematic\")",
    "    input.watermark: removed",
    "    input.keep_original_sound: retyped: boolean -> string",
    "    input.keep_original_sound: default true -> \"yes\"",
    "    input.aspect_ratio: new enum values: 4:3",
    "    input.aspect_ratio: now required",
    "    input.duration: maximum 10 -> 15",
    "    price: $0.112/second -> $0.14/second",
]


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


def edit_video_app(emu) -> None:
    """A new field, a field gone, one retyped, a new enum value, a field now required, a changed limit
    and a new price: the service changed the app under the same version id."""
    schema = json.loads((schemas_root() / "klingai/video-o1/input.schema.json").read_text(encoding="utf-8"))
    schema["properties"]["duration"]["maximum"] = 15
    schema["$defs"]["AspectRatioEnum"]["enum"].append("4:3")
    schema["properties"]["style"] = {"type": "string", "default": "cinematic"}
    del schema["properties"]["watermark"]
    schema["properties"]["keep_original_sound"] = {"type": "string", "default": "yes"}
    schema["required"] = ["prompt", "aspect_ratio"]
    emu.edit_app("klingai/video-o1", input_schema=schema, pricing={"usd_per_unit": "0.14"})


def test_check_exits_1_after_the_service_changes_the_app_and_0_once_pulled(cli, emulator, project):
    emu = emulator()
    assert cli("schema", "pull", "klingai/video-o1", "--base-url", emu.base_url).code == 0
    stored = project / "kling-schemas/klingai/video-o1/ef28809a.json"
    read_at = json.loads(stored.read_text())["read_at"]
    current = cli("schema", "pull", "--check", "klingai/video-o1", "--base-url", emu.base_url)
    assert (current.code, current.out) == (0, "klingai/video-o1: current (version ef28809a in "
                                              f"{stored.relative_to(project)}, read {read_at})\n"
                                              "schema check: 1 app current\n")
    before = stored.read_bytes()
    edit_video_app(emu)

    stale = cli("schema", "pull", "--check", "--base-url", emu.base_url)  # every app the project holds
    assert stale.code == 1
    assert stale.out.splitlines() == [
        "elevenlabs/sound-effects: current (version 0b666f9a in the bundled data)",
        "elevenlabs/tts: current (version 0b666f9a in the bundled data)",
        "google/gemini-2-5-flash-image: current (version 57fbd965 in the bundled data)",
        "klingai/image-o1: current (version 0pbaxv40 in the bundled data)",
        f"klingai/video-o1: STALE — version ef28809a changed at the service since "
        f"kling-schemas/klingai/video-o1/ef28809a.json, read {read_at}:",
        *EDITED,
        "schema check: 1 of 5 apps stale; `kling-pipeline schema pull APP` updates one",
    ]
    assert stored.read_bytes() == before  # --check changes nothing

    pulled = cli("schema", "pull", "klingai/video-o1", "--base-url", emu.base_url)
    assert pulled.code == 0, pulled.err
    assert pulled.out.splitlines()[1:11] == [
        "  price: $0.14/second x duration, 4 rates by mode, reference_video (exact), from the app document",
        f"  against version ef28809a in kling-schemas/klingai/video-o1/ef28809a.json, read {read_at}: 8 changes",
        *EDITED,
    ]
    again = cli("schema", "pull", "--check", "klingai/video-o1", "--base-url", emu.base_url)
    assert again.code == 0, again.out

    emu.edit_app("klingai/video-o1", version="v2")
    newer = cli("schema", "pull", "--check", "klingai/video-o1", "--base-url", emu.base_url)
    assert newer.code == 1
    assert newer.out.splitlines()[1:] == [
        "    version: ef28809a -> v2", "schema check: 1 of 1 app stale; `kling-pipeline schema pull APP` updates one"]
    assert newer.out.startswith("klingai/video-o1: STALE — the service's current version is v2; this project has "
                                "version ef28809a in kling-schemas/klingai/video-o1/ef28809a.json")


def test_check_finds_a_bundled_schema_stale(cli, emulator, project):
    emu = emulator()
    emu.edit_app("klingai/image-o1", pricing={"usd_per_unit": "0.03"})
    result = cli("schema", "pull", "--check", "klingai/image-o1", "--base-url", emu.base_url)
    assert (result.code, result.out) == (1, (
        "klingai/image-o1: STALE — version 0pbaxv40 changed at the service since the bundled data:\n"
        "    price: $0.028/image -> $0.03/image\n"
        "schema check: 1 of 1 app stale; `kling-pipeline schema pull APP` updates one\n"))
    assert not (project / "kling-schemas").exists()


def test_pull_refuses_what_the_service_cannot_give(cli, emulator, project):
    emu = emulator()
    unknown = cli("schema", "pull", "falai/flux-dev", "--base-url", emu.base_url)
    assert (unknown.code, unknown.err) == (2, "error: the service has no app 'falai/flux-dev' (GET "
                                              "/apps/falai/flux-dev answered 404); check its name on inference.sh\n")
    old = cli("schema", "pull", "klingai/video-o1@v0", "--base-url", emu.base_url)
    assert (old.code, old.err) == (2, "error: the current version of klingai/video-o1 is ef28809a, not v0 (it lists "
                                      "ef28809a); the service serves the schemas of its current version only: pull "
                                      "klingai/video-o1@ef28809a\n")
    nothing = cli("schema", "pull", "--base-url", emu.base_url)
    assert (nothing.code, nothing.err) == (2, "error: schema pull: name the app(s) to pull, e.g. "
                                              "`kling-pipeline schema pull klingai/video-o1`\n")
    assert not (project / "kling-schemas").exists()


RECIPE = """version: 1
app: {app}
input:
  prompt: "a lighthouse at dusk"
"""


def test_a_pinned_version_uses_its_pulled_schema_and_an_unpinned_app_the_newest(cli, emulator, project):
    emu = emulator()
    assert cli("schema", "pull", "klingai/video-o1", "--base-url", emu.base_url).code == 0
    edit_video_app(emu)
    emu.edit_app("klingai/video-o1", version="v2")
    assert cli("schema", "pull", "klingai/video-o1", "--base-url", emu.base_url).code == 0
    assert sorted(p.name for p in (project / "kling-schemas/klingai/video-o1").iterdir()) == ["ef28809a.json",
                                                                                             "v2.json"]
    (project / "r.yaml").write_text(textwrap.dedent(RECIPE.format(app="klingai/video-o1")), encoding="utf-8")
    newest = cli("plan", "r.yaml")  # v2 requires aspect_ratio
    assert newest.code == 2
    assert newest.err == ("r.yaml:3:1: input: missing required field 'aspect_ratio'\n"
                          "1 error in r.yaml; nothing was sent\n")
    (project / "r.yaml").write_text(textwrap.dedent(RECIPE.format(app="klingai/video-o1")) + '  aspect_ratio: "4:3"\n',
                                    encoding="utf-8")
    warned = cli("plan", "r.yaml")
    assert warned.code == 0, warned.err
    assert warned.err == ("r.yaml:2:6: warning: app is not pinned: write 'klingai/video-o1@v2' for a reproducible "
                          "sweep\n")
    assert "1 job · 5 seconds billed · $0.56 at $0.112/second" in warned.out  # v2's table: pro at $0.112

    (project / "r.yaml").write_text(textwrap.dedent(RECIPE.format(app="klingai/video-o1@ef28809a")),
                                    encoding="utf-8")
    pinned = cli("plan", "r.yaml")
    assert (pinned.code, pinned.err) == (0, "")
    (project / "r.yaml").write_text(textwrap.dedent(RECIPE.format(app="klingai/video-o1@v3")), encoding="utf-8")
    never = cli("plan", "r.yaml")
    assert (never.code, never.err) == (2, (
        "r.yaml:2:6: version 'v3' of app klingai/video-o1 was never pulled; this project has ef28809a, v2: run "
        f"`kling-pipeline schema pull klingai/video-o1@v3` (schema store: {project / 'kling-schemas'})\n"
        "1 error in r.yaml; nothing was sent\n"))
    (project / "r.yaml").write_text(textwrap.dedent(RECIPE.format(app="falai/flux-dev")), encoding="utf-8")
    other = cli("validate", "r.yaml")
    assert other.code == 2
    assert other.err.startswith("r.yaml:2:6: no schema for app 'falai/flux-dev': run `kling-pipeline schema pull "
                                f"falai/flux-dev` to fetch it (schema store: {project / 'kling-schemas'}) (bundled "
                                "apps: elevenlabs/sound-effects, ")


SOUNDS = """version: 1
name: sounds
app: elevenlabs/sound-effects@0b666f9a
matrix:
  thing: [rain on a tin roof, a door creaking, distant thunder]
input:
  text: "{{ thing }}"
output: {dir: out}
budget:
  max_usd: 1
"""


def test_an_app_of_unknown_price_runs_only_with_a_bound(cli, emulator, project):
    emu = emulator()
    emu.edit_app("elevenlabs/sound-effects", pricing={"confidence": "unknown", "usd_per_unit": None,
                                                      "note": "billed by the provider's credits"})
    assert cli("schema", "pull", "elevenlabs/sound-effects", "--base-url", emu.base_url).code == 0
    (project / "sounds.yaml").write_text(textwrap.dedent(SOUNDS), encoding="utf-8")
    plan = cli("plan", "sounds.yaml")
    assert plan.code == 0, plan.err
    assert plan.out.splitlines()[1] == ("  3 jobs · 3 runs billed · price unknown: `run` refuses it; set "
                                        "price.usd_per_unit in the recipe or pass --max-job-usd (billed by the "
                                        "provider's credits)")
    refused = cli("run", "sounds.yaml", "--base-url", emu.base_url)
    assert (refused.code, refused.err) == (2, (
        "sounds.yaml:3:6: the price of elevenlabs/sound-effects is unknown (billed by the provider's credits), so "
        "the budget cannot hold 3 jobs: set price.usd_per_unit in the recipe (USD per run) or pass --max-job-usd "
        "USD (the most one job may cost)\n1 error in sounds.yaml; nothing was sent\n"))
    assert emu.limit_stats()["runs"]["allowed"] == 0

    over = cli("run", "sounds.yaml", "--base-url", emu.base_url, "--max-job-usd", "0.40")
    assert over.code == 3  # 3 x $0.40 reserved is over the $1 cap: the third job is not run
    ran = cli("run", "sounds.yaml", "--base-url", emu.base_url, "--max-job-usd", "0.20")  # $0.20 left
    assert ran.code == 0, ran.err
    jobs = list(manifest(project / "out"))
    assert [j.state for j in jobs] == ["completed"] * 3
    # the price is unknown: each job is counted at what it reserved
    assert sorted(j.done.billed_microcents for j in jobs if j.done) == [20_000_000, 40_000_000, 40_000_000]

    priced = textwrap.dedent(SOUNDS).replace("output:", "price:\n  usd_per_unit: 0.13\noutput:")
    (project / "sounds.yaml").write_text(priced, encoding="utf-8")
    assert "3 jobs · 3 runs billed · $0.39 at $0.13/run (price set by the recipe)" in cli("plan", "sounds.yaml").out


def test_a_price_per_image_is_refused_for_an_app_billed_per_second(cli, project):
    (project / "r.yaml").write_text("version: 1\napp: klingai/video-o1@ef28809a\nprice:\n  usd_per_image: 0.1\n"
                                    "input:\n  prompt: a wave\n", encoding="utf-8")
    result = cli("plan", "r.yaml")
    assert (result.code, result.err) == (2, (
        "r.yaml:4:18: price.usd_per_image: klingai/video-o1 bills per second, not per image; write "
        "price.usd_per_unit (USD per second)\n1 error in r.yaml; nothing was sent\n"))


def test_a_range_reserves_its_upper_bound(cli, project):
    (project / "r.yaml").write_text("version: 1\napp: google/gemini-2-5-flash-image@57fbd965\nmatrix:\n"
                                    "  s: [a, b]\ninput:\n  prompt: '{{ s }}'\n  num_images: 2\n"
                                    "budget:\n  max_usd: 0.30\n", encoding="utf-8")
    result = cli("plan", "r.yaml", "--json")
    assert result.code == 3  # typically $0.156, but up to $0.48248: over the cap
    doc = json.loads(result.out)
    assert doc["totals"]["cost_usd"] == "0.48248" and doc["totals"]["cost_low_usd"] == "0.1548"
    assert doc["price"]["confidence"] == "range"
    assert (doc["price"]["min_usd_per_unit"], doc["price"]["max_usd_per_unit"]) == ("0.0387", "0.12062")
    assert doc["budget"] == {"max_usd": "0.30", "within": False, "over_usd": "0.18248"}


def test_check_counts_an_app_the_service_does_not_have_as_stale(cli, project):
    from tests_support import TEST_LIMITS

    from kling_pipeline.emulator import EmulatorConfig, EmulatorServer

    with EmulatorServer(EmulatorConfig(apps=("klingai/video-o1",), limits=TEST_LIMITS)) as emu:
        result = cli("schema", "pull", "--check", "--base-url", emu.base_url)
    assert result.code == 1
    assert result.out.splitlines() == [
        *(f"{app}: STALE — the service has no app '{app}' (GET /apps/{app} answered 404); check its name on "
          "inference.sh" for app in ("elevenlabs/sound-effects", "elevenlabs/tts", "google/gemini-2-5-flash-image")),
        "klingai/image-o1: current (version 0pbaxv40 in the bundled data)",
        "klingai/video-o1: current (version ef28809a in the bundled data)",
        "schema check: 3 of 5 apps stale; `kling-pipeline schema pull APP` updates one",
    ]
