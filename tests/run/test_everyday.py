"""Everyday commands end to end against the emulator: run history, the summary event, key files
and profiles, doctor, prune, validate --json and plan --json's requests."""

from __future__ import annotations

import json
import re
import textwrap

from conftest import TEST_KEY
from helpers import records
from tests_support import write_png

from kling_pipeline.emulator import EmulatorConfig, EmulatorServer, Latency
from kling_pipeline.store.records import DoneRecord, RunRecord, encode


def summary_of(out: str) -> dict:
    events = [json.loads(line) for line in out.splitlines()]
    assert [e["event"] for e in events].count("summary") == 1
    last = events[-1]
    assert last["event"] == "summary"
    del last["time"]
    return last


def test_runs_lists_every_run_and_status_shows_the_last_ones(cli, emulator, sweep):
    emu = emulator()
    path = sweep(4, budget="0.06", concurrency=1)
    out = path.parent / "out"
    first = cli("run", str(path), "--base-url", emu.base_url, "--no-report")
    assert first.code == 3
    path.write_text(path.read_text().replace("max_usd: 0.06", "max_usd: 1"))
    assert cli("run", str(path), "--base-url", emu.base_url, "--no-report").code == 0
    doc = json.loads(cli("runs", str(out), "--json").out)
    assert (doc["format"], doc["out_dir"], doc["manifest"], doc["total"]) == ("kling-pipeline.runs/1", str(out),
                                                                              "manifest.jsonl", 2)
    one, two = doc["runs"]
    assert {k: one[k] for k in ("number", "mode", "exit_code", "stop", "error", "jobs", "images", "billed_usd",
                                "settled_usd", "not_run_usd", "cap_usd", "end_recorded", "command")} == {
        "number": 1, "mode": "run", "exit_code": 3, "stop": "budget", "error": None,
        "jobs": {"completed": 2, "not_run": 2}, "images": 2, "billed_usd": "0.056", "settled_usd": "0.056",
        "not_run_usd": "0.056", "cap_usd": "0.06", "end_recorded": True,
        "command": ["run", str(path), "--base-url", emu.base_url, "--no-report"]}
    assert (two["exit_code"], two["jobs"], two["billed_usd"], two["settled_usd"]) == (
        0, {"completed": 2}, "0.056", "0.112")
    assert one["seconds"] > 0 and one["started_at"] <= one["ended_at"] <= two["started_at"]
    when = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d"
    lines = cli("runs", str(path)).out.splitlines()
    assert lines[0] == f"{out / 'manifest.jsonl'}: 2 runs recorded"
    assert re.fullmatch(r"  #  started +took +mode +exit +jobs +images +billed +command", lines[1])
    assert re.fullmatch(rf"  1  {when}  \d+:\d\d  run +3  2 done · 0 failed · 2 not run +2  \$0\.056  run "
                        rf"{re.escape(str(path))} --base-url {re.escape(emu.base_url)} --no-report", lines[2])
    assert re.fullmatch(rf"  2  {when}  \d+:\d\d  run +0  2 done · 0 failed · 0 not run +2  \$0\.056  run .*",
                        lines[3])
    assert len(lines) == 4
    status = cli("status", str(path)).out.splitlines()
    assert status[4] == "  last runs:"
    assert re.fullmatch(rf"    #1 {when} · took \d+:\d\d · run · exit 3 · 2 done · 0 failed · 2 not run · 2 images · "
                        r"\$0\.056 billed", status[5])
    assert status[6].startswith("    #2 ")
    assert json.loads(cli("status", str(path), "--json").out)["last_runs"][1]["exit_code"] == 0


