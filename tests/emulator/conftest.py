"""Fixtures: real emulators on 127.0.0.1 (free ports) and httpx clients for them."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from tests_support import TEST_LIMITS

from kling_pipeline.emulator import EmulatorConfig, EmulatorServer, Faults, Latency, RateLimits

from .helpers import KEY

FAST = {"heartbeat_interval": 0.2, "min_progress_interval": 0.0}


@pytest.fixture
def make_emu() -> Iterator[Callable[..., EmulatorServer]]:
    """``make_emu(latency=0.05, faults=Faults(...), limits=TEST_LIMITS, **config)`` -> a running emulator."""
    servers: list[EmulatorServer] = []

    def start(
        latency: float | Latency = 0.05, faults: Faults | None = None, limits: RateLimits = TEST_LIMITS, **config: Any
    ) -> EmulatorServer:
        lat = latency if isinstance(latency, Latency) else Latency.fixed(latency)
        cfg = EmulatorConfig(latency=lat, faults=faults or Faults(), limits=limits, **{**FAST, **config})
        server = EmulatorServer(cfg).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def make_client() -> Iterator[Callable[..., httpx.Client]]:
    """``make_client(emu, key=KEY)`` -> an httpx client with the bearer key (``key=None``: none)."""
    clients: list[httpx.Client] = []

    def open_client(emu: EmulatorServer, key: str | None = KEY, timeout: float = 10.0) -> httpx.Client:
        headers = {"Authorization": f"Bearer {key}"} if key is not None else {}
        client = httpx.Client(base_url=emu.base_url, headers=headers, timeout=timeout)
        clients.append(client)
        return client

    yield open_client
    for client in clients:
        client.close()


@pytest.fixture
def emu(make_emu: Callable[..., EmulatorServer]) -> EmulatorServer:
    return make_emu()


@pytest.fixture
def api(emu: EmulatorServer, make_client: Callable[..., httpx.Client]) -> httpx.Client:
    return make_client(emu)
