"""``kling-pipeline report RECIPE|OUTDIR``: whole outputs and exit codes."""

from __future__ import annotations

import argparse
import dataclasses
import io
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from kling_pipeline.cli import _main, main
from kling_pipeline.cli._exit import report as report_error
from kling_pipeline.cli._report import add_report_parser, report_after_run
from kling_pipeline.core.money import format_usd
from kling_pipeline.core.planning import plan_file

from .conftest import Sweep
from .site import read_site


@dataclass
class Result:
    code: int
    out: str
    err: str


def _subcommands(parser: argparse.ArgumentParser) -> argparse._SubParsersAction[argparse.ArgumentParser]:
    return next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))


def registered() -> bool:
    return "report" in _subcommands(_main.build_parser()).choices


def report_cli(*argv: str) -> Result:
    """``kling-pipeline report ARGV`` in-process: through ``main`` once the command is registered
    there, until then through the project's parser with ``report`` added, mapped to exit codes
    like ``main`` does."""
    out, err = io.StringIO(), io.StringIO()
    if registered():
        return Result(main(["report", *argv], out=out, err=err), out.getvalue(), err.getvalue())
    parser = _main.build_parser()
    add_report_parser(_subcommands(parser))
    try:
        args = parser.parse_args(["report", *argv])
        code = args.func(args, out, err)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 2
    except Exception as exc:
        code = report_error(exc, err)
    return Result(code, out.getvalue(), err.getvalue())


@pytest.fixture
def outdir(gallery: Sweep, tmp_path: Path) -> Path:
    """A copy of the gallery sweep's output directory (tests write pages into it)."""
    copy = tmp_path / "out"
    shutil.copytree(gallery.out_dir, copy, ignore=shutil.ignore_patterns("report.html", "report"))
    return copy


def counts(gallery: Sweep, with_plan: bool) -> tuple[int, int, int, int]:
    states = [gallery.state.jobs[j.key].state if j.key in gallery.state.jobs else "none" for j in gallery.plan.jobs]
    done, failed, not_run = states.count("completed"), states.count("failed"), states.count("none")
    assert done + failed + not_run == len(states)
    return done + failed + (not_run if with_plan else 0), done, failed, not_run


def images(gallery: Sweep) -> int:
    """Distinct image contents of the sweep (one thumbnail each)."""
    return len({o.sha256 for j in gallery.state.jobs.values() if j.state == "completed" and j.done is not None
                for o in j.done.outputs})


def test_report_of_an_output_directory_reads_the_manifest_alone(gallery: Sweep, outdir: Path) -> None:
    result = report_cli(str(outdir))
    jobs, done, failed, _ = counts(gallery, with_plan=False)
    billed = format_usd(gallery.state.settled)
    planned = format_usd(2_800_000 * jobs)
    assert (result.code, result.err) == (0, "")
    assert result.out == (f"report: {outdir}/report.html — {jobs} jobs ({done} done, {failed} failed); "
                          f"{done} images; billed {billed} of {planned} planned\n"
                          f"  2 pages (2 written, 0 unchanged); thumbnails: {images(gallery)} made, 0 reused\n")
    assert (outdir / "report.html").is_file()
    assert sorted(p.name for p in (outdir / "report").glob("*.html")) == ["grid-0001.html", "problems-0001.html"]
    again = report_cli(str(outdir))
    assert again.out.endswith(f"\n  2 pages (0 written, 2 unchanged); thumbnails: 0 made, {images(gallery)} reused\n")


def test_report_of_a_recipe_shows_the_jobs_not_run_too(gallery: Sweep, outdir: Path) -> None:
    result = report_cli(str(gallery.recipe), "--out", str(outdir), "--rows", "ratio", "--cols", "subject")
    jobs, done, failed, not_run = counts(gallery, with_plan=True)
    assert (result.code, result.err) == (0, "")
    assert result.out == (f"report: {outdir}/report.html — {jobs} jobs ({done} done, {failed} failed, "
                          f"{not_run} not run); {done} images; billed {format_usd(gallery.state.settled)} of "
                          f"{format_usd(gallery.plan.total_cost)} planned\n"
                          f"  2 pages (2 written, 0 unchanged); thumbnails: {images(gallery)} made, 0 reused\n")
    site = read_site(outdir / "report.html")
    assert [th.text for th in site.sections()[0].all("th.row")] == ["1:1", "16:9"]
    assert len(site.jobs()) == jobs


