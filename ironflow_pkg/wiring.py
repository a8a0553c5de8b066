"""Composition root: builds the App and wires every area onto it.

The request pipeline (app.py) knows nothing about domain areas; each area's adapters register
routes and lifecycle hooks here, so imports keep pointing downwards.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from .api_dashboard import Dashboard
from .api_engine import EngineRoutes
from .api_query import QueryRoutes
from .api_schemas import SchemaRoutes
from .api_stores import StoreRoutes
from .api_watch import WatchRoutes
from .configdocs import ConfigStore
from .kv import KVStore
from .secrets_store import SecretStore
from .app import App
from .config import Settings
from .connect import ConnectRouter
from .connect_ironflow import IronflowService
from .engine import Engine
from .journal import Journal
from .schemas import SchemaRegistry
from .items import ItemHub, SystemEvents
from .subscriptions import PubSub



def build_app(settings: Settings, *, journal: Journal | None = None) -> App:
    app = App(settings, journal=journal)
    engine = Engine(app.journal, lease_ttl=settings.lease_ttl, lease_grace=settings.lease_grace,
                    worker_timeout=settings.worker_timeout, poll_max_wait=settings.poll_max_wait)
    app.engine = engine  # type: ignore[attr-defined]
    app.on_open.append(engine.load)
    app.on_start.append(engine.start)
    app.on_stop.append(engine.stop)

    def scheduler_ready() -> tuple[str, str] | None:
        if not engine.scheduler_alive():
            return ("scheduler", "engine scheduler has not ticked recently")
        return None
    app.ready_checks.append(scheduler_ready)
    routes = EngineRoutes(app, engine)
    if settings.test_faults:
        install_faults(app, engine, routes, settings.test_faults)
    rpc = ConnectRouter()
    IronflowService(rpc, engine)
    hub = ItemHub(app.journal)
    PubSub(app, rpc, engine, app.journal, hub)
    QueryRoutes(app, rpc, app.journal)
    schemas = SchemaRegistry(app.journal, settings.event_schema_enforcement)
    app.on_open.append(schemas.load)
    engine.validate_event = schemas.check
    SchemaRoutes(app, rpc, schemas)
    kv, config = KVStore(app.journal), ConfigStore(app.journal)
    secrets = SecretStore(app.journal, settings.master_key)
    app.on_open.extend([kv.load, config.load])

    def check_secrets() -> None:
        bad = secrets.undecryptable_sync()
        if bad:  # features.md §8: reported, and those runs fail SECRET_NOT_FOUND at dispatch
            app.extra_warnings.append(f"{len(bad)} secret(s) cannot be decrypted with "
                                      "IRONFLOW_MASTER_KEY")
    app.on_open.append(check_secrets)
    engine.secrets = secrets.resolve
    StoreRoutes(app, kv, config, secrets, SystemEvents(app.journal, hub.publish))
    WatchRoutes(app, kv, config)
    app.connect_handler = rpc
    app.fallback = Dashboard().serve
    return app


def install_faults(app: App, engine: Engine, routes: EngineRoutes, faults: dict[str, Any]) -> None:
    """Test-only fault injection (acceptance.md, Conventions). Unknown keys are ignored."""
    logging.getLogger("ironflow.faults").warning("IRONFLOW_TEST_FAULTS is set: test faults active",
                                                 extra={"fields": {"faults": faults}})
    routes.report_faults = [int(s) for s in faults.get("report_status") or []]
    after = faults.get("drop_worker_sessions_after_s")
    if isinstance(after, (int, float)) and after >= 0:
        async def drop() -> None:
            await asyncio.sleep(after)
            engine.workers.clear()
            logging.getLogger("ironflow.faults").warning("worker sessions dropped (test fault)")

        async def start() -> None:
            app._fault_task = asyncio.create_task(drop())  # type: ignore[attr-defined]
        app.on_start.append(start)
