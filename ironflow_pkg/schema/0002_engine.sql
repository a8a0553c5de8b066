-- Migration 2: the durable execution engine (events, functions, runs, step log).
-- Every table carries env_id. JSON columns hold compact JSON text. Times the engine schedules on
-- (wake_at, lease_expires_at, timeout_at, deadlines) are Unix seconds (REAL) for cheap
-- comparisons; times shown to clients are RFC 3339 text.

-- Events, in one global sequence (websocket.md §5.1): seq is the AUTOINCREMENT rowid, so it never
-- goes backwards even after deletes.
CREATE TABLE events (
    seq             INTEGER PRIMARY KEY AUTOINCREMENT,
    id              TEXT NOT NULL UNIQUE,
    env_id          TEXT NOT NULL REFERENCES environments(id),
    name            TEXT NOT NULL,
    data            TEXT NOT NULL,
    metadata        TEXT,
    source          TEXT NOT NULL,
    version         INTEGER NOT NULL DEFAULT 1,
    idempotency_key TEXT,
    emitted_by      TEXT NOT NULL DEFAULT '',
    run_ids         TEXT NOT NULL DEFAULT '[]',
    created_at      TEXT NOT NULL
);
-- An idempotency key names at most one event per environment.
CREATE UNIQUE INDEX events_idempotency ON events (env_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
CREATE INDEX events_env_name ON events (env_id, name, seq);
CREATE INDEX events_env_seq ON events (env_id, seq);

-- Function definitions: config is the normalized RegisterFunctionRequest (proto field names).
CREATE TABLE functions (
    env_id     TEXT NOT NULL REFERENCES environments(id),
    id         TEXT NOT NULL,
    config     TEXT NOT NULL,
    status     TEXT NOT NULL DEFAULT 'active',
    version    INTEGER NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (env_id, id)
);

CREATE TABLE function_history (
    env_id        TEXT NOT NULL,
    function_id   TEXT NOT NULL,
    version       INTEGER NOT NULL,
    change_type   TEXT NOT NULL,
    snapshot      TEXT NOT NULL,
    change_reason TEXT NOT NULL DEFAULT '',
    actor_id      TEXT NOT NULL DEFAULT '',
    recorded_at   TEXT NOT NULL,
    PRIMARY KEY (env_id, function_id, version)
);

-- Runs. The live segment's fence is (execution_seq, lease_token); last_fence_* remember the
-- last finished fence so a retried terminal report is answered 200 without being applied twice.
CREATE TABLE runs (
    id                 TEXT PRIMARY KEY,
    env_id             TEXT NOT NULL REFERENCES environments(id),
    function_id        TEXT NOT NULL,
    function_version   INTEGER NOT NULL,
    event_id           TEXT NOT NULL,
    event_name         TEXT NOT NULL,
    status             TEXT NOT NULL,
    attempt            INTEGER NOT NULL DEFAULT 1,
    max_attempts       INTEGER NOT NULL,
    retry              TEXT NOT NULL,
    input              TEXT NOT NULL,
    output             TEXT,
    error              TEXT,
    execution_mode     TEXT NOT NULL DEFAULT 'pull',
    execution_seq      INTEGER NOT NULL DEFAULT 0,
    lease_token        TEXT NOT NULL DEFAULT '',
    lease_expires_at   REAL,
    acked              INTEGER NOT NULL DEFAULT 0,
    worker_id          TEXT NOT NULL DEFAULT '',
    claimed_by         TEXT NOT NULL DEFAULT '',
    claimed_at         TEXT,
    last_fence_seq     INTEGER NOT NULL DEFAULT 0,
    last_fence_status  TEXT NOT NULL DEFAULT '',
    last_fence_token   TEXT NOT NULL DEFAULT '',
    wake_at            REAL,
    wait               TEXT,
    pause_requested    INTEGER NOT NULL DEFAULT 0,
    pause_reason       TEXT NOT NULL DEFAULT '',
    parent_run_id      TEXT NOT NULL DEFAULT '',
    parent_step_id     TEXT NOT NULL DEFAULT '',
    actor_id           TEXT NOT NULL DEFAULT '',
    concurrency_key    TEXT NOT NULL DEFAULT '',
    throttle_key       TEXT NOT NULL DEFAULT '',
    timeout_at         REAL,
    cancellation_cause TEXT NOT NULL DEFAULT '',
    resume_from_step   TEXT NOT NULL DEFAULT '',
    row_version        INTEGER NOT NULL DEFAULT 1,
    created_at         TEXT NOT NULL,
    started_at         TEXT,
    ended_at           TEXT,
    updated_at         TEXT NOT NULL
);
CREATE INDEX runs_env_created ON runs (env_id, created_at DESC, id DESC);
CREATE INDEX runs_env_function ON runs (env_id, function_id, created_at DESC);
CREATE INDEX runs_event ON runs (event_id);
-- Start-up recovery reads only the runs that are not finished.
CREATE INDEX runs_open ON runs (status) WHERE status NOT IN ('completed', 'failed', 'cancelled');

-- The step log: append/upsert only, keyed by (run_id, sequence) (design.md habit 12).
CREATE TABLE steps (
    id               TEXT PRIMARY KEY,
    run_id           TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    env_id           TEXT NOT NULL,
    sequence         INTEGER NOT NULL,
    step_id          TEXT NOT NULL,
    name             TEXT NOT NULL DEFAULT '',
    step_type        TEXT NOT NULL DEFAULT 'invoke',
    status           TEXT NOT NULL,
    stored_status    TEXT NOT NULL DEFAULT '',
    output           TEXT,
    error            TEXT,
    attempt          INTEGER NOT NULL DEFAULT 1,
    started_at       TEXT,
    ended_at         TEXT,
    duration_ms      INTEGER NOT NULL DEFAULT 0,
    compensation_for TEXT NOT NULL DEFAULT '',
    sleep_until      TEXT,
    wait_event_name  TEXT NOT NULL DEFAULT '',
    wait_timeout     TEXT,
    child_run_id     TEXT NOT NULL DEFAULT '',
    original_output  TEXT,
    patched_at       TEXT,
    patched_by       TEXT NOT NULL DEFAULT '',
    injected         INTEGER NOT NULL DEFAULT 0,
    created_at       TEXT NOT NULL,
    updated_at       TEXT NOT NULL,
    UNIQUE (run_id, sequence)
);
CREATE INDEX steps_child ON steps (child_run_id) WHERE child_run_id != '';

-- Topic messages written by step.publish (PubSubService/Publish); the full pub/sub builds on it.
CREATE TABLE topic_messages (
    seq             INTEGER PRIMARY KEY AUTOINCREMENT,
    id              TEXT NOT NULL UNIQUE,
    env_id          TEXT NOT NULL REFERENCES environments(id),
    topic           TEXT NOT NULL,
    data            TEXT NOT NULL,
    idempotency_key TEXT,
    run_id          TEXT NOT NULL DEFAULT '',
    created_at      TEXT NOT NULL
);
CREATE UNIQUE INDEX topic_messages_idempotency ON topic_messages (env_id, topic, idempotency_key)
    WHERE idempotency_key IS NOT NULL;

-- Cron ticks fired, keyed by (function, trigger index, fire time): a tick fires at most once,
-- even across restarts (features.md §2.3).
CREATE TABLE cron_ticks (
    env_id        TEXT NOT NULL,
    function_id   TEXT NOT NULL,
    trigger_index INTEGER NOT NULL,
    fire_time     TEXT NOT NULL,
    event_id      TEXT NOT NULL,
    PRIMARY KEY (env_id, function_id, trigger_index, fire_time)
);

-- Armed debounce lanes (features.md §2.6); they survive restarts.
CREATE TABLE debounce_lanes (
    env_id           TEXT NOT NULL,
    function_id      TEXT NOT NULL,
    lane_key         TEXT NOT NULL,
    function_version INTEGER NOT NULL,
    event_id         TEXT NOT NULL,
    armed_at         REAL NOT NULL,
    fires_at         REAL NOT NULL,
    PRIMARY KEY (env_id, function_id, lane_key)
);
