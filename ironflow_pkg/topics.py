"""Durable topic messages for ``PubSubService/Publish`` (worker-protocol.md §3.7).

This is the storage half that ``step.publish`` needs: validated topics, idempotency per
(environment, topic, key), a stored message with a sequence. Subscriptions and consumer groups
build on the same table in the pub/sub area.
"""

from __future__ import annotations

import re
import sqlite3
import uuid
from typing import Any

from collections.abc import Callable

from .errors import ApiError
from .items import Item, next_seq
from .journal import Journal
from .jsonutil import dumps, now_ts

TOPIC_RE = re.compile(r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$")
RESERVED = ("events:", "topic:", "entity:", "system.", "public.")
MAX_TOPIC = 255
MAX_KEY_BYTES = 255


def validate_topic(topic: Any) -> str:
    if not isinstance(topic, str) or not topic or len(topic) > MAX_TOPIC:
        raise ApiError("invalid_argument", "topic: 1-255 characters are required")
    if topic.startswith(RESERVED):
        raise ApiError("invalid_argument", f"topic: the prefix of {topic!r} is reserved")
    if not TOPIC_RE.match(topic):
        raise ApiError("invalid_argument", "topic: only [A-Za-z0-9._-] in '.'-separated tokens")
    return topic


def validate_key(key: Any) -> str | None:
    if key in (None, ""):
        return None
    if not isinstance(key, str) or len(key.encode()) > MAX_KEY_BYTES or any(
            c.isspace() or ord(c) < 32 for c in key):
        raise ApiError("invalid_argument", "idempotency_key: at most 255 bytes, no whitespace or "
                       "control characters")
    return key


async def publish(journal: Journal, env: str, topic: str, data: Any, key: str | None,
                  run_id: str = "", on_item: Callable[[Item], None] | None = None) -> dict[str, Any]:
    topic, key = validate_topic(topic), validate_key(key)
    now = now_ts()

    def w(conn: sqlite3.Connection) -> dict[str, Any]:
        if key is not None:
            row = conn.execute("SELECT id, seq FROM topic_messages WHERE env_id = ? AND topic = ? "
                               "AND idempotency_key = ?", (env, topic, key)).fetchone()
            if row is not None:
                return {"event_id": row["id"], "sequence": row["seq"], "duplicate": True}
        mid = f"evt_{uuid.uuid4().hex}"
        seq = next_seq(conn)
        conn.execute("INSERT INTO topic_messages (seq, id, env_id, topic, data, idempotency_key, "
                     "run_id, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                     (seq, mid, env, topic, dumps(data), key, run_id, now))
        return {"event_id": mid, "sequence": seq, "duplicate": False}
    # The check and the insert run in one writer transaction: two publishes with the same key
    # cannot both store a message.
    out = await journal.write(w)
    if not out["duplicate"] and on_item is not None:
        on_item(Item(out["sequence"], env, "default", "topic", topic, out["event_id"], data, None,
                     "api", now))
    return out
