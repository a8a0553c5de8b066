-- Migration 7: system events in the item log (websocket.md §5.5), e.g. system.run.<id>.completed.
CREATE TABLE system_events (
    seq        INTEGER PRIMARY KEY,
    id         TEXT NOT NULL UNIQUE,
    env_id     TEXT NOT NULL,
    subject    TEXT NOT NULL,
    data       TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE INDEX system_events_env_seq ON system_events (env_id, seq);
