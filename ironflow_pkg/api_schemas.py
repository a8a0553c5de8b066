"""Event schemas over REST (``/api/v1/events/schemas``, ``/api/v1/events/upcast``) and Connect
(``EventSchemaService``), one registry underneath (features.md §9, rest-api.md §2.8)."""

from __future__ import annotations

import json
from typing import Any

from .api_engine import emitted_by, env_of, int_param, read_object
from .app import App, json_response, query_params
from .connect import ConnectRouter, payload, set_payload
from .errors import ApiError
from .schemas import SchemaRegistry
from .server import HttpRequest, Response


def _upcast(event_name: str, from_version: int, to_version: int, data: Any) -> Any:
    """features.md §9.3: upcasters run in the SDKs; the server only knows the identity."""
    if from_version != to_version:
        raise ApiError("failed_precondition", f"no server-side upcaster chain from v{from_version} "
                       f"to v{to_version} for {event_name!r}")
    return data


def _version(raw: str) -> int:
    if not raw.isdigit() or int(raw) < 1:
        raise ApiError("invalid_argument", "version: an integer >= 1 is required")
    return int(raw)


class SchemaRoutes:
    def __init__(self, app: App, rpc: ConnectRouter, registry: SchemaRegistry) -> None:
        self.reg = registry
        r = app.router
        r.add("POST", "/api/v1/events/schemas", self.rest_register)
        r.add("GET", "/api/v1/events/schemas", self.rest_list)
        r.add("GET", "/api/v1/events/schemas/{name}", self.rest_latest)
        r.add("GET", "/api/v1/events/schemas/{name}/{version}", self.rest_get)
        r.add("DELETE", "/api/v1/events/schemas/{name}/{version}", self.rest_delete)
        r.add("POST", "/api/v1/events/upcast", self.rest_upcast)
        for m in ("RegisterSchema", "GetSchema", "ListSchemas", "DeleteSchema", "ListSchemaHistory",
                  "GetSchemaRevision", "CheckEnforcement", "TestUpcast"):
            rpc.add("EventSchemaService", m, getattr(self, m))
        app.features.add("event-schemas")

    # -- REST --------------------------------------------------------------------------------

    async def rest_register(self, req: HttpRequest, p: dict[str, str]) -> Response:
        b = read_object(req)
        text = b.get("schema_json")
        if text is None and "schema" in b:
            text = json.dumps(b["schema"])
        if not isinstance(text, str):
            raise ApiError("invalid_argument", "schema_json: a JSON Schema (as a string) is required")
        entry, status = await self.reg.register(
            env_of(req), b.get("event_name"), b.get("version", 1), text,
            str(b.get("description") or ""), str(b.get("change_reason") or ""), emitted_by(req))
        return json_response(entry.rest(status))

    async def rest_list(self, req: HttpRequest, p: dict[str, str]) -> Response:
        q = query_params(req)
        items = self.reg.list(env_of(req), q.get("event_name") or "")
        limit, offset = int_param(q, "limit", 100, 1000), int_param(q, "offset", 0, 1 << 31)
        return json_response({"schemas": [e.rest() for e in items[offset:offset + limit]],
                              "total_count": len(items)})

    async def rest_latest(self, req: HttpRequest, p: dict[str, str]) -> Response:
        return json_response(self.reg.get(env_of(req), p["name"]).rest())

    async def rest_get(self, req: HttpRequest, p: dict[str, str]) -> Response:
        return json_response(self.reg.get(env_of(req), p["name"], _version(p["version"])).rest())

    async def rest_delete(self, req: HttpRequest, p: dict[str, str]) -> Response:
        await self.reg.delete(env_of(req), p["name"], _version(p["version"]), "", emitted_by(req))
        return Response(204)

    async def rest_upcast(self, req: HttpRequest, p: dict[str, str]) -> Response:
        b = read_object(req)
        try:
            data = _upcast(str(b.get("eventName") or b.get("event_name") or ""),
                           b.get("fromVersion", b.get("from_version")),
                           b.get("toVersion", b.get("to_version")), b.get("data"))
        except ApiError as e:
            return json_response({"success": False, "data": None, "error": e.message,
                                  "steps_applied": []})
        return json_response({"success": True, "data": data, "steps_applied": []})

    # -- Connect ---------------------------------------------------------------------------------

    async def RegisterSchema(self, req: HttpRequest, m: dict[str, Any]) -> dict[str, Any]:
        _, status = await self.reg.register(env_of(req), m.get("event_name") or "",
                                            m.get("version") or 1, m.get("schema_json") or "",
                                            m.get("description") or "", m.get("change_reason") or "",
                                            emitted_by(req))
        return {"status": status}

    async def GetSchema(self, req: HttpRequest, m: dict[str, Any]) -> dict[str, Any]:
        return self.reg.get(env_of(req), m.get("event_name") or "", m.get("version") or 0).info()

    async def ListSchemas(self, req: HttpRequest, m: dict[str, Any]) -> dict[str, Any]:
        items = self.reg.list(env_of(req), m.get("event_name") or "")
        limit = min(m.get("limit") or 100, 1000)
        offset = max(m.get("offset") or 0, 0)
        return {"schemas": [e.info() for e in items[offset:offset + limit]], "total_count": len(items)}

    async def DeleteSchema(self, req: HttpRequest, m: dict[str, Any]) -> dict[str, Any]:
        if not m.get("version"):
            raise ApiError("invalid_argument", "version: required")
        await self.reg.delete(env_of(req), m.get("event_name") or "", m["version"],
                              m.get("change_reason") or "", emitted_by(req))
        return {}

    async def ListSchemaHistory(self, req: HttpRequest, m: dict[str, Any]) -> dict[str, Any]:
        return await self.reg.history(env_of(req), m.get("event_name") or "", m.get("version") or 0,
                                      m.get("limit") or 50, m.get("before_revision") or 0)

    async def GetSchemaRevision(self, req: HttpRequest, m: dict[str, Any]) -> dict[str, Any]:
        return {"entry": await self.reg.revision(env_of(req), m.get("event_name") or "",
                                                 m.get("version") or 0, m.get("revision") or 0)}

    async def CheckEnforcement(self, req: HttpRequest, m: dict[str, Any]) -> dict[str, Any]:
        return await self.reg.check_enforcement(env_of(req), m.get("event_name") or "",
                                                m.get("traffic_window_hours") or 24)

    async def TestUpcast(self, req: HttpRequest, m: dict[str, Any]) -> dict[str, Any]:
        data = _upcast(m.get("event_name") or "", m.get("from_version") or 0,
                       m.get("to_version") or 0, payload(m, "data"))
        out: dict[str, Any] = {"steps_applied": []}
        if data is not None:
            set_payload(out, "data", data)
        return out
