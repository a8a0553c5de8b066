"""Secrets: write-only values per environment, encrypted at rest (features.md §8, rest-api.md §3.22).

Storage (migration 0004): one row per (env_id, name). With a master key (``IRONFLOW_MASTER_KEY``,
64 hex chars = 32 bytes) the value column holds
``"v1:" + base64(nonce (12 random bytes) || AES-256-GCM ciphertext || tag (16 bytes))`` with
AAD = ``"<environment id>/<secret name>"`` (UTF-8): a ciphertext copied onto another row (other
name or other environment) fails authentication, so rows cannot be swapped. Without a master key
the column holds ``"plain:" + base64(UTF-8 value)`` and ``encrypted = 0``; :attr:`plaintext` tells
the app to warn. A ``plain:`` row stays readable after a key is configured (it is re-encrypted on
its next write); a ``v1:`` row that does not decrypt (key changed or removed) is reported as
missing by :meth:`resolve` (run fails with ``SECRET_NOT_FOUND``, features.md §2.9) and listed by
:meth:`undecryptable` for ``/ready`` warnings; its metadata stays readable.

Values never leave this module except through :meth:`resolve` (dispatch to functions that
declare them). There is deliberately no "reveal" method: rest-api.md §3.22 has no route that
returns a value. Metadata is ``SecretInfoResponse``: ``{name, revision, description, created_at,
updated_at}``.

Names follow rest-api.md §3.22: ``^[A-Za-z_][A-Za-z0-9_.-]{0,127}$`` (1-128 chars, a letter or
underscore first; letters, digits, ``_``, ``.``, ``-`` after). Values are strings of at most
64 KiB as UTF-8 (features.md §22). Errors are :class:`ApiError` with Connect codes.

Change notifications (``system.secret.<name>.created|updated|deleted``, data ``{name,
revision}``) are the caller's job: :meth:`put` returns ``revision == 1`` exactly when it created
the secret; :meth:`delete` returns the metadata of what it removed.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import re
import secrets as _random
import sqlite3
from typing import Any, Callable, TypeVar

from ironflow_pkg import aesgcm
from ironflow_pkg.errors import ApiError
from ironflow_pkg.jsonutil import now_ts

__all__ = [
    "MAX_DESCRIPTION_CHARS",
    "MAX_VALUE_BYTES",
    "NAME_RE",
    "SecretStore",
    "validate_name",
]

T = TypeVar("T")

NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,127}")  # rest-api.md §3.22 (use fullmatch)
MAX_VALUE_BYTES = 64 * 1024  # features.md §22: secret value 64 KiB (UTF-8 bytes)
# Not in the spec; generous so no real client hits it, but bounds the row a caller can make.
MAX_DESCRIPTION_CHARS = 4096
# Pure-Python AES-GCM runs at ~800 KB/s: values above this size are (de|en)crypted in a worker
# thread so one large secret does not hold the event loop for tens of milliseconds.
OFFLOAD_BYTES = 4096
PREFIX_ENCRYPTED = "v1:"
PREFIX_PLAIN = "plain:"

_META_COLUMNS = "name, revision, description, created_at, updated_at"


class _Undecryptable(Exception):
    """A stored value that cannot be turned back into text with the current key."""


def validate_name(name: Any, field: str = "name") -> str:
    """Return ``name`` if it is a valid secret name, else raise ``invalid_argument``."""
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        raise ApiError(
            "invalid_argument",
            f"{field} must be 1-128 characters: a letter or '_' first, then letters, digits, "
            "'_', '.' or '-'",
        )
    return name


def _validate_value(value: Any) -> bytes:
    if not isinstance(value, str):
        raise ApiError("invalid_argument", "value must be a string")
    try:
        raw = value.encode("utf-8")
    except UnicodeEncodeError:
        raise ApiError("invalid_argument", "value must be valid Unicode text") from None
    if len(raw) > MAX_VALUE_BYTES:
        raise ApiError("invalid_argument",
                       f"value is {len(raw)} bytes; secrets are limited to {MAX_VALUE_BYTES} bytes")
    return raw


def _validate_description(description: Any) -> str:
    if not isinstance(description, str):
        raise ApiError("invalid_argument", "description must be a string")
    if len(description) > MAX_DESCRIPTION_CHARS:
        raise ApiError("invalid_argument",
                       f"description is limited to {MAX_DESCRIPTION_CHARS} characters")
    return description


def _meta(row: sqlite3.Row | tuple[Any, ...]) -> dict[str, Any]:
    """SecretInfoResponse (rest-api.md §6) from a row of ``_META_COLUMNS``."""
    name, revision, description, created_at, updated_at = tuple(row)[:5]
    return {"name": name, "revision": revision, "description": description,
            "created_at": created_at, "updated_at": updated_at}


def _not_found(name: str) -> ApiError:
    return ApiError("not_found", f"secret not found: {name}")


class SecretStore:
    """Secrets of every environment in one journal; every method takes the environment id.

    ``master_key_hex``: 64 hex characters (32-byte AES-256 key) or ``""`` for plaintext storage.
    Anything else raises :class:`ValueError` (the settings loader already refuses to start).
    """

    def __init__(self, journal: Any, master_key_hex: str = "") -> None:
        self.journal = journal
        if master_key_hex:
            if not re.fullmatch(r"[0-9a-fA-F]{64}", master_key_hex):
                raise ValueError("master key must be 64 hex characters (a 256-bit key)")
            self._cipher: aesgcm.AesGcm | None = aesgcm.AesGcm(bytes.fromhex(master_key_hex))
        else:
            self._cipher = None
        #: True when values are stored unencrypted (no master key): the app warns at start-up.
        self.plaintext = self._cipher is None

    # --- encoding --------------------------------------------------------------------------------

    @staticmethod
    def _aad(env: str, name: str) -> bytes:
        return f"{env}/{name}".encode("utf-8")  # features.md §8: AAD = <environment id>/<name>

    def _seal(self, env: str, name: str, raw: bytes) -> tuple[str, int]:
        """Stored form of ``raw`` (UTF-8 value) for row (env, name): (text, encrypted flag)."""
        if self._cipher is None:
            return PREFIX_PLAIN + base64.b64encode(raw).decode("ascii"), 0
        nonce = _random.token_bytes(aesgcm.NONCE_SIZE)  # fresh per write; never reused by design
        sealed = nonce + self._cipher.encrypt(nonce, raw, self._aad(env, name))
        return PREFIX_ENCRYPTED + base64.b64encode(sealed).decode("ascii"), 1

    def _open(self, env: str, name: str, stored: str) -> str:
        """The value text of a stored column, or :class:`_Undecryptable`."""
        try:
            if stored.startswith(PREFIX_PLAIN):
                return base64.b64decode(stored[len(PREFIX_PLAIN):], validate=True).decode("utf-8")
            if stored.startswith(PREFIX_ENCRYPTED) and self._cipher is not None:
                blob = base64.b64decode(stored[len(PREFIX_ENCRYPTED):], validate=True)
                if len(blob) < aesgcm.NONCE_SIZE + aesgcm.TAG_SIZE:
                    raise _Undecryptable(name)
                nonce, body = blob[:aesgcm.NONCE_SIZE], blob[aesgcm.NONCE_SIZE:]
                return self._cipher.decrypt(nonce, body, self._aad(env, name)).decode("utf-8")
        except (binascii.Error, ValueError, UnicodeDecodeError):  # AuthenticationError included
            raise _Undecryptable(name) from None
        raise _Undecryptable(name)  # v1 without a key, or an unknown format

    @staticmethod
    async def _cpu(size: int, fn: Callable[[], T]) -> T:
        """Run crypto inline when small, in a worker thread when large (see OFFLOAD_BYTES)."""
        if size > OFFLOAD_BYTES:
            return await asyncio.to_thread(fn)
        return fn()

    # --- reads -----------------------------------------------------------------------------------

    async def get_metadata(self, env: str, name: str) -> dict[str, Any]:
        """SecretInfoResponse of one secret (never its value); ``not_found`` if missing."""
        validate_name(name)

        def read(conn: sqlite3.Connection) -> Any:
            return conn.execute(f"SELECT {_META_COLUMNS} FROM secrets WHERE env_id = ? AND name = ?",
                                (env, name)).fetchone()

        row = await self.journal.read(read)
        if row is None:
            raise _not_found(name)
        return _meta(row)

    async def list(self, env: str) -> list[dict[str, Any]]:
        """Metadata of every secret in ``env``, by name (never values)."""
        def read(conn: sqlite3.Connection) -> list[Any]:
            return conn.execute(f"SELECT {_META_COLUMNS} FROM secrets WHERE env_id = ? "
                                "ORDER BY name", (env,)).fetchall()

        return [_meta(row) for row in await self.journal.read(read)]

    async def resolve(self, env: str, names: list[str]) -> dict[str, str] | str:
        """Values for dispatch (features.md §2.9): ``{name: value}`` for every declared name, or
        the first name (in ``names`` order) that is missing or cannot be decrypted. This is the
        engine's ``engine.secrets(env, names)`` hook."""
        wanted = list(dict.fromkeys(names))
        if not wanted:
            return {}

        def read(conn: sqlite3.Connection) -> dict[str, str]:
            found: dict[str, str] = {}
            for start in range(0, len(wanted), 500):  # stay under sqlite's variable limit
                chunk = wanted[start:start + 500]
                marks = ",".join("?" * len(chunk))
                for row in conn.execute(
                        f"SELECT name, value FROM secrets WHERE env_id = ? AND name IN ({marks})",
                        (env, *chunk)):
                    found[row[0]] = row[1]
            return found

        stored = await self.journal.read(read)
        for name in wanted:
            if name not in stored:
                return name
        size = sum(len(v) for v in stored.values())

        def decode() -> dict[str, str] | str:
            out: dict[str, str] = {}
            for name in wanted:
                try:
                    out[name] = self._open(env, name, stored[name])
                except _Undecryptable:
                    return name
            return out

        return await self._cpu(size, decode)

    async def undecryptable(self) -> list[tuple[str, str]]:
        """(env_id, name) of every stored value the current key cannot read (``/ready``)."""
        rows = await self.journal.read(self._all_values)
        return await asyncio.to_thread(self._undecryptable_rows, rows)  # may be many rows

    def undecryptable_sync(self) -> list[tuple[str, str]]:
        """Blocking :meth:`undecryptable` for start-up code (not from an event loop)."""
        return self._undecryptable_rows(self.journal.read_sync(self._all_values))

    @staticmethod
    def _all_values(conn: sqlite3.Connection) -> list[tuple[str, str, str]]:
        return [tuple(r) for r in conn.execute(
            "SELECT env_id, name, value FROM secrets ORDER BY env_id, name")]

    def _undecryptable_rows(self, rows: list[tuple[str, str, str]]) -> list[tuple[str, str]]:
        bad = []
        for env, name, value in rows:
            try:
                self._open(env, name, value)
            except _Undecryptable:
                bad.append((env, name))
        return bad

    # --- writes ----------------------------------------------------------------------------------

    async def create(self, env: str, name: str, value: str,
                     description: str = "") -> dict[str, Any]:
        """Create a secret at revision 1; ``already_exists`` if the name is taken (POST)."""
        return await self._store(env, name, value, description, create_only=True)

    async def put(self, env: str, name: str, value: str,
                  description: str | None = None) -> dict[str, Any]:
        """Set a new value (PUT): revision + 1, or create at revision 1 if missing (Decision).
        ``description=None`` keeps the current description (``""`` on create)."""
        return await self._store(env, name, value, description, create_only=False)

    async def _store(self, env: str, name: str, value: str, description: str | None,
                     create_only: bool) -> dict[str, Any]:
        validate_name(name)
        raw = _validate_value(value)
        if description is not None:
            _validate_description(description)
        # AAD does not depend on the revision, so sealing can happen before the write.
        stored, encrypted = await self._cpu(len(raw), lambda: self._seal(env, name, raw))

        def write(conn: sqlite3.Connection) -> dict[str, Any]:
            now = now_ts()
            row = conn.execute("SELECT revision, description, created_at FROM secrets "
                               "WHERE env_id = ? AND name = ?", (env, name)).fetchone()
            if row is None:
                meta = {"name": name, "revision": 1, "description": description or "",
                        "created_at": now, "updated_at": now}
                conn.execute(
                    "INSERT INTO secrets (env_id, name, value, encrypted, revision, description, "
                    "created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (env, name, stored, encrypted, 1, meta["description"], now, now))
                return meta
            if create_only:
                raise ApiError("already_exists", f"secret already exists: {name}")
            meta = {"name": name, "revision": row[0] + 1,
                    "description": row[1] if description is None else description,
                    "created_at": row[2], "updated_at": now}
            conn.execute(
                "UPDATE secrets SET value = ?, encrypted = ?, revision = ?, description = ?, "
                "updated_at = ? WHERE env_id = ? AND name = ?",
                (stored, encrypted, meta["revision"], meta["description"], now, env, name))
            return meta

        return await self.journal.write(write)

    async def patch(self, env: str, name: str, *, new_name: str | None = None,
                    description: str | None = None) -> dict[str, Any]:
        """Rename and/or re-describe (PATCH); ``None`` leaves a field alone. The value and
        revision are kept; a rename re-encrypts under the new name's AAD, so a value the current
        key cannot read cannot be renamed (``failed_precondition``: PUT a new value first).
        Renaming onto an existing name → ``already_exists``."""
        validate_name(name)
        if new_name is not None:
            validate_name(new_name, "new name")
        if description is not None:
            _validate_description(description)
        target = name if new_name is None else new_name
        resealed: tuple[str, str, int] | None = None  # (old stored, new stored, encrypted)
        if target != name:
            def read(conn: sqlite3.Connection) -> Any:
                return conn.execute("SELECT value FROM secrets WHERE env_id = ? AND name = ?",
                                    (env, name)).fetchone()

            row = await self.journal.read(read)
            if row is None:
                raise _not_found(name)
            old = row[0]

            def reseal() -> tuple[str, str, int]:
                try:
                    text = self._open(env, name, old)
                except _Undecryptable:
                    raise ApiError(
                        "failed_precondition",
                        f"secret {name} cannot be decrypted with the current master key and so "
                        "cannot be renamed; set a new value first") from None
                return (old, *self._seal(env, target, text.encode("utf-8")))

            resealed = await self._cpu(len(old), reseal)

        def write(conn: sqlite3.Connection) -> dict[str, Any]:
            row = conn.execute(f"SELECT {_META_COLUMNS}, value FROM secrets "
                               "WHERE env_id = ? AND name = ?", (env, name)).fetchone()
            if row is None:
                raise _not_found(name)
            meta = _meta(row)
            now = now_ts()
            if resealed is not None:
                if row[5] != resealed[0]:
                    raise ApiError("aborted", f"secret {name} changed concurrently; retry")
                taken = conn.execute("SELECT 1 FROM secrets WHERE env_id = ? AND name = ?",
                                     (env, target)).fetchone()
                if taken is not None:
                    raise ApiError("already_exists", f"secret already exists: {target}")
                conn.execute("UPDATE secrets SET name = ?, value = ?, encrypted = ? "
                             "WHERE env_id = ? AND name = ?",
                             (target, resealed[1], resealed[2], env, name))
                meta["name"] = target
            if description is not None:
                meta["description"] = description
            meta["updated_at"] = now
            conn.execute("UPDATE secrets SET description = ?, updated_at = ? "
                         "WHERE env_id = ? AND name = ?", (meta["description"], now, env, target))
            return meta

        return await self.journal.write(write)

    async def delete(self, env: str, name: str) -> dict[str, Any]:
        """Delete a secret; returns the metadata it had (for the ``deleted`` event's revision).
        ``not_found`` if missing."""
        validate_name(name)

        def write(conn: sqlite3.Connection) -> dict[str, Any]:
            row = conn.execute(f"SELECT {_META_COLUMNS} FROM secrets WHERE env_id = ? AND name = ?",
                               (env, name)).fetchone()
            if row is None:
                raise _not_found(name)
            conn.execute("DELETE FROM secrets WHERE env_id = ? AND name = ?", (env, name))
            return _meta(row)

        return await self.journal.write(write)
