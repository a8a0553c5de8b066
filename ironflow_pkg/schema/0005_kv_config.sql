-- Migration 5: KV buckets and entries (rest-api.md §3.12) and config documents (§3.6).
CREATE TABLE kv_buckets (
    env_id         TEXT NOT NULL REFERENCES environments(id),
    name           TEXT NOT NULL,
    description    TEXT NOT NULL DEFAULT '',
    ttl_seconds    INTEGER NOT NULL DEFAULT 0,
    history        INTEGER NOT NULL DEFAULT 1,
    max_bytes      INTEGER NOT NULL DEFAULT 0,
    max_value_size INTEGER NOT NULL DEFAULT 1048576,
    revision       INTEGER NOT NULL DEFAULT 0,
    created_at     TEXT NOT NULL,
    PRIMARY KEY (env_id, name)
);

-- One row per kept revision of a key; operation is 'put' or 'delete' (tombstone).
CREATE TABLE kv_entries (
    env_id     TEXT NOT NULL,
    bucket     TEXT NOT NULL,
    key        TEXT NOT NULL,
    revision   INTEGER NOT NULL,
    operation  TEXT NOT NULL,
    value      BLOB NOT NULL,
    created_at TEXT NOT NULL,
    expires_at REAL,
    PRIMARY KEY (env_id, bucket, key, revision)
);

CREATE TABLE config_docs (
    env_id     TEXT NOT NULL REFERENCES environments(id),
    name       TEXT NOT NULL,
    data       TEXT NOT NULL,
    revision   INTEGER NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (env_id, name)
);
