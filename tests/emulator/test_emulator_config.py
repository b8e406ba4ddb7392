"""Configuration values: the latency model, fault validation, rate limits, the key kept out of reprs."""

from __future__ import annotations

import math
import re
from typing import Any

import pytest

from kling_pipeline.core.schemas import service_limits
from kling_pipeline.emulator import EmulatorConfig, Faults, Latency, Limit, RateLimits
from kling_pipeline.emulator.config import faults_from_mapping
from kling_pipeline.emulator.limits import limits_from_mapping, parse_limit


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1.0", Latency.fixed(1.0)),
        (" 0.5..2 ", Latency.uniform(0.5, 2.0)),
        ("lognormal:1.0,0.3", Latency.lognormal(1.0, 0.3)),
    ],
)
def test_latency_parses_the_cli_forms_and_prints_them_back(text: str, expected: Latency) -> None:
    assert Latency.parse(text) == expected
    assert Latency.parse(str(expected)) == expected


@pytest.mark.parametrize("text", ["", "fast", "2..1", "-1", "lognormal:0,1", "lognormal:1", "nan"])
def test_bad_latencies_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="latency"):
        Latency.parse(text)


def test_latency_samples_are_quantiles_of_the_distribution() -> None:
    assert Latency.fixed(1.5).sample(0.9) == 1.5
    assert Latency.uniform(1.0, 3.0).sample(0.25) == 1.5
    lognormal = Latency.lognormal(2.0, 0.5)
    assert math.isclose(lognormal.sample(0.5), 2.0)
    assert lognormal.sample(0.1) < 2.0 < lognormal.sample(0.9)
    assert math.isclose(lognormal.sample(0.8413447460685429), 2.0 * math.exp(0.5), rel_tol=1e-6)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"task_failure_rate": 1.5}, "task_failure_rate must be a probability between 0 and 1"),
        ({"stream_cut_rate": True}, "stream_cut_rate must be a probability"),
        ({"index_lag": -1}, "index_lag must be a number of seconds >= 0"),
        ({"max_running_per_key": 1.5}, "max_running_per_key must be an integer > 0 or null"),
        ({"download_bytes_per_second": 0}, "download_bytes_per_second must be an integer > 0 or null"),
    ],
)
def test_faults_are_validated(fields: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        faults_from_mapping(fields)


def test_faults_from_mapping_refuses_unknown_names_and_fills_defaults() -> None:
    with pytest.raises(ValueError, match="unknown fault setting"):
        faults_from_mapping({"chaos_monkey": 1})
    assert faults_from_mapping({"reject_rate": 0.5}) == Faults(reject_rate=0.5)


def test_the_api_key_never_shows_in_the_config_repr() -> None:
    cfg = EmulatorConfig(api_key="inf_secret_value")

    assert "inf_secret_value" not in repr(cfg)
    with pytest.raises(ValueError, match="api_key must be non-empty"):
        EmulatorConfig(api_key="  ")


def test_defaults_are_no_faults_half_a_second_seed_zero() -> None:
    cfg = EmulatorConfig()

    assert (cfg.faults, cfg.latency, cfg.seed, cfg.image_scale) == (Faults(), Latency.fixed(0.5), 0, 8)


def test_the_default_limits_are_the_published_ones_as_token_buckets() -> None:
    published = service_limits()

    assert EmulatorConfig().limits == RateLimits.published()
    assert RateLimits.published() == RateLimits(
        runs=Limit(int(published.runs_per_minute), 60.0, "bucket", burst=10),
        reads=Limit(int(published.reads_per_minute), 60.0, "bucket", burst=100),
        uploads=Limit(int(published.uploads_per_minute), 60.0, "bucket", burst=5),
    )
    assert (published.runs_per_minute, published.reads_per_minute, published.uploads_per_minute) == (100, 1000, 50)
    assert RateLimits.off() == RateLimits(None, None, None)


def test_a_bucket_burst_defaults_to_a_tenth_of_its_count_and_a_window_has_none() -> None:
    assert Limit(100).burst == 10 and Limit(100) == Limit(100, 60, "bucket", 10)
    assert Limit(5, 1.0).burst == 1 and Limit(5, 1.0).capacity == 1
    assert Limit(10, 6, "window").burst is None and Limit(10, 6, "window").capacity == 10
    assert Limit(100, 60.0, burst=10).rate == pytest.approx(100 / 60)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"count": 0}, "count must be a whole number >= 1, got 0"),
        ({"count": 2.5}, "count must be a whole number >= 1, got 2.5"),
        ({"count": True}, "count must be a whole number >= 1, got True"),
        ({"count": 1, "period": 0}, "period must be a number of seconds > 0, got 0"),
        ({"count": 1, "period": math.inf}, "period must be a number of seconds > 0, got inf"),
        ({"count": 1, "shape": "leaky"}, "shape must be 'bucket' or 'window', got 'leaky'"),
        ({"count": 1, "burst": 0}, "burst must be a whole number >= 1, got 0"),
        ({"count": 1, "shape": "window", "burst": 3}, "a fixed window has no burst"),
    ],
)
def test_bad_limits_are_refused(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        Limit(**fields)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("100/min", Limit(100, 60.0)),
        ("1000/60s", Limit(1000, 60.0)),
        ("bucket:5/s", Limit(5, 1.0)),
        (" Window:10/6s ", Limit(10, 6.0, "window")),
        ("50/1.5s", Limit(50, 1.5)),
        ("3600/h", Limit(3600, 3600.0)),
        ("7/2min", Limit(7, 120.0)),
        ("20/30", Limit(20, 30.0)),
        ("off", None),
    ],
)
def test_limit_specs_parse(text: str, expected: Limit | None) -> None:
    assert parse_limit(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("100", "bad rate limit '100': use COUNT/PERIOD"),
        ("100/", "bad rate limit '100/': use COUNT/PERIOD"),
        ("fast", "bad rate limit 'fast': use COUNT/PERIOD"),
        ("-1/s", "bad rate limit '-1/s': use COUNT/PERIOD"),
        ("0/s", "bad rate limit '0/s': a limit's count must be a whole number >= 1, got 0"),
        ("5/0s", "bad rate limit '5/0s': a limit's period must be a number of seconds > 0, got 0.0"),
        ("5/day", "bad rate limit '5/day': the period's unit is s, min or h, not 'day'"),
        ("leaky:5/s", "bad rate limit 'leaky:5/s': the shape is 'bucket' or 'window', not 'leaky'"),
    ],
)
def test_bad_limit_specs_say_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        parse_limit(text)


def test_limits_from_json_replace_the_classes_given_and_keep_the_rest() -> None:
    current = RateLimits.published()

    changed = limits_from_mapping(
        {"runs": {"count": 10, "period": 6, "shape": "window"}, "uploads": None, "reads": "bucket:5/s"}, current
    )

    assert changed == RateLimits(runs=Limit(10, 6.0, "window"), reads=Limit(5, 1.0), uploads=None)
    assert limits_from_mapping({"reset_epoch": True}, current) == RateLimits.published(reset_epoch=True)
    assert limits_from_mapping(current.to_dict(), RateLimits.off()) == current  # what GET says, POST takes


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"writes": None}, "unknown limit setting(s): writes"),
        ({"runs": 5}, "runs: expected an object, a spec string or null, got 5"),
        ({"runs": {"period": 6}}, "runs: 'count' is required"),
        ({"runs": {"count": 5, "per": 6}}, "runs: unknown key(s) per"),
        ({"reads": {"count": -1}}, "reads: a limit's count must be a whole number >= 1, got -1"),
        ({"reset_epoch": 1}, "reset_epoch must be true or false, got 1"),
    ],
)
def test_bad_limits_json_is_refused(data: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        limits_from_mapping(data, RateLimits.off())
