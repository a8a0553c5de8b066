"""Method + path router with parameters.

rest-api.md §1.2: the raw (percent-encoded) path is split on literal ``/`` first, then each
captured segment is decoded on its own, so ``%2F`` inside a KV key stays part of the key.
Templates look like ``/api/v1/kv/buckets/{bucket}/keys/{key...}``: ``{name}`` captures one
segment, ``{name...}`` (last only) captures the rest of the path, decoded per segment and
re-joined with ``/``. Matching walks a segment trie, so the cost does not grow with the number
of routes; literal segments win over parameters.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote_to_bytes

from .errors import ApiError


@dataclass(frozen=True)
class Route:
    method: str
    template: str
    handler: Callable[..., Any]
    #: Auth class: "public", "key" (API key), or anything the app defines.
    auth: str = "key"
    #: Free-form facts for the app (feature, metrics label...).
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Match:
    route: Route
    params: dict[str, str]


class _Node:
    __slots__ = ("literal", "param", "param_name", "rest", "rest_name", "routes")

    def __init__(self) -> None:
        self.literal: dict[str, _Node] = {}
        self.param: _Node | None = None
        self.param_name = ""
        self.rest: dict[str, Route] | None = None
        self.rest_name = ""
        self.routes: dict[str, Route] = {}


class RouteNotFound(ApiError):
    def __init__(self) -> None:
        super().__init__("not_found", "not found")


class MethodNotAllowed(ApiError):
    def __init__(self, allowed: list[str]) -> None:
        super().__init__("unimplemented", "method not allowed", status=405,
                         headers=[("Allow", ", ".join(allowed))])
        self.allowed = allowed


def decode_segment(raw: str) -> str:
    """Percent-decode one path segment as UTF-8; reject what can never name a resource."""
    if "%" in raw:
        try:
            seg = unquote_to_bytes(raw).decode("utf-8")
        except UnicodeDecodeError:
            raise ApiError("invalid_argument", "path segment is not valid UTF-8") from None
    else:
        seg = raw
    if seg in (".", "..") or "\x00" in seg:
        raise ApiError("invalid_argument", "invalid path segment")
    return seg


def split_path(raw_path: str) -> list[str]:
    """Split the raw path into raw segments. A trailing slash is not significant; any other
    empty segment is an error (rest-api.md §1.2)."""
    if not raw_path.startswith("/"):
        raise ApiError("invalid_argument", "invalid path")
    parts = raw_path[1:].split("/")
    if parts and parts[-1] == "":
        parts.pop()
    for seg in parts:
        if seg in ("", ".", ".."):
            raise ApiError("invalid_argument", "empty, '.' or '..' path segment")
        if "%" in seg:
            decode_segment(seg)  # %2e%2e, %00 and broken UTF-8 are refused for every route
    return parts


class Router:
    def __init__(self) -> None:
        self._root = _Node()
        self.routes: list[Route] = []

    def add(self, method: str, template: str, handler: Callable[..., Any], *, auth: str = "key",
            **meta: Any) -> Route:
        route = Route(method.upper(), template, handler, auth, meta)
        node = self._root
        segs = split_path(template)
        for i, seg in enumerate(segs):
            if seg.startswith("{") and seg.endswith("...}"):
                if i != len(segs) - 1:
                    raise ValueError(f"rest parameter must be last: {template}")
                name = seg[1:-4]
                if node.rest is None:
                    node.rest, node.rest_name = {}, name
                elif node.rest_name != name:
                    raise ValueError(f"conflicting parameter names at {template}")
                self._put(node.rest, route)
                self.routes.append(route)
                return route
            if seg.startswith("{") and seg.endswith("}"):
                name = seg[1:-1]
                if node.param is None:
                    node.param, node.param_name = _Node(), name
                elif node.param_name != name:
                    raise ValueError(f"conflicting parameter names at {template}")
                node = node.param
            else:
                node = node.literal.setdefault(seg, _Node())
        self._put(node.routes, route)
        self.routes.append(route)
        return route

    @staticmethod
    def _put(table: dict[str, Route], route: Route) -> None:
        if route.method in table:
            raise ValueError(f"duplicate route {route.method} {route.template}")
        table[route.method] = route
        if route.method == "GET" and "HEAD" not in table:
            table["HEAD"] = route

    def match(self, method: str, raw_path: str) -> Match:
        """Find the route, or raise RouteNotFound / MethodNotAllowed (with Allow) /
        ApiError(invalid_argument) for a malformed path."""
        segs = split_path(raw_path)
        found = self._walk(self._root, segs, 0, {})
        if found is None:
            raise RouteNotFound()
        table, params = found
        route = table.get(method)
        if route is None:
            raise MethodNotAllowed(sorted(set(table) | {"OPTIONS"}))
        return Match(route, params)

    def _walk(self, node: _Node, segs: list[str], i: int,
              params: dict[str, str]) -> tuple[dict[str, Route], dict[str, str]] | None:
        if i == len(segs):
            return (node.routes, params) if node.routes else None
        raw = segs[i]
        child = node.literal.get(raw)
        if child is None and "%" in raw:
            child = node.literal.get(decode_segment(raw))
        if child is not None:
            got = self._walk(child, segs, i + 1, params)
            if got is not None:
                return got
        if node.param is not None:
            got = self._walk(node.param, segs, i + 1,
                             {**params, node.param_name: decode_segment(raw)})
            if got is not None:
                return got
        if node.rest is not None:
            rest = "/".join(decode_segment(s) for s in segs[i:])
            return node.rest, {**params, node.rest_name: rest}
        return None
