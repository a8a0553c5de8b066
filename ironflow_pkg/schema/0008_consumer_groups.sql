-- Migration 8: consumer groups (features.md §7.3). config holds the group settings; cursor is the
-- highest sequence at or below which every item is settled (acked, terminated or dropped).
CREATE TABLE consumer_groups (
    id         TEXT PRIMARY KEY,
    env_id     TEXT NOT NULL REFERENCES environments(id),
    namespace  TEXT NOT NULL,
    name       TEXT NOT NULL,
    config     TEXT NOT NULL,
    status     TEXT NOT NULL,
    cursor     INTEGER NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE UNIQUE INDEX consumer_groups_name ON consumer_groups (env_id, namespace, name)
    WHERE status != 'deleted';
