"""Whatever a client sends, the emulator answers a clean status, never a 500 with a traceback."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kling_pipeline.emulator import EmulatorConfig, EmulatorServer, Latency, RateLimits

from .helpers import KEY

scalars = st.none() | st.booleans() | st.integers(-(2**40), 2**40) | st.text(max_size=20)
json_values = st.recursive(
    scalars | st.floats(allow_nan=False, allow_infinity=False),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=12,
)
run_bodies = st.fixed_dictionaries(
    {},
    optional={
        "app": st.sampled_from(["klingai/image-o1", "klingai/image-o1@0pbaxv40", "x/y", "", "a@b:c"]) | json_values,
        "input": st.fixed_dictionaries(
            {},
            optional={
                "prompt": st.text(max_size=30) | json_values,
                "n": st.integers(-2, 12) | json_values,
                "aspect_ratio": st.sampled_from(["16:9", "1:1", "4:5"]) | json_values,
                "resolution": st.sampled_from(["1k", "2k", "8k"]),
                "image": st.sampled_from(["data:x", "https://e.x/a.png", "/tmp/a", ""]) | json_values,
            },
        )
        | json_values,
        "webhook": st.sampled_from(["http://127.0.0.1:9/h", "http://example.com/h", "nope"]) | json_values,
        "session": json_values,
    },
)
list_bodies = st.fixed_dictionaries(
    {},
    optional={
        "limit": json_values,
        "cursor": json_values,
        "filters": st.lists(
            st.fixed_dictionaries(
                {
                    "field": st.sampled_from(["status", "created_at", "app_id", "id", "x"]) | json_values,
                    "operator": st.sampled_from(["eq", "in", "gt", "like", "is_null", "??"]) | json_values,
                },
                optional={"value": json_values},
            ),
            max_size=3,
        )
        | json_values,
        "sort": json_values,
        "search": json_values,
        "fields": json_values,
    },
)


@pytest.fixture(scope="module")
def client() -> Iterator[httpx.Client]:
    with (
        # No rate limits: hypothesis sends hundreds of calls a second, and a 429 would answer
        # before the body is read, which is what is under test here.
        EmulatorServer(EmulatorConfig(latency=Latency.fixed(0.01), limits=RateLimits.off())) as emu,
        httpx.Client(base_url=emu.base_url, headers={"Authorization": f"Bearer {KEY}"}) as http,
    ):
        yield http


def check(response: httpx.Response, allowed: set[int]) -> None:
    assert response.status_code in allowed, response.text
    expected = "application/json" if response.status_code < 400 else "application/problem+json"
    assert response.headers["content-type"] == expected
    json.loads(response.content)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=run_bodies)
def test_any_run_body_gets_a_clean_answer(client: httpx.Client, body: dict[str, Any]) -> None:
    check(client.post("/apps/run", json=body), {200, 400, 404, 422})


@settings(max_examples=60, deadline=None)
@given(body=list_bodies)
def test_any_listing_body_gets_a_clean_answer(client: httpx.Client, body: dict[str, Any]) -> None:
    check(client.post("/tasks/list", json=body), {200, 400})


@settings(max_examples=30, deadline=None)
@given(raw=st.binary(max_size=64))
def test_any_bytes_get_a_clean_answer(client: httpx.Client, raw: bytes) -> None:
    for path in ("/apps/run", "/tasks/list", "/files", "/store/apps/klingai/image-o1/estimate"):
        check(client.post(path, content=raw), {200, 400, 404, 422})


@pytest.mark.parametrize("raw", [b'{"limit": NaN}', b'{"limit": Infinity}', b'{"input": {"n": -Infinity}}'])
def test_non_standard_json_constants_are_refused(client: httpx.Client, raw: bytes) -> None:
    for path in ("/apps/run", "/tasks/list"):
        response = client.post(path, content=raw)
        check(response, {400})
        assert response.json()["type"].endswith("/invalid_json")
