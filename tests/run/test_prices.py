"""plan --check-prices: the price table against the service's estimate endpoint."""

from __future__ import annotations


def test_the_price_table_agrees_with_the_estimate_endpoint(cli, emulator, recipe):
    emu = emulator()
    path = recipe("""
        version: 1
        app: klingai/image-o1@0pbaxv40
        matrix:
          n: [1, 3]
        input:
          prompt: "a lamp"
          n: "{{ n }}"
    """)
    result = cli("plan", str(path), "--check-prices", "--base-url", emu.base_url)
    assert result.code == 0, result.err
    assert "price check, 1 image a task: table $0.028, service $0.028 (exact) — agrees" in result.err
    assert "price check, 3 images a task: table $0.084, service $0.084 (exact) — agrees" in result.err


def test_a_price_that_differs_from_the_service_fails_the_plan(cli, emulator, recipe):
    emu = emulator()
    path = recipe("""
        version: 1
        app: klingai/image-o1@0pbaxv40
        price:
          usd_per_image: 0.02
        input:
          prompt: "a lamp"
    """)
    result = cli("plan", str(path), "--check-prices", "--base-url", emu.base_url)
    assert result.code == 1
    assert "price check, 1 image a task: table $0.02, service $0.028 (exact) — DIFFERS" in result.err
    assert ("the price table of klingai/image-o1 disagrees with the service: pull it again (`kling-pipeline schema "
            "pull klingai/image-o1`), or give price.usd_per_unit in the recipe\n") in result.err


def test_each_rate_of_a_video_plan_is_checked(cli, emulator, recipe):
    emu = emulator()
    path = recipe("""
        version: 1
        app: klingai/video-o1@ef28809a
        matrix:
          mode: [std, pro]
          ref: [null, "https://example.com/clip.mp4"]
        input:
          prompt: "a wave"
          duration: 4
          mode: "{{ mode }}"
          reference_video: "{{ ref }}"
    """)
    result = cli("plan", str(path), "--check-prices", "--base-url", emu.base_url)
    assert result.code == 0, result.err
    assert result.err.splitlines()[-4:] == [
        "price check, 4 seconds a task: table $0.336, service $0.336 (exact) — agrees",
        "price check, 4 seconds a task: table $0.448, service $0.448 (exact) — agrees",
        "price check, 4 seconds a task: table $0.504, service $0.504 (exact) — agrees",
        "price check, 4 seconds a task: table $0.672, service $0.672 (exact) — agrees",
    ]


def test_a_range_is_checked_bound_for_bound(cli, emulator, recipe):
    emu = emulator()
    path = recipe("""
        version: 1
        app: google/gemini-2-5-flash-image@57fbd965
        input:
          prompt: "a fox"
          num_images: 2
    """)
    result = cli("plan", str(path), "--check-prices", "--base-url", emu.base_url)
    assert result.code == 0, result.err
    assert result.err.splitlines()[-1] == ("price check, 2 images a task: table $0.0774 to $0.24124, service $0.0774 "
                                           "to $0.24124 (range) — agrees")
