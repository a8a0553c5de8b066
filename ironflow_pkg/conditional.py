"""Conditional writes (rest-api.md §1.7): ``If-None-Match: *`` and ``If-Match: <revision>|*``."""

from __future__ import annotations

from .errors import ApiError


def precondition_failed(message: str, current: int | None) -> ApiError:
    return ApiError("PRECONDITION_FAILED", message, status=412,
                    details={"revision": current} if current is not None else None)


def check(if_match: str | None, if_none_match: str | None, current: int | None) -> None:
    """Raise 412 when the request's preconditions do not hold for the resource's current
    revision (``None`` = the resource does not exist)."""
    if if_none_match is not None:
        if if_none_match.strip() != "*":
            raise ApiError("invalid_argument", "If-None-Match: only * is supported")
        if current is not None:
            raise precondition_failed("key already exists", current)
    if if_match is not None:
        want = if_match.strip()
        if current is None:
            raise precondition_failed("resource does not exist", None)
        if want == "*":
            return
        want = want.strip('"').removeprefix("W/").strip('"')
        if not want.isdigit():
            raise ApiError("invalid_argument", "If-Match: a revision number or * is required")
        if int(want) != current:
            raise precondition_failed(f"revision mismatch: current revision is {current}", current)
