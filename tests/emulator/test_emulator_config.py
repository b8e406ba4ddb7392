"""Configuration values: the latency model, fault validation, the key kept out of reprs."""

from __future__ import annotations

import math

import pytest

from kling_pipeline.emulator import EmulatorConfig, Faults, Latency
from kling_pipeline.emulator.config import faults_from_mapping


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
        ({"requests_per_second": 0}, "requests_per_second must be a number > 0 or null"),
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
