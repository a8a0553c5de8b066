-- Migration 9: indexes for the dashboard's overview (bounded time-range reads, no full scans).
-- Events of a time window (events.created_at is the event's timestamp).
CREATE INDEX events_env_time ON events (env_id, created_at);
-- Runs that ended in a time window (ended_at is set once, when a run reaches a terminal status).
CREATE INDEX runs_env_ended ON runs (env_id, ended_at) WHERE ended_at IS NOT NULL;
-- Runs in flight per environment (the set stays small however many runs finished).
CREATE INDEX runs_env_open ON runs (env_id, status) WHERE status NOT IN ('completed', 'failed', 'cancelled');