def test_output_file_elsewhere(gallery: Sweep, outdir: Path, tmp_path: Path) -> None:
    result = report_cli(str(outdir), "-o", str(tmp_path / "site" / "g.html"))
    assert result.code == 0 and result.out.startswith(f"report: {tmp_path}/site/g.html — ")
    html = (tmp_path / "site" / "g" / "grid-0001.html").read_text(encoding="utf-8")
    assert 'href="../../out/' in html and 'src="./thumbs/' in html
    assert not (outdir / "report.html").exists() and not (outdir / "report").exists()


def test_an_unknown_axis_is_a_usage_error_listing_the_axes(outdir: Path) -> None:
    result = report_cli(str(outdir), "--cols", "colour")
    assert (result.code, result.out) == (2, "")
    assert result.err == "error: --cols colour: no such axis; the axes are: subject, style, ratio\n"
    assert not (outdir / "report.html").exists() and not (outdir / "report").exists()
    assert not list(outdir.glob(".report*"))


def test_the_same_axis_twice_is_a_usage_error(outdir: Path) -> None:
    result = report_cli(str(outdir), "--rows", "style", "--cols", "style")
    assert (result.code, result.err) == (2, "error: --rows and --cols both name style; choose two different axes\n")


def test_a_directory_without_a_manifest_is_a_usage_error(tmp_path: Path) -> None:
    result = report_cli(str(tmp_path))
    assert (result.code, result.out) == (2, "")
    assert result.err == (f"error: {tmp_path}: no manifest.jsonl here; give a recipe file or the output directory "
                          "of a kling-pipeline run\n")


def test_a_missing_recipe_is_a_recipe_error(tmp_path: Path) -> None:
    result = report_cli(str(tmp_path / "nope.yaml"))
    assert (result.code, result.out) == (2, "")
    assert result.err == f"{tmp_path}/nope.yaml: no such recipe file\n1 error; nothing was sent\n"


def test_out_with_a_directory_is_a_usage_error(outdir: Path) -> None:
    result = report_cli(str(outdir), "--out", str(outdir))
    assert (result.code, result.err) == (
        2, "error: --out goes with a RECIPE; with an output directory, give just the directory\n")


def test_report_after_run_writes_the_page_and_says_where(gallery: Sweep, tmp_path: Path) -> None:
    err = io.StringIO()
    path = report_after_run(gallery.plan, err)
    assert path == gallery.out_dir / "report.html" and path.is_file()
    assert err.getvalue() == f"report: {path}\n"


def test_report_after_run_only_warns_when_the_page_cannot_be_written(gallery: Sweep, outdir: Path) -> None:
    (outdir / "report.html").mkdir()  # in the way
    err = io.StringIO()
    assert report_after_run(dataclasses.replace(gallery.plan, output_dir=outdir), err) is None
    assert err.getvalue() == (f"report: not written: {outdir}/report.html: cannot write the report: "
                              "Is a directory\n")
    assert [p.name for p in outdir.iterdir() if p.name.startswith(".report")] == []
    assert not (outdir / "report").exists()


def test_the_report_command_is_registered_in_the_cli(outdir: Path) -> None:
    if not registered():
        pytest.skip("kling_pipeline/cli/_main.py does not register `report` yet (add_report_parser)")
    out, err = io.StringIO(), io.StringIO()
    assert main(["report", str(outdir)], out=out, err=err) == 0
    assert out.getvalue().startswith(f"report: {outdir}/report.html — ")


def test_report_after_a_run_narrowed_by_only_shows_the_whole_sweep(gallery: Sweep, outdir: Path) -> None:
    narrowed = plan_file(gallery.recipe, only={"style": {"watercolor"}}, out_dir=outdir)
    assert narrowed.filtered_out and len(narrowed.jobs) == len(gallery.plan.jobs) // 2
    path = report_after_run(narrowed, io.StringIO())
    assert path is not None
    site = read_site(path)
    assert len(site.jobs()) == len(gallery.plan.jobs) and not site.others
