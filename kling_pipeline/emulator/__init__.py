"""A local emulator of the inference.sh REST API (like LocalStack) for every bundled app:
``klingai/image-o1`` first, and the others in ``schemas/`` (video, several images, audio).

It is an independent implementation of the API contract: it imports only
``kling_pipeline.core.schemas`` and ``kling_pipeline.core.money`` from the project.

    from kling_pipeline.emulator import EmulatorConfig, EmulatorServer, Faults, Latency, Limit, RateLimits

    cfg = EmulatorConfig(latency=Latency.fixed(1.0), faults=Faults(response_lost_rate=0.3))
    with EmulatorServer(cfg) as emu:          # uvicorn in a thread on 127.0.0.1, a free port
        emu.base_url, emu.ledger(), emu.tasks(), emu.set_faults(Faults())
        emu.set_limits(RateLimits(runs=Limit(10, 6.0, "window"))), emu.limit_stats()
        emu.apps(), emu.edit_app("klingai/video-o1", version="v2", pricing={"usd_per_unit": "0.2"})

What each app returns and bills comes from its ``app.json`` (``emulator`` and ``pricing``):
no app is written in Python.

Rate limits are on by default: the service's published ones (``RateLimits.published()``);
``EmulatorConfig(limits=RateLimits.off())`` turns them off.

    app = create_app(cfg)                      # the ASGI app itself

From a shell: ``python -m kling_pipeline.emulator --port 0 --latency 1.0`` (see ``--help``).
"""

from __future__ import annotations

from .app import EmulatorApp, create_app
from .config import EmulatorConfig, Faults, Latency
from .limits import Limit, RateLimits
from .server import EmulatorServer
from .tasks import Status

__all__ = [
    "EmulatorApp",
    "EmulatorConfig",
    "EmulatorServer",
    "Faults",
    "Latency",
    "Limit",
    "RateLimits",
    "Status",
    "create_app",
]
