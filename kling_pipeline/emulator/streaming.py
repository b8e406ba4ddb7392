"""Long or broken answers: the NDJSON task stream, throttled downloads, lost responses."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterable

from .asgi import Receive, Request, Send
from .problems import Problem
from .state import EmulatorState
from .tasks import Task

__all__ = ["HEARTBEAT", "download_file", "lose_response", "stream_task"]

_SAFE_TYPE = re.compile(r"^[\w.+-]+/[\w.+-]+(?:; ?[\w.+-]+=[\w.+-]+)*$", re.ASCII)
"""A content type that can go back into a header as given (uploads may declare anything)."""
_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9._-]")

HEARTBEAT = b'{"type":"heartbeat"}\n'
NDJSON_HEADERS = [
    (b"content-type", b"application/x-ndjson"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]


def _headers(pairs: Iterable[tuple[str, str]]) -> list[tuple[bytes, bytes]]:
    return [(k.encode("latin-1"), v.encode("latin-1")) for k, v in pairs]


async def lose_response(send: Send, body: bytes) -> None:
    """Start a 200 with a ``Content-Length``, send half the body, and stop.

    The ASGI callable then returns with the response incomplete, so uvicorn closes
    the connection: the client sees a transport error, never a clean status.
    """
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": _headers([("content-type", "application/json"), ("content-length", str(len(body)))]),
        }
    )
    await send({"type": "http.response.body", "body": body[: len(body) // 2], "more_body": True})


async def _watch_disconnect(receive: Receive, wake: asyncio.Event, gone: list[bool]) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            gone.append(True)
            wake.set()
            return


async def stream_task(st: EmulatorState, req: Request, task: Task) -> None:
    """One whole task per line on every change, heartbeats while idle, the final task
    (with its output) last. A stream cut by the ``stream_cut_rate`` fault stops
    abruptly instead of sending that last line."""
    task.stream_opens += 1
    cut = not task.terminal and st.dice.chance(
        st.faults.stream_cut_rate, "stream_cut", task.input_sha, task.attempt, task.stream_opens
    )
    send = req.send
    await send({"type": "http.response.start", "status": 200, "headers": NDJSON_HEADERS})
    loop = asyncio.get_running_loop()
    wake = asyncio.Event()
    task.waiters.add(wake)
    gone: list[bool] = []
    watcher: asyncio.Task[None] | None = None
    beat, show_life = st.cfg.heartbeat_interval, st.cfg.max_progress_interval
    next_beat = loop.time() + beat
    timer = loop.call_at(next_beat, wake.set)
    sent_version = -1
    last_real = loop.time()
    try:
        while not gone:
            wake.clear()
            if task.terminal:
                if not cut:
                    await send({"type": "http.response.body", "body": task.encoded() + b"\n", "more_body": False})
                return  # a cut stream returns with the response incomplete: uvicorn drops the connection
            now = loop.time()
            if task.version != sent_version:
                line = task.encoded() + b"\n"
                sent_version, last_real = task.version, now
            elif st.engine.closed:
                await send({"type": "http.response.body", "body": b"", "more_body": False})
                return
            elif now >= next_beat:
                if watcher is None:  # a long stream: notice when the client goes away
                    watcher = loop.create_task(_watch_disconnect(req.receive, wake, gone))
                if now - last_real >= show_life:  # a task that sits queued still shows life
                    line, last_real = task.encoded() + b"\n", now
                else:
                    line = HEARTBEAT
            else:
                await wake.wait()
                continue
            timer.cancel()
            next_beat = now + beat
            timer = loop.call_at(next_beat, wake.set)
            await send({"type": "http.response.body", "body": line, "more_body": True})
    finally:
        timer.cancel()
        task.waiters.discard(wake)
        if watcher is not None:
            watcher.cancel()


async def download_file(st: EmulatorState, req: Request, key: str) -> None:
    """A stored file, like a signed URL: no auth; throttled by ``download_bytes_per_second``."""
    stored = st.files.get(req.params["file_id"])
    if stored is None or not stored.ready:
        raise Problem(404, "not_found", "File not found", f"no file {req.params['file_id']!r}")
    data = await stored.content()
    headers = [
        ("content-type", stored.content_type if _SAFE_TYPE.match(stored.content_type) else "application/octet-stream"),
        ("content-length", str(len(data))),
        ("content-disposition", f'inline; filename="{_UNSAFE_NAME.sub("_", stored.filename)[:120]}"'),
        ("cache-control", "private, max-age=3600"),
    ]
    send = req.send
    await send({"type": "http.response.start", "status": 200, "headers": _headers(headers)})
    rate = st.faults.download_bytes_per_second
    if req.method == "HEAD" or not rate:
        await send({"type": "http.response.body", "body": b"" if req.method == "HEAD" else data})
        return
    chunk = max(1, rate // 20)
    for start in range(0, len(data), chunk):
        piece = data[start : start + chunk]
        await asyncio.sleep(len(piece) / rate)
        await send({"type": "http.response.body", "body": piece, "more_body": start + chunk < len(data)})
    if not data:
        await send({"type": "http.response.body", "body": b""})
