"""`run` end to end over loopback against the emulator: the everyday paths."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import TEST_KEY
from helpers import charges_per_prompt, completed_outputs_intact, manifest, records

from kling_pipeline.emulator import Faults


def test_run_downloads_every_image_with_provenance_and_charges_each_job_once(cli, emulator, sweep):
    emu = emulator()
    path = sweep(6)
    result = cli("run", str(path), "--base-url", emu.base_url)
    assert result.code == 0, result.err
    out = path.parent / "out"
    assert completed_outputs_intact(out) == 6
    ledger = emu.ledger()
    assert ledger["total_microcents"] == 6 * 2_800_000
    assert set(charges_per_prompt(ledger).values()) == {1}
    side = json.loads(next(out.glob("*.png.json")).read_text())
    assert side["app"] == "klingai/image-o1@0pbaxv40"
    assert side["input"]["aspect_ratio"] == "1:1"
    assert side["billed_usd"] == "0.028"
    assert side["recipe"].endswith("r.yaml")
    assert "run: 6 completed" in result.err
    assert "spend: $0.168 this run; $0.168 settled + $0.00 unresolved in total of the $10.00 cap" in result.err


def test_second_run_has_nothing_to_do_and_sends_no_request(cli, emulator, sweep):
    emu = emulator()
    path = sweep(3)
    assert cli("run", str(path), "--base-url", emu.base_url).code == 0
    tasks_before = len(emu.tasks())
    again = cli("run", str(path), "--base-url", emu.base_url)
    assert again.code == 0
    assert "nothing to do: 3 jobs done" in again.err
    assert len(emu.tasks()) == tasks_before


def test_changing_the_recipe_runs_only_the_new_jobs(cli, emulator, sweep):
    emu = emulator()
    path = sweep(3)
    assert cli("run", str(path), "--base-url", emu.base_url).code == 0
    sweep(5)  # the same file, two more subjects
    result = cli("run", str(path), "--base-url", emu.base_url)
    assert result.code == 0, result.err
    assert "run: 2 completed, 3 done earlier" in result.err
    assert set(charges_per_prompt(emu.ledger()).values()) == {1}
    assert len(emu.ledger()["charges"]) == 5


def test_budget_cap_stops_submitting_reports_what_was_not_run_and_exits_3(cli, emulator, sweep):
    emu = emulator()
    path = sweep(10, budget="0.10", concurrency=2)  # 3 jobs fit ($0.084), the 4th would make $0.112
    result = cli("run", str(path), "--base-url", emu.base_url)
    assert result.code == 3, result.err
    assert emu.ledger()["total_microcents"] == 3 * 2_800_000
    assert "budget stop: 7 jobs not run (would cost $0.196)" in result.err
    # Resuming does not reset the budget: nothing more is spent.
    again = cli("run", str(path), "--base-url", emu.base_url)
    assert again.code == 3
    assert emu.ledger()["total_microcents"] == 3 * 2_800_000
    # A higher cap on the command line does not win over the recipe's lower one...
    assert cli("run", str(path), "--base-url", emu.base_url, "--budget", "5").code == 3
    # ...but a lower one does.
    path.write_text(path.read_text().replace("max_usd: 0.10", "max_usd: 0.20"))
    lower = cli("run", str(path), "--base-url", emu.base_url, "--budget", "0.15")
    assert lower.code == 3
    assert emu.ledger()["total_microcents"] == 5 * 2_800_000


def test_json_events_are_one_object_per_line(cli, emulator, sweep):
    emu = emulator()
    path = sweep(2)
    result = cli("run", str(path), "--base-url", emu.base_url, "--json")
    assert result.code == 0
    events = [json.loads(line) for line in result.out.splitlines()]
    finished = [e for e in events if e["event"] == "finished"]
    assert sorted(e["status"] for e in finished) == ["completed", "completed"]
    assert {e["cost_usd"] for e in finished} == {"0.028"}
    assert all(e["images"] and e["images"][0].endswith(".png") for e in finished)


def test_the_api_key_is_never_written_anywhere(cli, emulator, sweep):
    emu = emulator(response_lost_rate=0.3, index_lag=0.1, stream_cut_rate=0.3)
    path = sweep(6)
    result = cli("run", str(path), "--base-url", emu.base_url, "--reconcile-window", "3", "--json")
    assert result.code == 0, result.err
    assert TEST_KEY not in result.out + result.err
    for file in (path.parent / "out").rglob("*"):
        if file.is_file():
            assert TEST_KEY.encode() not in file.read_bytes(), file


def test_a_missing_api_key_is_a_clear_error(cli, sweep, monkeypatch):
    monkeypatch.delenv("INFERENCE_API_KEY")
    path = sweep(1)
    result = cli("run", str(path))
    assert result.code == 2
    assert result.err.endswith("error: no API key: export INFERENCE_API_KEY (or INFERENCE_API_KEY_FILE, a file only "
                               "you can read), or give a profile a key_file (see docs/config.md), or pass --emulator "
                               "to try the sweep against the bundled emulator\n")


def test_a_refused_key_stops_the_run_with_exit_2_before_anything_is_written(cli, sweep):
    from kling_pipeline.emulator import EmulatorConfig, EmulatorServer, Latency

    with EmulatorServer(EmulatorConfig(latency=Latency.fixed(0.05), api_key="the-right-key")) as emu:
        path = sweep(4, concurrency=1)
        result = cli("run", str(path), "--base-url", emu.base_url)
        assert result.code == 2
        # the pre-flight read of the app is the first call: it stops the run, nothing is reserved or sent
        assert result.err == ("error: app klingai/image-o1: the API key was refused (HTTP 401); "
                              "check INFERENCE_API_KEY\n")
        assert emu.ledger()["total_microcents"] == 0
        assert emu.limit_stats()["runs"]["allowed"] == 0
        assert not (path.parent / "out" / "manifest.jsonl").exists()


def test_a_dead_endpoint_fails_cleanly_without_traceback(cli, sweep):
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    path = sweep(2, concurrency=1)
    result = cli("run", str(path), "--base-url", f"http://127.0.0.1:{port}", "--connect-grace", "1")
    assert result.code == 1
    assert "without reaching the API" in result.err
    assert "Traceback" not in result.err
    assert "run: 0 completed, 2 not run" in result.err  # not "failed": nothing was sent, a re-run sends them
    assert "failed" not in result.err
    state = manifest(path.parent / "out")
    assert {j.state for j in state} == {"not_created"}  # nothing could have been created: no money at risk
    assert state.reserved == 0


def test_two_runs_on_one_output_directory_are_refused(cli, emulator, sweep):
    from kling_pipeline.store.lock import OutputLock

    emu = emulator()
    path = sweep(1)
    with OutputLock(path.parent / "out"):
        result = cli("run", str(path), "--base-url", emu.base_url)
    assert result.code == 2
    assert "is in use by another kling-pipeline run" in result.err
    assert emu.tasks() == []


def test_a_truncated_last_manifest_line_is_tolerated(cli, emulator, sweep):
    emu = emulator()
    path = sweep(2)
    assert cli("run", str(path), "--base-url", emu.base_url).code == 0
    mf = path.parent / "out" / "manifest.jsonl"
    with mf.open("ab") as fh:
        fh.write(b'{"t":"intent","key":"abc","inp')  # a write cut by kill -9
    sweep(3)
    result = cli("run", str(path), "--base-url", emu.base_url)
    assert result.code == 0, result.err
    assert mf.read_bytes().endswith(b"\n")
    assert len(records(path.parent / "out", "done")) == 3


def test_failed_jobs_are_reported_and_retried_only_when_asked(cli, emulator, sweep):
    emu = emulator(task_failure_rate=1.0)
    path = sweep(2)
    first = cli("run", str(path), "--base-url", emu.base_url)
    assert first.code == 1
    assert "run: 0 completed, 2 failed" in first.err
    emu.set_faults(Faults())
    again = cli("run", str(path), "--base-url", emu.base_url)
    assert again.code == 1
    assert "2 failed or unknown left alone (--retry-failed / --retry-unknown)" in again.err
    retried = cli("run", str(path), "--base-url", emu.base_url, "--retry-failed")
    assert retried.code == 0, retried.err
    assert completed_outputs_intact(path.parent / "out") == 2
    assert len(emu.ledger()["charges"]) == 2  # failed tasks were not billed by the service


def test_reference_images_are_uploaded_once_per_content(cli, emulator, recipe, tmp_path):
    from tests_support import write_png

    write_png(tmp_path / "ref.png", 400, 400)
    emu = emulator()
    path = recipe("""
        version: 1
        app: klingai/image-o1@0pbaxv40
        matrix:
          style: [a, b, c]
        input:
          prompt: "{{ style }}"
          image: ref.png
        output: {dir: out}
    """)
    assert cli("run", str(path), "--base-url", emu.base_url).code == 0
    uploads = records(tmp_path / "out", "upload")
    assert len(uploads) == 1
    intents = records(tmp_path / "out", "intent")
    assert {r["input"]["image"] for r in intents} == {uploads[0]["uri"]}
    assert all(r["files"]["image"]["sha256"] == uploads[0]["sha256"] for r in intents)


def test_run_on_an_invalid_recipe_sends_nothing_and_exits_2(cli, emulator, recipe):
    emu = emulator()
    path = recipe("""
        version: 1
        app: klingai/image-o1@0pbaxv40
        input:
          prompt: hi
        output:
          dir: out
          filename: "../../escape"
    """)
    result = cli("run", str(path), "--base-url", emu.base_url)
    assert result.code == 2
    assert "leaves the output directory" in result.err
    assert emu.tasks() == []
    assert not (Path(path).parent / "out").exists()


def test_a_reference_image_changed_after_planning_fails_its_job_without_sending(emulator, recipe, tmp_path):
    import io

    import anyio
    from tests_support import write_png

    from kling_pipeline.api.client import Secret
    from kling_pipeline.core.planning import plan_file
    from kling_pipeline.run.context import RunOptions
    from kling_pipeline.run.session import run_plan
    from kling_pipeline.views.progress import Counters, PlainEvents

    write_png(tmp_path / "ref.png", 400, 400)
    emu = emulator()
    path = recipe("""
        version: 1
        app: klingai/image-o1@0pbaxv40
        input:
          prompt: "a ref"
          image: ref.png
        output: {dir: out}
    """)
    p = plan_file(path)
    write_png(tmp_path / "ref.png", 400, 400, rgb=(1, 2, 3))  # edited after the plan was made
    summary = anyio.run(lambda: run_plan(p, base_url=emu.base_url, key=Secret("k"), options=RunOptions(),
                                         events=PlainEvents(io.StringIO(), Counters(1))))
    [result] = summary.results
    assert result.status == "failed"
    ref = (tmp_path / "ref.png").resolve()
    assert result.error == f"{ref} changed since the plan was made; run again to plan with it"
    assert emu.tasks() == []
    assert summary.ledger is not None and summary.ledger.reserved == 0
