"""API keys, environments and request principals.

Keys are ``ifkey_`` + 32 lowercase hex (features.md §14.1), stored only as SHA-256 hex digests.
The whole key table is small and read on every request, so it lives in memory (hot state) and
the journal is the truth: every change is committed first, then applied to the cache.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import re
import secrets
import sqlite3
import uuid
from dataclasses import dataclass

from .errors import ApiError
from .journal import Journal
from .jsonutil import now_ts

log = logging.getLogger("ironflow.auth")

KEY_RE = re.compile(r"^ifkey_[0-9a-f]{32}\Z")
DEFAULT_ENV = "env_default"


def now_rfc3339() -> str:
    """Current time, RFC 3339 UTC with milliseconds and ``Z`` (spec README §3.4)."""
    return now_ts()


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def generate_key() -> str:
    """A new tenant key from 16 random bytes."""
    return "ifkey_" + secrets.token_hex(16)


@dataclass(frozen=True)
class KeyRecord:
    id: str
    env_id: str
    name: str
    key_hash: str
    key_prefix: str
    roles: tuple[str, ...]
    env_scoped: bool
    expires_at: str | None
    revoked: bool


@dataclass(frozen=True)
class Principal:
    """Who is calling. ``key_id`` is empty in dev mode (authentication bypassed)."""

    key_id: str
    roles: tuple[str, ...]
    #: The environment the credential is bound to, when it is environment-scoped.
    env_scope: str | None = None
    dev: bool = False


DEV_PRINCIPAL = Principal(key_id="", roles=("admin",), dev=True)


@dataclass(frozen=True)
class Environment:
    id: str
    name: str


class AuthStore:
    """In-memory view of API keys and environments, backed by the journal."""

    def __init__(self, journal: Journal) -> None:
        self.journal = journal
        self._by_hash: dict[str, KeyRecord] = {}
        self._envs_by_id: dict[str, Environment] = {}
        self._envs_by_name: dict[str, Environment] = {}

    # -- loading -------------------------------------------------------------------------------

    def load(self) -> None:
        """Read keys and environments from the journal (start-up)."""
        def q(conn: sqlite3.Connection) -> tuple[list[sqlite3.Row], list[sqlite3.Row]]:
            keys = conn.execute(
                "SELECT id, env_id, name, key_hash, key_prefix, roles, env_scoped, expires_at, "
                "revoked_at FROM api_keys").fetchall()
            envs = conn.execute("SELECT id, name FROM environments").fetchall()
            return keys, envs
        keys, envs = self.journal.read_sync(q)
        self._by_hash = {r["key_hash"]: _record(r) for r in keys}
        self._envs_by_id = {r["id"]: Environment(r["id"], r["name"]) for r in envs}
        self._envs_by_name = {e.name: e for e in self._envs_by_id.values()}

    @property
    def key_count(self) -> int:
        return sum(1 for k in self._by_hash.values() if not k.revoked)

    # -- keys ----------------------------------------------------------------------------------

    def create_key_sync(self, secret: str, name: str, roles: tuple[str, ...] = ("admin",),
                        env_id: str = DEFAULT_ENV, env_scoped: bool = False) -> KeyRecord:
        """Store a key with the given secret (blocking; start-up and CLI only)."""
        if not KEY_RE.match(secret):
            raise ValueError("API keys look like ifkey_ followed by 32 lowercase hex characters")
        rec = KeyRecord(id=f"ak_{uuid.uuid4()}", env_id=env_id, name=name,
                        key_hash=hash_key(secret), key_prefix=secret[:14], roles=tuple(roles),
                        env_scoped=env_scoped, expires_at=None, revoked=False)

        def w(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO api_keys (id, env_id, name, key_hash, key_prefix, roles, env_scoped, "
                "created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (rec.id, rec.env_id, rec.name, rec.key_hash, rec.key_prefix,
                 json.dumps(list(rec.roles)), int(rec.env_scoped), now_rfc3339()))
        self.journal.write_sync(w)
        self._by_hash[rec.key_hash] = rec
        return rec

    def has_key(self, secret: str) -> bool:
        rec = self._by_hash.get(hash_key(secret))
        return rec is not None and not rec.revoked

    def ensure_bootstrap(self, *, key: str, key_file: str, dev: bool) -> str | None:
        """Make sure an admin key exists (spec README §3.1). Returns a newly generated secret
        that must be shown to the operator once, or None."""
        if key:
            if not self.has_key(key):
                self.create_key_sync(key, "bootstrap (IRONFLOW_BOOTSTRAP_API_KEY)")
                log.info("bootstrap API key from IRONFLOW_BOOTSTRAP_API_KEY stored")
            return None
        if key_file:
            existing = _read_key_file(key_file)
            if existing and self.has_key(existing):
                return None
            secret = generate_key()
            self.create_key_sync(secret, "bootstrap (key file)")
            _write_key_file(key_file, secret)
            log.info("bootstrap API key written", extra={"fields": {"path": key_file}})
            return None
        if not dev and self.key_count == 0:
            secret = generate_key()
            self.create_key_sync(secret, "bootstrap (first start)")
            return secret
        return None

    def authenticate(self, token: str) -> Principal | None:
        """The principal for a bearer token, or None if it is not a valid, live key."""
        if not token.startswith("ifkey_") or len(token) != 38:
            return None
        digest = hash_key(token)
        rec = self._by_hash.get(digest)
        # The dict lookup is keyed by a hash of the secret, so its timing says nothing about
        # the secret itself; the explicit comparison keeps the check constant-time regardless.
        if rec is None or not hmac.compare_digest(rec.key_hash, digest) or rec.revoked:
            return None
        if rec.expires_at and rec.expires_at <= now_rfc3339():
            return None
        return Principal(key_id=rec.id, roles=rec.roles,
                         env_scope=rec.env_id if rec.env_scoped else None)

    # -- environments --------------------------------------------------------------------------

    def resolve_environment(self, requested: str | None, principal: Principal) -> Environment:
        """Pick the request's environment (spec README §3.2) and check the credential may use it."""
        if requested:
            env = self._envs_by_id.get(requested) or self._envs_by_name.get(requested)
            if env is None:
                raise ApiError("not_found", "environment not found")
        elif principal.env_scope:
            env = self._envs_by_id.get(principal.env_scope)
            if env is None:
                raise ApiError("not_found", "environment not found")
        else:
            env = self._envs_by_id[DEFAULT_ENV]
        if principal.env_scope and env.id != principal.env_scope:
            raise ApiError("permission_denied", "API key is scoped to another environment")
        return env


def _record(r: sqlite3.Row) -> KeyRecord:
    return KeyRecord(id=r["id"], env_id=r["env_id"], name=r["name"], key_hash=r["key_hash"],
                     key_prefix=r["key_prefix"], roles=tuple(json.loads(r["roles"] or "[]")),
                     env_scoped=bool(r["env_scoped"]), expires_at=r["expires_at"],
                     revoked=r["revoked_at"] is not None)


def _read_key_file(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8") as f:
            value = f.read().strip()
    except FileNotFoundError:
        return None
    return value if KEY_RE.match(value) else None


def _write_key_file(path: str, secret: str) -> None:
    """Write the key with mode 0600, atomically (a reader never sees half a key)."""
    d = os.path.dirname(os.path.abspath(path))
    os.makedirs(d, exist_ok=True)
    tmp = f"{path}.tmp-{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, (secret + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