def test_a_run_that_left_no_end_is_read_from_its_records(cli, emulator, sweep):
    emu = emulator()
    path = sweep(2)
    out = path.parent / "out"
    assert cli("run", str(path), "--base-url", emu.base_url, "--no-report").code == 0
    with (out / "manifest.jsonl").open("ab") as fh:  # a run killed after one job: no run_end
        fh.write(encode(RunRecord("killed", str(path), at=2_000_000_000.0)))
        fh.write(encode(DoneRecord("k" * 64, "x", "t", "failed", 2_800_000, "boom", at=2_000_000_005.0)))
    doc = json.loads(cli("runs", str(out), "--json", "--last", "1").out)
    assert doc["total"] == 2
    (run,) = doc["runs"]
    assert {k: run[k] for k in ("number", "run", "end_recorded", "exit_code", "seconds", "jobs", "billed_usd",
                                "command")} == {"number": 2, "run": "killed", "end_recorded": False,
                                                "exit_code": None, "seconds": 5.0, "jobs": {"failed": 1},
                                                "billed_usd": "0.028", "command": None}
    lines = cli("runs", str(out), "--last", "1").out.splitlines()
    assert lines[0] == f"{out / 'manifest.jsonl'}: 2 runs recorded (the last 1 shown)"
    assert lines[-1] == ("  ? run 2: no end recorded: still running, killed or crashed, or run by a version before "
                         "run history")


def test_run_json_ends_with_one_summary_event(cli, emulator, sweep):
    emu = emulator()
    path = sweep(4, budget="0.06", concurrency=1)
    out = path.parent / "out"
    result = cli("run", str(path), "--base-url", emu.base_url, "--json")
    assert result.code == 3
    assert summary_of(result.out) == {
        "event": "summary", "exit_code": 3, "stop_reason": "budget", "error": None,
        "jobs": {"completed": 2, "failed": 0, "rejected": 0, "unknown": 0, "cancelled": 0, "interrupted": 0,
                 "not_run": 2, "submitted": 0, "done_earlier": 0, "failed_left": 0, "unknown_left": 0},
        "images": 2,
        "spend": {"this_run_usd": "0.056", "settled_usd": "0.056", "reserved_usd": "0.00", "cap_usd": "0.06",
                  "not_run_usd": "0.056"},
        "manifest": str(out / "manifest.jsonl"), "report": str(out / "report.html")}
    idle = cli("run", str(path), "--base-url", emu.base_url, "--json", "--only", "subject=s0")
    assert idle.code == 0
    assert summary_of(idle.out)["jobs"]["done_earlier"] == 1
    assert len(idle.out.splitlines()) == 1
    path.write_text(path.read_text().replace("input:", "inptu:"))
    broken = cli("run", str(path), "--base-url", emu.base_url, "--json")
    assert broken.code == 2
    end = summary_of(broken.out)
    assert (end["exit_code"], end["jobs"]["completed"], end["spend"]["settled_usd"]) == (2, 0, None)
    assert end["error"].splitlines()[0] == (f"{path}:1:1: missing required key 'input' (the request template, e.g. "
                                            "'input: {prompt: ...}')")


def test_a_key_file_others_can_read_is_refused_and_a_private_one_runs(cli, sweep, monkeypatch, tmp_path):
    monkeypatch.delenv("INFERENCE_API_KEY")
    key = tmp_path / "inference.key"
    key.write_text("inf_from_a_file_0123456789\n")
    key.chmod(0o644)
    monkeypatch.setenv("INFERENCE_API_KEY_FILE", str(key))
    path = sweep(2)
    with EmulatorServer(EmulatorConfig(latency=Latency.fixed(0.05), api_key="inf_from_a_file_0123456789")) as emu:
        refused = cli("run", str(path), "--base-url", emu.base_url)
        assert (refused.code, refused.out) == (2, "")
        assert refused.err == (f"error: $INFERENCE_API_KEY_FILE: {key}: permissions 0644 let the group and others at "
                               f"the key; refused. Run: chmod 600 {key}\n")
        key.chmod(0o600)
        result = cli("run", str(path), "--base-url", emu.base_url, "--no-report")
        assert result.code == 0, result.err
        assert emu.ledger()["total_microcents"] == 2 * 2_800_000
    for file in (path.parent / "out").rglob("*"):
        assert b"inf_from_a_file" not in file.read_bytes()


