"""Serving the emulator with uvicorn: in a background thread (tests, the pipeline) or in
the foreground (the CLI)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator
from types import TracebackType
from typing import Any, Literal, TypeVar

import uvicorn

from .app import EmulatorApp, create_app
from .config import EmulatorConfig, Faults
from .limits import RateLimits
from .validation import is_loopback_host

__all__ = ["EmulatorServer", "LoopName", "bind_socket", "is_loopback_host", "uvicorn_server"]

T = TypeVar("T")
LoopName = Literal["asyncio", "uvloop", "auto"]

_DROPPED_MESSAGES = ("ASGI callable returned without completing response.",)


class _FaultNoiseFilter(logging.Filter):
    """uvicorn reports an ASGI app that stops mid-response as an error; the emulator does
    exactly that on purpose (lost responses, cut streams), so those lines are dropped."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() not in _DROPPED_MESSAGES


@contextlib.contextmanager
def quiet_fault_noise() -> Iterator[None]:
    target = logging.getLogger("uvicorn.error")
    noise = _FaultNoiseFilter()
    target.addFilter(noise)
    try:
        yield
    finally:
        target.removeFilter(noise)


def bind_socket(host: str, port: int, backlog: int = 4096) -> socket.socket:
    """A listening TCP socket (``port=0`` picks a free one)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto=IPPROTO_TCP matters: asyncio turns Nagle off (TCP_NODELAY) only on sockets that
    # say they are TCP, and without it every response whose head and body are written
    # separately waits ~40 ms for the peer's delayed ACK.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(backlog)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling, closing the app's streams at shutdown."""

    def __init__(self, config: uvicorn.Config, app: EmulatorApp) -> None:
        super().__init__(config)
        self._emulator = app
        self._wake: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    def request_exit(self) -> None:
        """Ask the server to stop, from any thread; it reacts at once rather than at its next tick."""
        self.should_exit = True
        loop, wake = self._loop, self._wake
        if loop is not None and wake is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile: it has stopped anyway
                loop.call_soon_threadsafe(wake.set)

    async def main_loop(self) -> None:
        self._loop, self._wake = asyncio.get_running_loop(), asyncio.Event()
        counter = 0
        while not await self.on_tick(counter):
            counter = (counter + 1) % 864000
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(0.1):
                    await self._wake.wait()

    async def on_tick(self, counter: int) -> bool:
        should_exit: bool = await super().on_tick(counter)
        if should_exit:
            self._emulator.close()  # lets open streams end, so shutdown does not wait on them
        return should_exit


def uvicorn_server(app: EmulatorApp, *, loop: LoopName = "asyncio", log_level: str = "warning") -> _Server:
    config = uvicorn.Config(
        app,
        loop=loop,
        http="httptools",
        lifespan="on",
        access_log=False,
        log_level=log_level,
        log_config=None,
        backlog=4096,
        timeout_keep_alive=30,
        timeout_graceful_shutdown=3,
        server_header=False,
        proxy_headers=False,
    )
    return _Server(config, app)


class EmulatorServer:
    """A real emulator on ``127.0.0.1`` (a free port by default), served from a thread.

    Use as a context manager; ``base_url``, ``ledger()``, ``set_faults()``,
    ``set_limits()`` and ``limit_stats()`` work while it runs.
    """

    def __init__(
        self,
        cfg: EmulatorConfig | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        loop: LoopName = "asyncio",
    ) -> None:
        if not is_loopback_host(host):
            raise ValueError(f"EmulatorServer serves on loopback only, not {host!r}")
        self.cfg = cfg or EmulatorConfig()
        self.app = create_app(self.cfg)
        self._host = host
        self._port = port
        self._loop_name: LoopName = loop
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._error: BaseException | None = None
        self.port = 0

    @property
    def base_url(self) -> str:
        if not self.port:
            raise RuntimeError("the emulator is not running")
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"http://{host}:{self.port}"

    def start(self, timeout: float = 10.0) -> EmulatorServer:
        if self._thread is not None:
            raise RuntimeError("the emulator is already running")
        sock = bind_socket(self._host, self._port)
        self.port = sock.getsockname()[1]
        server = self._server = uvicorn_server(self.app, loop=self._loop_name)
        self._thread = threading.Thread(target=self._run, args=(server, sock), name="kling-emulator", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the emulator did not start: {self._error!r}")
            time.sleep(0.005)
        return self

    def _run(self, server: _Server, sock: socket.socket) -> None:
        async def serve() -> None:
            self._loop = asyncio.get_running_loop()
            await server.serve(sockets=[sock])

        try:
            with quiet_fault_noise(), asyncio.Runner(loop_factory=server.config.get_loop_factory()) as runner:
                runner.run(serve())
        except BaseException as exc:  # reported by start(); the thread must not die noisily
            self._error = exc
        finally:
            sock.close()

    def stop(self, timeout: float = 10.0) -> None:
        server, thread = self._server, self._thread
        if server is not None:
            server.request_exit()
        if thread is not None:
            thread.join(timeout)
        self._server = self._thread = self._loop = None
        self.port = 0

    def call(self, fn: Callable[[], T], timeout: float = 10.0) -> T:
        """Run ``fn`` on the server's event loop (where all emulator state lives)."""
        loop = self._loop
        if loop is None:
            raise RuntimeError("the emulator is not running")

        async def wrapper() -> T:
            return fn()

        return asyncio.run_coroutine_threadsafe(wrapper(), loop).result(timeout)

    def ledger(self) -> dict[str, Any]:
        """The same dict as ``GET /_emulator/ledger``'s ``data``."""
        return self.call(self.app.state.ledger.snapshot)

    def tasks(self) -> list[dict[str, Any]]:
        return self.call(self.app.state.engine.snapshot)

    def set_faults(self, faults: Faults) -> None:
        self.call(lambda: self.app.set_faults(faults))

    def set_limits(self, limits: RateLimits) -> None:
        """Enforce ``limits`` from now on (keys keep their state, clamped to the new limits)."""
        self.call(lambda: self.app.set_limits(limits))

    def edit_app(self, name: str, **changes: Any) -> dict[str, Any]:
        """Change what the app serves from now on: ``version``, ``title``, ``input_schema``,
        ``output_schema``, ``pricing`` (merged into the current table, as in ``app.json``),
        ``emulator``. A new ``version`` is added beside the old ones; without one the current
        version changes in place. Returns the new ``GET /apps/{namespace}/{name}`` document;
        ``LookupError``/``ValueError`` as ``POST /_emulator/apps/...`` answers 404/400."""
        return self.call(lambda: self.app.edit_app(name, changes))

    def apps(self) -> list[str]:
        """The served apps (``namespace/name``), the first-class one first."""
        return self.call(self.app.state.apps.names)

    def limits(self) -> RateLimits:
        return self.call(lambda: self.app.state.limiters.limits)

    def limit_stats(self) -> dict[str, dict[str, int]]:
        """Per class (runs, reads, uploads): ``{"allowed": n, "refused": n}`` calls so far."""
        return self.call(self.app.state.limiters.stats)

    def __enter__(self) -> EmulatorServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
