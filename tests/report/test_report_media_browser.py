"""Reports of other apps in a real headless Chromium, from ``file://``: a video sweep's MP4s play
(their metadata loads with the requested duration and frame size), a speech sweep's WAVs load,
and a multi-output sweep shows its images and its text — all with relative paths, after the
output directory was copied elsewhere, with nothing refused by the pages' security policy."""

from __future__ import annotations

import shutil
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .browser import chromium, require_browser

pytestmark = pytest.mark.browser

RECIPES = {
    "teaser": ("klingai/video-o1", """
        version: 1
        name: teaser
        app: klingai/video-o1@ef28809a
        matrix:
          mode: [std, pro]
          duration: [3, 6]
        input:
          prompt: "a paper boat drifting on a pond"
          mode: "{{ mode }}"
          duration: "{{ duration }}"
          aspect_ratio: "9:16"
        output: {dir: out/teaser}
        budget: {max_usd: 2}
    """),
    "lines": ("elevenlabs/tts", """
        version: 1
        name: lines
        app: elevenlabs/tts@0b666f9a
        matrix:
          line: ["Hello there.", "A longer line, to be spoken slowly and clearly, for about three seconds."]
        input:
          text: "{{ line }}"
        output: {dir: out/lines}
        budget: {max_usd: 1}
    """),
    "cards": ("google/gemini-2-5-flash-image", """
        version: 1
        name: cards
        app: google/gemini-2-5-flash-image@57fbd965
        matrix:
          subject: [a fox, "an owl <b>at night</b>"]
        input:
          prompt: "{{ subject }} in a snowy forest"
          num_images: 2
        output: {dir: out/cards}
        budget: {max_usd: 1}
    """),
}

MEDIA = """
const done = arguments[arguments.length - 1];
const media = [...document.querySelectorAll('video, audio')];
const seen = () => media.map(m => ({tag: m.tagName.toLowerCase(), src: m.getAttribute('src'), ready: m.readyState,
                                   duration: m.duration, width: m.videoWidth || 0, height: m.videoHeight || 0,
                                   error: m.error && m.error.code}));
const check = (tries) => {
  if (media.every(m => m.readyState >= 1 || m.error) || tries === 0) return done(seen());
  setTimeout(() => check(tries - 1), 100);
};
media.forEach(m => m.scrollIntoView({block: 'center'}));
check(100);
"""


@pytest.fixture(scope="module")
def sites(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The three sweeps pulled, run against one emulator and reported; then the project copied to a path
    with a space in it. Each name -> its copied grid page."""
    import io

    from tests_support import TEST_LIMITS

    from kling_pipeline.cli import main
    from kling_pipeline.emulator import EmulatorConfig, EmulatorServer, Latency

    project = tmp_path_factory.mktemp("media")
    with pytest.MonkeyPatch.context() as env, \
            EmulatorServer(EmulatorConfig(latency=Latency.fixed(0.05), limits=TEST_LIMITS)) as emu:
        env.setenv("KLING_PIPELINE_SCHEMAS", str(project / "kling-schemas"))
        env.setenv("KLING_PIPELINE_CACHE", str(tmp_path_factory.mktemp("result-cache")))  # never the user's
        env.setenv("INFERENCE_API_KEY", "inf_test")
        for name, (app, text) in RECIPES.items():
            out, err = io.StringIO(), io.StringIO()
            assert main(["schema", "pull", app, "--base-url", emu.base_url], out=out, err=err) == 0, err.getvalue()
            path = project / f"{name}.yaml"
            path.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
            assert main(["run", str(path), "--base-url", emu.base_url], out=out, err=err) == 0, err.getvalue()
    copy = tmp_path_factory.mktemp("site") / "copied project" / "out"
    shutil.copytree(project / "out", copy)
    return {name: copy / name / "report" / "grid-0001.html" for name in RECIPES}


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    require_browser()
    with chromium(tmp_path_factory.mktemp("chromium-profile")) as driver:
        driver.set_script_timeout(20)
        yield driver


def open_page(browser: Any, page: Path) -> list[dict[str, Any]]:
    browser.get(page.as_uri())
    seen: list[dict[str, Any]] = browser.execute_async_script(MEDIA)
    refused = [e["message"] for e in browser.get_log("browser") if "Content Security Policy" in e["message"]]
    assert refused == []
    return seen


def test_the_videos_play_from_the_copied_report(browser: Any, sites: dict[str, Path]) -> None:
    seen = open_page(browser, sites["teaser"])
    assert len(seen) == 4
    for video in seen:
        assert video["tag"] == "video" and video["error"] is None and video["ready"] >= 1, video
        assert video["src"].startswith("../") and video["src"].endswith(".mp4")
        assert video["width"] * 16 == video["height"] * 9 > 0  # 9:16, as asked
    assert sorted(round(v["duration"]) for v in seen) == [3, 3, 6, 6]
    links = browser.execute_script("return [...document.querySelectorAll('figure.video a')].map(a => a.href)")
    assert all(link.startswith(sites["teaser"].parent.parent.as_uri() + "/") for link in links)


def test_the_speech_plays_from_the_copied_report(browser: Any, sites: dict[str, Path]) -> None:
    seen = open_page(browser, sites["lines"])
    assert [(a["tag"], a["error"], a["src"].endswith(".wav")) for a in seen] == [("audio", None, True)] * 2
    assert all(a["ready"] >= 1 and a["duration"] > 0 for a in seen), seen
    short, long = sorted(a["duration"] for a in seen)
    assert short < long
    prompts = browser.execute_script(
        "return [...document.querySelectorAll('details.prompt p')].map(p => p.textContent)")
    assert sorted(prompts) == sorted(["Hello there.",
                                      "A longer line, to be spoken slowly and clearly, for about three seconds."])


def test_the_images_and_the_text_of_a_multi_output_app_show(browser: Any, sites: dict[str, Path]) -> None:
    assert open_page(browser, sites["cards"]) == []
    from selenium.webdriver.support.ui import WebDriverWait

    shown = WebDriverWait(browser, 10).until(lambda d: d.execute_script("""
        const imgs = [...document.querySelectorAll('a.thumb img')];
        imgs.forEach(i => i.scrollIntoView({block: 'center'}));
        if (!imgs.every(i => i.complete)) return null;
        return {images: imgs.map(i => i.naturalWidth),
                texts: [...document.querySelectorAll('pre.output-text')].map(p => p.textContent),
                bold: document.querySelectorAll('main b').length};
    """))
    assert len(shown["images"]) == 4 and all(width > 0 for width in shown["images"])
    assert sorted(shown["texts"]) == ["Here are 2 image(s) for: a fox in a snowy forest",
                                      "Here are 2 image(s) for: an owl <b>at night</b> in a snowy forest"]
    assert shown["bold"] == 0  # the model's text is text, not markup