def test_a_named_profile_gives_the_base_url_and_key_over_the_environment(cli, sweep, monkeypatch, tmp_path):
    key = tmp_path / "staging.key"
    key.write_text("inf_staging_key\n")
    key.chmod(0o600)
    path = sweep(2)
    with EmulatorServer(EmulatorConfig(latency=Latency.fixed(0.05), api_key="inf_staging_key")) as emu:
        config = tmp_path / "kp.yaml"
        config.write_text(f"profiles:\n  staging:\n    base_url: {emu.base_url}\n    key_file: staging.key\n")
        monkeypatch.setenv("KLING_PIPELINE_CONFIG", str(config))
        result = cli("run", str(path), "--profile", "staging", "--no-report")  # $INFERENCE_API_KEY is TEST_KEY
        assert result.code == 0, result.err
        assert emu.ledger()["total_microcents"] == 2 * 2_800_000
        unknown = cli("run", str(path), "--profile", "prod")
        assert (unknown.code, unknown.err) == (2, f"error: --profile: no profile 'prod' in {config}; profiles: "
                                                  "staging\n")
        store = tmp_path / "store"  # schema pull reads the service named by the profile, with its key
        pulled = cli("schema", "pull", "klingai/video-o1", "--profile", "staging", "--schemas", str(store))
        assert pulled.code == 0, pulled.err
        assert list(store.rglob("*.json")) and emu.ledger()["total_microcents"] == 2 * 2_800_000


def test_a_profile_caps_concurrency_and_sets_the_rate_unless_the_flags_say(recipe, tmp_path):
    import argparse

    from kling_pipeline import plan_file
    from kling_pipeline.cli._main import build_parser
    from kling_pipeline.cli._run import _options
    from kling_pipeline.config.profiles import Profile

    p = plan_file(recipe("version: 1\napp: klingai/image-o1\nconcurrency: 12\ninput: {prompt: x}\n"))
    args = build_parser().parse_args(["run", "recipe.yaml", "--no-cache"])
    capped = _options(args, p, Profile("work", concurrency=4, rate=0.5))
    assert (capped.concurrency, capped.rate) == (4, 0.5)
    assert _options(args, p, Profile("big", concurrency=64)).concurrency == 12
    flags = argparse.Namespace(**{**vars(args), "concurrency": 32, "rate": 2.0})
    assert (_options(flags, p, Profile("work", concurrency=4, rate=0.5)).concurrency, 2.0) == (32, 2.0)


def doctor_lines(out: str) -> list[tuple[str, str]]:
    return [(line[:4].strip(), line[6:].split(":", 1)[0]) for line in out.splitlines()[:-1]]


def test_doctor_finds_a_healthy_setup_without_spending(cli, emulator, sweep):
    emu = emulator()
    path = sweep(3)
    result = cli("doctor", str(path), "--base-url", emu.base_url)
    assert result.code == 0, result.out
    assert doctor_lines(result.out) == [("ok", "config"), ("ok", str(path)), ("ok", "key"), ("ok", "api"),
                                        ("ok", "key accepted"), ("ok", "app klingai/image-o1@0pbaxv40"),
                                        ("ok", "prices of klingai/image-o1"), ("ok", "rate limits")]
    lines = result.out.splitlines()
    assert lines[1] == f"ok    {path}: valid: 3 jobs, $0.084"
    assert lines[2] == f"ok    key: from $INFERENCE_API_KEY; base URL {emu.base_url} (from --base-url)"
    assert lines[6] == ("ok    prices of klingai/image-o1: 1 image a task: table $0.028, service $0.028 (exact) — "
                        "agrees")
    assert re.fullmatch(r"ok    rate limits: the answers carry X-RateLimit-\* headers: \d+ reads a window, \d+ left",
                        lines[7])
    assert lines[-1] == "healthy"
    assert emu.ledger()["total_microcents"] == 0 and emu.limit_stats()["runs"]["allowed"] == 0
    assert TEST_KEY not in result.out + result.err


