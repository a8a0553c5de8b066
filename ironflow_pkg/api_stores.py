"""REST adapters for the state stores: KV (rest-api.md §3.12), config documents (§3.6) and
secrets (§3.22). Watches over WebSocket are wired by the real-time layer."""

from __future__ import annotations

from typing import Any

from .api_engine import env_of, read_json, read_object
from .app import App, json_response, query_params
from .configdocs import ConfigStore
from .errors import ApiError
from .items import SystemEvents
from .kv import KVStore
from .secrets_store import SecretStore
from .server import HttpRequest, Response


def _str_field(body: dict[str, Any], name: str, required: bool = False) -> str | None:
    v = body.get(name)
    if v is None:
        if required:
            raise ApiError("invalid_argument", f"{name}: required")
        return None
    if not isinstance(v, str):
        raise ApiError("invalid_argument", f"{name}: must be a string")
    return v


class StoreRoutes:
    def __init__(self, app: App, kv: KVStore, config: ConfigStore, secrets: SecretStore,
                 events: SystemEvents) -> None:
        self.kv, self.config, self.secrets, self.events = kv, config, secrets, events
        r = app.router
        r.add("GET", "/api/v1/kv/buckets", self.list_buckets)
        r.add("POST", "/api/v1/kv/buckets", self.create_bucket)
        r.add("GET", "/api/v1/kv/buckets/{bucket}", self.get_bucket)
        r.add("DELETE", "/api/v1/kv/buckets/{bucket}", self.delete_bucket)
        r.add("GET", "/api/v1/kv/buckets/{bucket}/keys", self.list_keys)
        r.add("GET", "/api/v1/kv/buckets/{bucket}/keys/{key...}", self.get_key)
        r.add("PUT", "/api/v1/kv/buckets/{bucket}/keys/{key...}", self.put_key)
        r.add("DELETE", "/api/v1/kv/buckets/{bucket}/keys/{key...}", self.delete_key)
        r.add("GET", "/api/v1/config", self.list_configs)
        r.add("GET", "/api/v1/config/{name}", self.get_config)
        r.add("POST", "/api/v1/config/{name}", self.set_config)
        r.add("PATCH", "/api/v1/config/{name}", self.patch_config)
        r.add("DELETE", "/api/v1/config/{name}", self.delete_config)
        r.add("GET", "/api/v1/secrets", self.list_secrets)
        r.add("POST", "/api/v1/secrets", self.create_secret)
        r.add("GET", "/api/v1/secrets/{name}", self.get_secret)
        r.add("PUT", "/api/v1/secrets/{name}", self.put_secret)
        r.add("PATCH", "/api/v1/secrets/{name}", self.patch_secret)
        r.add("DELETE", "/api/v1/secrets/{name}", self.delete_secret)
        app.features.update({"kv", "config", "secrets"})

    # -- KV --------------------------------------------------------------------------------------

    async def list_buckets(self, req: HttpRequest, p: dict[str, str]) -> Response:
        buckets = self.kv.list_buckets(env_of(req))
        return json_response({"buckets": buckets, "count": len(buckets)})

    async def create_bucket(self, req: HttpRequest, p: dict[str, str]) -> Response:
        return json_response(await self.kv.create_bucket(env_of(req), read_object(req)), 201)

    async def get_bucket(self, req: HttpRequest, p: dict[str, str]) -> Response:
        return json_response(self.kv.get_bucket(env_of(req), p["bucket"]))

    async def delete_bucket(self, req: HttpRequest, p: dict[str, str]) -> Response:
        await self.kv.delete_bucket(env_of(req), p["bucket"])
        return Response(204)

    async def list_keys(self, req: HttpRequest, p: dict[str, str]) -> Response:
        keys = self.kv.list_keys(env_of(req), p["bucket"], query_params(req).get("filter") or "")
        return json_response({"keys": keys, "count": len(keys)})

    async def get_key(self, req: HttpRequest, p: dict[str, str]) -> Response:
        entry = await self.kv.get(env_of(req), p["bucket"], p["key"])
        return json_response(entry, headers=[("ETag", f'"{entry["revision"]}"')])

    async def put_key(self, req: HttpRequest, p: dict[str, str]) -> Response:
        # The raw body bytes are the value, whatever the content type (rest-api.md §3.12).
        rev = await self.kv.put(env_of(req), p["bucket"], p["key"], req.body,
                                req.header("if-match"), req.header("if-none-match"))
        return json_response({"revision": rev}, headers=[("ETag", f'"{rev}"')])

    async def delete_key(self, req: HttpRequest, p: dict[str, str]) -> Response:
        purge = (query_params(req).get("purge") or "").lower() == "true"
        return json_response({"revision": await self.kv.delete(env_of(req), p["bucket"], p["key"], purge)})

    # -- config ----------------------------------------------------------------------------------

    async def list_configs(self, req: HttpRequest, p: dict[str, str]) -> Response:
        return json_response({"configs": self.config.list(env_of(req))})

    async def get_config(self, req: HttpRequest, p: dict[str, str]) -> Response:
        doc = self.config.get(env_of(req), p["name"])
        return json_response(doc, headers=[("ETag", f'"{doc["revision"]}"')])

    async def set_config(self, req: HttpRequest, p: dict[str, str], merge: bool = False) -> Response:
        body = read_json(req)
        env = env_of(req)
        out, created = await self.config.set(env, p["name"], body, req.header("if-match"),
                                              None if merge else req.header("if-none-match"), merge)
        await self.events.emit(env, f"system.config.{p['name']}.updated", out)
        return json_response(out, 201 if created else 200)

    async def patch_config(self, req: HttpRequest, p: dict[str, str]) -> Response:
        return await self.set_config(req, p, merge=True)

    async def delete_config(self, req: HttpRequest, p: dict[str, str]) -> Response:
        env = env_of(req)
        existed = (env, p["name"]) in self.config.docs
        await self.config.delete(env, p["name"], req.header("if-match"))
        if existed:
            await self.events.emit(env, f"system.config.{p['name']}.deleted", {"name": p["name"]})
        return Response(204)

    # -- secrets (metadata only on every read) ---------------------------------------------------

    async def list_secrets(self, req: HttpRequest, p: dict[str, str]) -> Response:
        return json_response(await self.secrets.list(env_of(req)))

    async def create_secret(self, req: HttpRequest, p: dict[str, str]) -> Response:
        b = read_object(req)
        env = env_of(req)
        meta = await self.secrets.create(env, _str_field(b, "name", True) or "",
                                         _str_field(b, "value", True) or "",
                                         _str_field(b, "description") or "")
        await self._secret_event(env, meta, "created")
        return json_response(meta, 201)

    async def _secret_event(self, env: str, meta: dict[str, Any], kind: str) -> None:
        # websocket.md §5.5: {name, revision}, never the value.
        await self.events.emit(env, f"system.secret.{meta['name']}.{kind}",
                               {"name": meta["name"], "revision": meta["revision"]})

    async def get_secret(self, req: HttpRequest, p: dict[str, str]) -> Response:
        return json_response(await self.secrets.get_metadata(env_of(req), p["name"]))

    async def put_secret(self, req: HttpRequest, p: dict[str, str]) -> Response:
        b = read_object(req)
        env = env_of(req)
        meta = await self.secrets.put(env, p["name"], _str_field(b, "value", True) or "",
                                      _str_field(b, "description"))
        await self._secret_event(env, meta, "created" if meta["revision"] == 1 else "updated")
        return json_response(meta)

    async def patch_secret(self, req: HttpRequest, p: dict[str, str]) -> Response:
        b = read_object(req)
        env = env_of(req)
        meta = await self.secrets.patch(env, p["name"], new_name=_str_field(b, "name"),
                                        description=_str_field(b, "description"))
        if meta["name"] != p["name"]:  # a rename: the old name is gone, the new one appears
            await self._secret_event(env, {"name": p["name"], "revision": meta["revision"]}, "deleted")
            await self._secret_event(env, meta, "created")
        else:
            await self._secret_event(env, meta, "updated")
        return json_response(meta)

    async def delete_secret(self, req: HttpRequest, p: dict[str, str]) -> Response:
        env = env_of(req)
        meta = await self.secrets.delete(env, p["name"])
        await self._secret_event(env, meta, "deleted")
        return Response(204)
