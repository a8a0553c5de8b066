-- Migration 3: the event schema registry (features.md §9) and the schema hash of validated events.
CREATE TABLE event_schemas (
    env_id      TEXT NOT NULL REFERENCES environments(id),
    event_name  TEXT NOT NULL,
    version     INTEGER NOT NULL,
    schema_json TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL,
    PRIMARY KEY (env_id, event_name, version)
);

-- Every change, with the definition it replaced (revision is global and increasing).
CREATE TABLE event_schema_history (
    revision            INTEGER PRIMARY KEY AUTOINCREMENT,
    env_id              TEXT NOT NULL,
    event_name          TEXT NOT NULL,
    version             INTEGER NOT NULL,
    change_type         TEXT NOT NULL,
    previous_definition TEXT,
    actor_id            TEXT NOT NULL DEFAULT '',
    change_reason       TEXT NOT NULL DEFAULT '',
    recorded_at         TEXT NOT NULL
);
CREATE INDEX event_schema_history_name ON event_schema_history (env_id, event_name, revision);

ALTER TABLE events ADD COLUMN schema_hash TEXT NOT NULL DEFAULT '';
