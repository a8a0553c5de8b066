-- Migration 6: one global item sequence shared by events and topic messages (websocket.md §5.1),
-- and the namespace of every item (§5.3).
CREATE TABLE item_counter (
    id  INTEGER PRIMARY KEY CHECK (id = 1),
    seq INTEGER NOT NULL
);
INSERT INTO item_counter (id, seq)
SELECT 1, max(coalesce((SELECT max(seq) FROM events), 0),
              coalesce((SELECT max(seq) FROM topic_messages), 0));

ALTER TABLE events ADD COLUMN namespace TEXT NOT NULL DEFAULT 'default';
ALTER TABLE topic_messages ADD COLUMN namespace TEXT NOT NULL DEFAULT 'default';
CREATE INDEX topic_messages_env_seq ON topic_messages (env_id, seq);
