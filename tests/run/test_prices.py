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
    assert "the price table in schemas/ disagrees with the service" in result.err
