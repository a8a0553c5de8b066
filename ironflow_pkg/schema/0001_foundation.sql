-- Migration 1: foundation (environments, API keys, server facts).
-- Tenancy root. Every domain row belongs to exactly one environment; "env_default" exists
-- out of the box so a fresh server works without any setup.
CREATE TABLE environments (
    id         TEXT PRIMARY KEY,
    name       TEXT NOT NULL UNIQUE,
    org_id     TEXT NOT NULL,
    project_id TEXT NOT NULL,
    created_at TEXT NOT NULL
);

INSERT INTO environments (id, name, org_id, project_id, created_at)
VALUES ('env_default', 'default', 'org_default', 'proj_default_default', strftime('%Y-%m-%dT%H:%M:%fZ', 'now'));

-- API keys are stored hashed; key_prefix is the short visible part used to identify a key in
-- listings and logs. roles is a JSON array of role names.
CREATE TABLE api_keys (
    id           TEXT PRIMARY KEY,
    env_id       TEXT NOT NULL REFERENCES environments(id),
    name         TEXT NOT NULL,
    key_hash     TEXT NOT NULL UNIQUE,
    key_prefix   TEXT NOT NULL,
    roles        TEXT NOT NULL DEFAULT '[]',
    platform     INTEGER NOT NULL DEFAULT 0,
    env_scoped   INTEGER NOT NULL DEFAULT 0,
    created_at   TEXT NOT NULL,
    expires_at   TEXT,
    last_used_at TEXT,
    revoked_at   TEXT
);

CREATE INDEX api_keys_env_id ON api_keys (env_id);

-- Process-wide facts about this server node (node id, first start time, ...). This is the one
-- table NOT scoped by environment: its rows describe the installation itself, which exists
-- before and independently of any tenant, and no tenant may read or change them.
CREATE TABLE server_meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
