"""One error model for every transport.

Domain code raises :class:`ApiError` (or a subclass) with a Connect-style ``code``; the REST
adapter renders ``{"error", "message", "code", ...}`` with the status from :data:`CODE_STATUS`
(rest-api.md §1.6), the Connect adapter renders ``{"code", "message"}`` (connect.md §6).
Unexpected exceptions never reach a client as such: the app turns them into ``internal``.
"""

from __future__ import annotations

import json
from typing import Any

#: Connect code -> HTTP status (rest-api.md §1.6, first listed status).
CODE_STATUS: dict[str, int] = {
    "canceled": 499,
    "unknown": 500,
    "invalid_argument": 400,
    "deadline_exceeded": 504,
    "not_found": 404,
    "already_exists": 409,
    "permission_denied": 403,
    "resource_exhausted": 429,
    "failed_precondition": 400,
    "aborted": 409,
    "out_of_range": 400,
    "unimplemented": 501,
    "internal": 500,
    "unavailable": 503,
    "data_loss": 500,
    "unauthenticated": 401,
}

#: HTTP status -> Connect code, for errors that start life as a status (transport errors).
STATUS_CODE: dict[int, str] = {
    400: "invalid_argument", 401: "unauthenticated", 403: "permission_denied", 404: "not_found",
    405: "unimplemented", 408: "deadline_exceeded", 409: "aborted", 412: "failed_precondition",
    413: "resource_exhausted", 414: "invalid_argument", 415: "invalid_argument",
    417: "failed_precondition", 428: "failed_precondition", 429: "resource_exhausted",
    431: "resource_exhausted", 500: "internal", 501: "unimplemented", 503: "unavailable",
    504: "deadline_exceeded", 505: "unimplemented",
}


class ApiError(Exception):
    """An error with the reply to send. ``status`` defaults from ``code``; ``error`` overrides
    the ``error`` key (only for the worker fencing literal ``STALE_EXECUTION``)."""

    def __init__(self, code: str, message: str, *, status: int | None = None,
                 details: dict[str, Any] | None = None, retryable: bool | None = None,
                 retry_after: float | None = None, error: str | None = None,
                 headers: list[tuple[str, str]] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status if status is not None else CODE_STATUS.get(code.lower(), 500)
        self.details = details
        self.retryable = retryable
        self.retry_after = retry_after
        self.error = error
        self.headers = list(headers or [])

    def rest_body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"error": self.error or self.message, "message": self.message,
                                "code": self.code}
        if self.retryable is not None:
            body["retryable"] = self.retryable
        if self.retry_after is not None:
            body["retry_after"] = self.retry_after
        if self.details:
            body["details"] = self.details
        return body

    def connect_body(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message}

    def response_headers(self) -> list[tuple[str, str]]:
        headers = list(self.headers)
        if self.retry_after is not None and self.status in (429, 503):
            headers.append(("Retry-After", str(max(1, int(round(self.retry_after))))))
        return headers


def invalid(message: str, **kw: Any) -> ApiError:
    return ApiError("invalid_argument", message, **kw)


def not_found(message: str = "not found", **kw: Any) -> ApiError:
    return ApiError("not_found", message, **kw)


def from_status(status: int, message: str) -> ApiError:
    """An ApiError for a transport-level status (malformed request, limits)."""
    return ApiError(STATUS_CODE.get(status, "internal" if status >= 500 else "invalid_argument"),
                    message, status=status)


def dumps(obj: Any) -> bytes:
    """Compact UTF-8 JSON, as every response body is written."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