def test_doctor_fails_on_a_refused_key_a_missing_version_a_stale_price_and_no_api(cli, emulator, recipe, sweep):
    path = sweep(1)
    with EmulatorServer(EmulatorConfig(latency=Latency.fixed(0.05), api_key="the-right-key")) as emu:
        refused = cli("doctor", "--base-url", emu.base_url, "--json")
    assert refused.code == 1
    doc = json.loads(refused.out)
    assert doc["healthy"] is False
    assert [c for c in doc["checks"] if c["status"] == "fail"] == [
        {"check": "key accepted", "status": "fail",
         "detail": "list tasks: the API key was refused (HTTP 401); check INFERENCE_API_KEY"}]
    video = recipe("version: 1\napp: klingai/video-o1@ef28809a\ninput: {prompt: a mug turning, aspect_ratio: '16:9'}\n",
                   "video.yaml")
    with EmulatorServer(EmulatorConfig(latency=Latency.fixed(0.05), apps=())) as emu:  # image-o1 only
        emu.edit_app("klingai/image-o1", pricing={"usd_per_unit": "0.03"})
        result = cli("doctor", str(path), str(video), "--base-url", emu.base_url)
    assert result.code == 1
    fails = [line for line in result.out.splitlines() if line.startswith("FAIL")]
    assert fails == [
        "FAIL  prices of klingai/image-o1: 1 image a task: table $0.028, service $0.03 (exact) — DIFFERS",
        "FAIL  app klingai/video-o1@ef28809a: the service has no app 'klingai/video-o1' (GET "
        "/apps/klingai/video-o1 answered 404); check the recipe's app — nothing was sent"]
    assert result.out.splitlines()[-1] == "NOT healthy: 2 checks failed"
    closed = cli("doctor", "--base-url", "http://127.0.0.1:9")
    assert closed.code == 1
    assert [line[:4] for line in closed.out.splitlines()] == ["ok  ", "ok  ", "FAIL", "skip", "NOT "]
    emulated = cli("doctor", str(path), "--emulator", "--json")
    assert (emulated.code, json.loads(emulated.out)["healthy"]) == (0, True)


def test_prune_removes_only_what_jobs_no_longer_in_the_recipe_saved_and_keeps_their_spend(cli, emulator, recipe):
    emu = emulator()
    text = textwrap.dedent("""\
        version: 1
        name: p
        app: klingai/image-o1@0pbaxv40
        matrix:
          subject: [a, b, c]
        input:
          prompt: "a photo of {{ subject }}"
        output:
          dir: out
          filename: "{{ subject }}"
        """)
    path = recipe(text)
    out = path.parent / "out"
    assert cli("run", str(path), "--base-url", emu.base_url, "--no-report").code == 0
    path.write_text(text.replace("[a, b, c]", "[a, b]").replace("a photo", "a drawing"))
    assert cli("run", str(path), "--base-url", emu.base_url).code == 0  # a.png and b.png are the new jobs' now
    manifest = (out / "manifest.jsonl").read_bytes()
    spend = json.loads(cli("status", str(path), "--json").out)["spend"]
    listed = cli("prune", str(path))
    assert listed.code == 0
    lines = listed.out.splitlines()
    assert lines[0] == f"{out}: 3 jobs no longer in {path} have files here"
    assert sorted(lines[1:7:2]) == sorted(f"  {s}  {k}  completed  $0.028  {files}" for s, k, files in [
        ("a", lines[1].split()[1], "nothing to remove"), ("b", lines[3].split()[1], "nothing to remove"),
        ("c", lines[5].split()[1], "c.png, c.png.json")])
    assert lines[2] == "    kept a.png: a job of the recipe saved a file there too"
    assert re.fullmatch(r"would remove 2 files \(\d\.\d kB\); their spend \(\$0\.084\) stays in the manifest and "
                        "still counts against the budget cap", lines[-2])
    assert lines[-1] == f"run again with --yes to remove them: kling-pipeline prune {path} --yes"
    assert (out / "c.png").exists()
    removed = cli("prune", str(path), "--yes", "--json")
    doc = json.loads(removed.out)
    assert (doc["removed"], doc["totals"]["files"], doc["totals"]["billed_usd"]) == (True, 2, "0.084")
    assert sorted(p.name for p in out.iterdir() if p.is_file() and p.suffix in (".png", ".json")) == [
        "a.png", "a.png.json", "b.png", "b.png.json"]
    assert (out / "manifest.jsonl").read_bytes() == manifest  # append-only: nothing rewritten
    assert json.loads(cli("status", str(path), "--json").out)["spend"] == spend
    again = cli("prune", str(path)).out.splitlines()
    assert (again[0], again[-2], again[-1]) == (
        f"{out}: 2 jobs no longer in {path} have files here",
        f"  and 1 job no longer in {path} has no files left (spend $0.028, still counted against the cap)",
        "would remove 0 files (0.0 kB); their spend ($0.056) stays in the manifest and still counts against the "
        "budget cap")
    assert cli("run", str(path), "--base-url", emu.base_url).err.startswith("nothing to do: 2 jobs done")
    assert len(records(out, "run_end")) == 2


