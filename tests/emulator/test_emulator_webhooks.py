"""Webhooks: delivered on terminal states to a receiver on loopback, retried, never blocking."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from kling_pipeline.emulator import EmulatorServer, Faults

from .helpers import submit, wait_terminal, wait_until


class Receiver:
    """A tiny webhook receiver; ``fail_first`` deliveries get a 500."""

    def __init__(self, fail_first: int = 0) -> None:
        self.bodies: list[tuple[str, dict[str, Any]]] = []
        self.fail_first = fail_first
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if receiver.fail_first > 0:
                    receiver.fail_first -= 1
                    self.send_response(500)
                else:
                    receiver.bodies.append((self.path, body))
                    self.send_response(204)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.02,), daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


@pytest.fixture
def receiver() -> Iterator[Callable[..., Receiver]]:
    started: list[Receiver] = []

    def start(fail_first: int = 0) -> Receiver:
        started.append(Receiver(fail_first))
        return started[-1]

    yield start
    for r in started:
        r.close()


@pytest.fixture
def quick_retry_emu(make_emu: Callable[..., EmulatorServer]) -> EmulatorServer:
    return make_emu(webhook_backoff=0.01)


def test_completion_is_posted_to_the_webhook_with_the_documented_fields(
    quick_retry_emu: EmulatorServer, make_client: Callable[..., httpx.Client], receiver: Callable[..., Receiver]
) -> None:
    hook = receiver()
    api = make_client(quick_retry_emu)

    task = wait_terminal(api, submit(api, webhook=f"{hook.url}/hook/job-7?token=s3cret")["id"])

    path, body = wait_until(lambda: hook.bodies[0] if hook.bodies else None, what="the delivery")
    assert path == "/hook/job-7?token=s3cret"
    assert set(body) == {"id", "status", "output", "error", "session_id", "created_at", "updated_at"}
    assert (body["id"], body["status"], body["output"], body["error"]) == (task["id"], 10, task["output"], None)
    assert task["webhook"] == f"{hook.url}/hook/job-7?token=s3cret"


def test_failures_are_delivered_too(
    make_emu: Callable[..., EmulatorServer], make_client: Callable[..., httpx.Client], receiver: Callable[..., Receiver]
) -> None:
    hook = receiver()
    api = make_client(make_emu(faults=Faults(task_failure_rate=1.0)))

    task_id = submit(api, webhook=f"{hook.url}/h")["id"]

    _, body = wait_until(lambda: hook.bodies[0] if hook.bodies else None, what="the delivery")
    assert (body["id"], body["status"], body["output"]) == (task_id, 11, None)
    assert body["error"].startswith("Kling task failed")


def test_a_failing_receiver_gets_retried(
    quick_retry_emu: EmulatorServer, make_client: Callable[..., httpx.Client], receiver: Callable[..., Receiver]
) -> None:
    hook = receiver(fail_first=2)
    api = make_client(quick_retry_emu)

    task_id = submit(api, webhook=f"{hook.url}/h")["id"]

    wait_until(lambda: hook.bodies, what="the delivery")
    log = httpx.get(f"{quick_retry_emu.base_url}/_emulator/webhooks").json()["data"]
    assert log == [
        {"task_id": task_id, "status": 10, "url": f"{hook.url}/h", "attempts": 3, "delivered": True, "last_error": None}
    ]


def test_an_unreachable_receiver_does_not_hold_up_the_task(
    quick_retry_emu: EmulatorServer, make_client: Callable[..., httpx.Client]
) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{probe.getsockname()[1]}/h"
    api = make_client(quick_retry_emu)

    task = wait_terminal(api, submit(api, webhook=dead)["id"])

    assert task["status"] == 10
    log = wait_until(
        lambda: (
            (d := httpx.get(f"{quick_retry_emu.base_url}/_emulator/webhooks").json()["data"])
            and d[0]["attempts"] == 4
            and d
        ),
        what="all attempts",
    )
    assert log[0]["delivered"] is False
    assert log[0]["last_error"].startswith("ConnectError")
