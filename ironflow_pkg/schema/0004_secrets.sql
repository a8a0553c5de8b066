-- Migration 4: secrets (features.md §8, rest-api.md §3.22). Write-only values, per environment,
-- revisioned. `value` is text in one of two self-describing forms (features.md §8):
--   'v1:'    || base64(nonce (12 bytes) || AES-256-GCM ciphertext || tag (16 bytes)),
--            AAD = '<environment id>/<secret name>'           (encrypted = 1)
--   'plain:' || base64(UTF-8 value), no IRONFLOW_MASTER_KEY     (encrypted = 0)
-- A rename re-encrypts under the new AAD. Revision starts at 1 and grows with every new value.
CREATE TABLE secrets (
    env_id      TEXT NOT NULL REFERENCES environments(id),
    name        TEXT NOT NULL,
    value       TEXT NOT NULL,
    encrypted   INTEGER NOT NULL,
    revision    INTEGER NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL,
    PRIMARY KEY (env_id, name)
);
