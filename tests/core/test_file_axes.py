"""File axes: ``ref: {files: GLOB}``, a folder of reference images swept like a list of values."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from kling_pipeline import load_recipe
from kling_pipeline.core.fileaxes import FileMatch, GlobProblem, id_part, list_files
from kling_pipeline.core.matrix import expand

from .conftest import WriteRecipe
from .util import HEAD, cli, errors, ok, png, warnings

ROOT = Path(__file__).resolve().parents[2]


def sweep(glob: str = "refs/*.png", extra: str = "", styles: str = "[watercolor, noir]") -> str:
    return (HEAD + f"matrix:\n  ref: {{files: {glob!r}}}\n  style: {styles}\n{extra}"
            "input:\n  prompt: 'Restyle as {{ style }}'\n  image: '{{ ref }}'\n")


def images(folder: Path, *names: str, size: int = 300) -> None:
    """Distinct PNGs (one size each: their bytes differ) under ``folder``."""
    for i, name in enumerate(names):
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(png(size + i, size))


def test_a_folder_sweep_over_the_shipped_refs(write: WriteRecipe, tmp_path: Path) -> None:
    shutil.copytree(ROOT / "recipes/refs", tmp_path / "refs")
    p = ok(write(sweep()))
    assert [j.id for j in p.jobs] == ["amber-portrait.png-watercolor", "amber-portrait.png-noir",
                                      "teal-square.png-watercolor", "teal-square.png-noir"]
    assert [p.render(j).request["image"] for j in p.jobs[::2]] == ["refs/amber-portrait.png", "refs/teal-square.png"]
    assert [p.render(j).files["image"].path for j in p.jobs[::2]] == [
        (tmp_path / "refs/amber-portrait.png").resolve(), (tmp_path / "refs/teal-square.png").resolve()]
    assert [(c.value, c.jobs) for c in p.breakdown()["ref"]] == [("amber-portrait.png", 2), ("teal-square.png", 2)]
    assert p.jobs[0].combination.label() == "[ref=amber-portrait.png, style=watercolor]"


def test_the_files_are_sorted_by_label_code_point_by_code_point(write: WriteRecipe, tmp_path: Path) -> None:
    images(tmp_path / "refs", "b.png", "B.png", "a10.png", "a2.png")
    p = ok(write(sweep(styles="[x]")))
    assert [j.combination.labels["ref"] for j in p.jobs] == ["B.png", "a10.png", "a2.png", "b.png"]


def test_recursive_glob_labels_are_paths_below_the_fixed_folders(write: WriteRecipe, tmp_path: Path) -> None:
    images(tmp_path / "refs", "top.png", "people/amber.png", "people/old/grey.png", "notes.txt.png")
    (tmp_path / "refs/people/readme.txt").write_text("not matched")
    images(tmp_path / "refs", ".hidden.png", ".cache/x.png", "people/.y.png")
    p = ok(write(sweep("refs/**/*.png", styles="[x]")))
    assert [(j.combination.labels["ref"], j.combination.values["ref"]) for j in p.jobs] == [
        ("notes.txt.png", "refs/notes.txt.png"), ("people/amber.png", "refs/people/amber.png"),
        ("people/old/grey.png", "refs/people/old/grey.png"), ("top.png", "refs/top.png")]


def test_a_dot_pattern_matches_hidden_files_and_double_star_alone_matches_every_file(tmp_path: Path) -> None:
    images(tmp_path / "refs", ".a.png", "b.png", "sub/c.png")
    (tmp_path / "r.yaml").touch()
    origin = str(tmp_path / "r.yaml")
    assert [m.label for m in list_files(origin, "refs/.*", 10)] == [".a.png"]
    assert [m.label for m in list_files(origin, "refs/**", 10)] == ["b.png", "sub/c.png"]
    assert [m.value for m in list_files(origin, "./refs//sub/*.png", 10)] == ["refs/sub/c.png"]
    assert list_files(origin, str(tmp_path / "refs/*.png"), 10) == [
        FileMatch(f"{tmp_path}/refs/b.png", "b.png")]


def test_double_star_does_not_follow_symlinked_folders(tmp_path: Path) -> None:
    images(tmp_path / "refs", "a.png")
    os.symlink(tmp_path / "refs", tmp_path / "refs/loop")  # a loop through a link
    images(tmp_path / "elsewhere", "far.png")
    os.symlink(tmp_path / "elsewhere", tmp_path / "refs/linked")
    os.symlink(tmp_path / "elsewhere/far.png", tmp_path / "refs/far-link.png")
    origin = str(tmp_path / "r.yaml")
    assert [m.label for m in list_files(origin, "refs/**/*.png", 10)] == ["a.png", "far-link.png"]
    # a part that names folders is followed, a link or not: it cannot loop
    assert [m.label for m in list_files(origin, "refs/*/far.png", 10)] == ["linked/far.png"]


def test_a_glob_is_relative_to_the_file_that_writes_it(write: WriteRecipe, tmp_path: Path) -> None:
    images(tmp_path / "shared/refs", "a.png")
    write("version: 1\nmatrix:\n  ref: {files: 'refs/*.png'}\n", "shared/base.yaml")
    path = write("extends: ../shared/base.yaml\napp: klingai/image-o1\ninput:\n  prompt: x\n  image: '{{ ref }}'\n",
                 "sweeps/r.yaml")
    p = ok(path)
    assert p.jobs[0].combination.values["ref"] == "refs/a.png"
    assert p.render(p.jobs[0]).files["image"].path == (tmp_path / "shared/refs/a.png").resolve()


def test_an_empty_glob_is_an_error_at_the_glob(write: WriteRecipe, tmp_path: Path) -> None:
    (tmp_path / "refs").mkdir()
    (tmp_path / "refs/a.jpg").write_bytes(b"")
    assert errors(write(sweep())) == ["r.yaml:4:16: matrix.ref.files: no file matches 'refs/*.png' (in refs)"]
    assert errors(write(sweep("nope/*.png"))) == [
        "r.yaml:4:16: matrix.ref.files: no file matches 'nope/*.png': there is no folder nope"]


@pytest.mark.parametrize(("axis", "message"), [
    ("{files: ''}", "4:16: matrix.ref.files: is empty (write a glob such as 'refs/*.png')"),
    ("{files: 'refs/'}", "4:16: matrix.ref.files: 'refs/' ends in '/': a folder is not a file (write 'refs/*' "
                         "for the files in it)"),
    ("{files: [a.png]}", "4:16: matrix.ref.files must be a string, got a list"),
    ("{file: 'refs/*.png'}", "4:9: unknown key 'file' in matrix axis 'ref'; did you mean 'files'?"),
    ("{files: 'refs/*.png', sort: name}", "4:30: unknown key 'sort' in matrix axis 'ref' (allowed: files)"),
    ("{name: a}", "4:8: matrix axis 'ref' must be a list of values, or {files: GLOB} for a set of files, got a "
                  "mapping"),
    ('{files: "a\\0b"}', "4:16: matrix.ref.files: cannot hold a NUL character"),
])
def test_a_file_axis_written_wrong(write: WriteRecipe, tmp_path: Path, axis: str, message: str) -> None:
    images(tmp_path / "refs", "a.png")
    path = write(HEAD + f"matrix:\n  ref: {axis}\ninput:\n  prompt: x\n  image: '{{{{ ref }}}}'\n")
    assert errors(path) == [f"r.yaml:{message}"]


def test_a_glob_matching_more_files_than_the_job_limit_is_refused(write: WriteRecipe, tmp_path: Path) -> None:
    images(tmp_path / "refs", *(f"{i}.png" for i in range(5)))
    message = ("r.yaml:4:16: matrix.ref.files: matches more than 4 files, the limit on jobs; narrow it, or raise "
               "the limit with --max-jobs N")
    assert errors(write(sweep()), max_jobs=4) == [message]
    assert cli("validate", "r.yaml", "--max-jobs", "4") == (2, "", message + "\n1 error in r.yaml; nothing was sent\n")
    # within the files' limit, the sweep's size is still counted before anything is expanded
    assert errors(write(sweep()), max_jobs=9) == [
        "r.yaml:3:1: the sweep makes 10 jobs (5 x 2 combinations), more than the limit of 9; narrow it, or raise the "
        "limit with --max-jobs N"]
    assert len(ok(write(sweep()), max_jobs=10).jobs) == 10


def test_a_glob_looking_at_too_many_names_stops(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import kling_pipeline.core.fileaxes as fileaxes

    monkeypatch.setattr(fileaxes, "MAX_NAMES", 3)
    images(tmp_path / "refs", "a.png", "b.jpg", "c.jpg", "d.jpg")
    with pytest.raises(GlobProblem, match="looks at more than 3 files and folders; narrow it"):
        list_files(str(tmp_path / "r.yaml"), "refs/*.png", 10)


def test_every_file_gets_the_reference_image_checks_at_the_glob(write: WriteRecipe, tmp_path: Path) -> None:
    images(tmp_path / "refs", "good.png")
    (tmp_path / "refs/cut.png").write_bytes(png(400, 400)[:60])
    (tmp_path / "refs/small.png").write_bytes(png(100, 100))
    os.mkfifo(tmp_path / "refs/pipe.png")
    assert errors(write(sweep(styles="[x]"))) == [
        "r.yaml:4:16: [ref=pipe.png, style=x] input.image: not a regular file: refs/pipe.png (a pipe or a device?)",
        "r.yaml:4:16: [ref=cut.png, style=x] input.image: refs/cut.png is a PNG cut short (its 'IDAT' chunk runs "
        "past the end of the file)",
        "r.yaml:4:16: [ref=small.png, style=x] input.image: refs/small.png is 100x100 px; width and height must be at "
        "least 300x300 px",
    ]


def test_adding_a_file_adds_only_its_jobs(write: WriteRecipe, tmp_path: Path) -> None:
    images(tmp_path / "refs", "b.png", "d.png")
    before = {j.id: j.key for j in ok(write(sweep())).jobs}
    images(tmp_path / "refs", "a.png", "c.png", "e.png", size=500)
    after = {j.id: j.key for j in ok(write(sweep())).jobs}
    assert len(after) == 10
    assert {k: after[k] for k in before} == before  # the same ids, the same keys
    assert sorted(set(after) - set(before)) == ["a.png-noir", "a.png-watercolor", "c.png-noir", "c.png-watercolor",
                                                "e.png-noir", "e.png-watercolor"]


def test_renaming_a_file_keeps_its_content_key(write: WriteRecipe, tmp_path: Path) -> None:
    images(tmp_path / "refs", "a.png", "b.png")
    keys = {j.id: j.key for j in ok(write(sweep())).jobs}
    os.rename(tmp_path / "refs/a.png", tmp_path / "refs/renamed.png")
    renamed = {j.id: j.key for j in ok(write(sweep())).jobs}
    assert renamed["renamed.png-noir"] == keys["a.png-noir"]
    assert set(renamed.values()) == set(keys.values())


def test_files_with_the_same_bytes_are_one_job_with_a_warning_at_the_glob(write: WriteRecipe,
                                                                           tmp_path: Path) -> None:
    images(tmp_path / "refs", "a.png")
    shutil.copy(tmp_path / "refs/a.png", tmp_path / "refs/copy.png")
    p = ok(write(sweep(styles="[x]")))
    assert [j.id for j in p.jobs] == ["a.png-x"]
    assert warnings(p) == ["r.yaml:4:16: [ref=copy.png, style=x] identical to a.png-x [ref=a.png, style=x]: "
                           "same request, run once"]


def test_a_file_id_depends_on_its_own_name_only() -> None:
    assert id_part("teal-square.png") == "teal-square.png"
    assert id_part("a b.png") == "a_b.png~" + id_part("a b.png")[-6:]
    long_a, long_b = "IMG_20241125_143012_session_alpha_camera01.jpg", "IMG_20241125_143012_session_alpha_camera02.jpg"
    assert id_part(long_a) != id_part(long_b)
    assert [len(id_part(n)) for n in (long_a, "sub/x.png", "ä.png")] == [40, 16, 10]
    assert id_part("sub/x.png").startswith("sub_x.png~")
    assert id_part(".hidden.png").startswith("hidden.png~")


def test_ids_stay_the_same_when_a_similar_name_is_added(write: WriteRecipe, tmp_path: Path) -> None:
    images(tmp_path / "refs", "a_b.png", "IMG_20241125_143012_session_alpha_camera02.png")
    before = [j.id for j in ok(write(sweep(styles="[x]"))).jobs]
    images(tmp_path / "refs", "a b.png", "IMG_20241125_143012_session_alpha_camera01.png", size=600)
    after = [j.id for j in ok(write(sweep(styles="[x]"))).jobs]
    assert set(before) <= set(after)
    assert len(set(after)) == 4
    assert all("~" not in i[-8:-6] for i in after)  # no collision suffix (~ and the key) was needed


def test_exclude_include_and_zip_name_files_by_their_path(write: WriteRecipe, tmp_path: Path) -> None:
    images(tmp_path / "refs", "a.png", "b.png", "c.png")
    extra = ("  ratio: ['1:1', '2:3', '3:2']\n  zip: [[ref, ratio]]\n"
             "  exclude:\n    - {ref: refs/b.png, style: noir}\n"
             "  include:\n    - {ref: refs/c.png, accent: gold}\n")
    p = ok(write(sweep(extra=extra)))
    assert [j.id for j in p.jobs] == ["a.png-watercolor-1_1", "a.png-noir-1_1", "b.png-watercolor-2_3",
                                      "c.png-watercolor-3_2-gold", "c.png-noir-3_2-gold"]


def test_zipping_a_file_axis_with_a_list_of_another_length(write: WriteRecipe, tmp_path: Path) -> None:
    images(tmp_path / "refs", "a.png", "b.png", "c.png")
    path = write(sweep(extra="  ratio: ['1:1', '2:3']\n  zip: [[ref, ratio]]\n"))
    assert errors(path) == ["r.yaml:7:9: zipped axes must have the same number of values (ref has 3, ratio has 2)"]


def test_include_or_exclude_cannot_hold_a_set_of_files(write: WriteRecipe, tmp_path: Path) -> None:
    images(tmp_path / "refs", "a.png")
    path = write(sweep(extra="  include:\n    - {extra: {files: 'refs/*.png'}}\n"))
    assert errors(path) == [
        "r.yaml:7:15: include values are single values: a set of files is written as a matrix axis "
        "(extra: {files: ...}), and include names one of its files by its path"]


def test_only_takes_a_file_by_its_label(write: WriteRecipe, tmp_path: Path) -> None:
    images(tmp_path / "refs", "a.png", "sub/b.png")
    p = ok(write(sweep("refs/**/*.png")), only={"ref": {"sub/b.png"}})
    assert [j.id for j in p.jobs] == [f"{id_part('sub/b.png')}-watercolor", f"{id_part('sub/b.png')}-noir"]


def test_a_glob_reaching_into_the_sweeps_own_output_is_refused(write: WriteRecipe, tmp_path: Path) -> None:
    images(tmp_path, "ref.png")
    images(tmp_path / "out/r", "old-output.png", size=700)
    assert errors(write(sweep("**/*.png"))) == [
        "r.yaml:4:16: matrix.ref.files: out/r/old-output.png is in the output directory out/r: the sweep would take "
        "its own images as inputs (new jobs on every run); narrow the glob"]
    assert len(ok(write(sweep("**/*.png")), out_dir="elsewhere").jobs) == 4  # another run's outputs are inputs


def test_a_file_name_that_is_not_utf8_is_refused(write: WriteRecipe, tmp_path: Path) -> None:
    images(tmp_path / "refs", "a.png")
    os.rename(tmp_path / "refs/a.png", os.fsencode(tmp_path / "refs") + b"/\xff.png")
    assert errors(write(sweep())) == [
        "r.yaml:4:16: matrix.ref.files: matches a file whose name is not UTF-8 text ('\\udcff.png'); rename it"]


def test_a_file_axis_expands_like_a_list_of_its_paths(write: WriteRecipe, tmp_path: Path) -> None:
    images(tmp_path / "refs", "x.png", "y.png")
    recipe = load_recipe(write(sweep(styles="[s]")))
    assert recipe.matrix.axes[0].files == "refs/*.png"
    assert [c.values for c in expand(recipe.matrix)] == [{"ref": "refs/x.png", "style": "s"},
                                                         {"ref": "refs/y.png", "style": "s"}]


def test_the_documented_examples(write: WriteRecipe, tmp_path: Path) -> None:
    doc = (ROOT / "docs/recipes.md").read_text(encoding="utf-8")
    section = doc[doc.index("#### File axes"):doc.index("#### Filters")]
    example = section[section.index("```yaml\n") + 8:section.index("```", section.index("```yaml\n") + 8)]
    shutil.copytree(ROOT / "recipes/refs", tmp_path / "refs")
    assert len(ok(write("version: 1\napp: klingai/image-o1\n" + example)).jobs) == 4
    shown = next(line for line in section.splitlines() if "no file matches" in line)
    assert errors(write(sweep("refs/*.jpg"), "sweep.yaml")) == [shown]
    assert id_part("people/amber.png") in section
