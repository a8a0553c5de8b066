"""Composition root: builds the App and wires every area onto it.

The request pipeline (app.py) knows nothing about domain areas; each area's adapters register
routes and lifecycle hooks here, so imports keep pointing downwards.
"""

from __future__ import annotations

import time

from .api_engine import EngineRoutes
from .app import App
from .config import Settings
from .connect import ConnectRouter
from .connect_ironflow import IronflowService
from .engine import Engine
from .journal import Journal
from .topics import PubSubPublish

#: The engine's scheduler must have ticked this recently for /ready (rest-api.md §5.2).
SCHEDULER_STALE_SECONDS = 5.0


def build_app(settings: Settings, *, journal: Journal | None = None) -> App:
    app = App(settings, journal=journal)
    engine = Engine(app.journal, lease_ttl=settings.lease_ttl, lease_grace=settings.lease_grace,
                    worker_timeout=settings.worker_timeout, poll_max_wait=settings.poll_max_wait)
    app.engine = engine  # type: ignore[attr-defined]
    app.on_open.append(engine.load)
    app.on_start.append(engine.start)
    app.on_stop.append(engine.stop)

    def scheduler_ready() -> tuple[str, str] | None:
        if time.monotonic() - engine.last_tick > SCHEDULER_STALE_SECONDS:
            return ("scheduler", "engine scheduler has not ticked recently")
        return None
    app.ready_checks.append(scheduler_ready)
    EngineRoutes(app, engine)
    rpc = ConnectRouter()
    IronflowService(rpc, engine)
    PubSubPublish(rpc, app.journal)
    app.connect_handler = rpc
    return app