def test_validate_json_gives_each_recipe_its_jobs_or_its_errors(cli, recipe, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    recipe("version: 1\napp: klingai/image-o1@0pbaxv40\nmatrix: {s: [a, b]}\ninput: {prompt: '{{ s }}'}\n", "ok.yaml")
    recipe("version: 1\napp: klingai/image-o1@0pbaxv40\ninput: {prompt: x}\noutput: {filenme: x}\n", "bad.yaml")
    result = cli("validate", "ok.yaml", "bad.yaml", "--json")
    assert (result.code, result.err) == (2, "")
    assert json.loads(result.out) == {"format": "kling-pipeline.validate/1", "valid": False, "recipes": [
        {"file": "ok.yaml", "valid": True, "jobs": 2, "cost_usd": "0.056", "errors": [], "error_total": 0,
         "warnings": []},
        {"file": "bad.yaml", "valid": False, "jobs": None, "cost_usd": None, "error_total": 1, "warnings": [],
         "errors": [{"file": "bad.yaml", "line": 4, "col": 10, "combination": "",
                     "message": "unknown key 'filenme' in output; did you mean 'filename'? (allowed: dir, filename)"}]},
    ]}


def test_plan_json_shows_each_request_with_files_by_path_and_hash(cli, recipe, monkeypatch, tmp_path):
    import hashlib

    monkeypatch.chdir(tmp_path)
    (tmp_path / "refs").mkdir()
    png = write_png(tmp_path / "refs" / "mug.png", 400, 300)
    recipe("version: 1\napp: klingai/image-o1@0pbaxv40\nmatrix: {ratio: ['1:1', '4:3']}\n"
           "input: {prompt: 'a mug', image: refs/mug.png, aspect_ratio: '{{ ratio }}'}\n")
    result = cli("plan", "r.yaml", "--json")
    jobs = json.loads(result.out)["jobs"]
    shown = {"path": "refs/mug.png", "sha256": hashlib.sha256(png.read_bytes()).hexdigest(),
             "size": png.stat().st_size, "type": "image/png"}
    assert [j["request"] for j in jobs] == [{"prompt": "a mug", "image": shown, "aspect_ratio": "1:1"},
                                            {"prompt": "a mug", "image": shown, "aspect_ratio": "4:3"}]
    assert "request" not in json.loads(cli("plan", "r.yaml", "--json", "--no-requests").out)["jobs"][0]
