-- AccessKeys for the KMS-compatible API, sqlite flavour. Keep in step with ../postgres/0008_access_keys.sql.

-- The secret half is kept only sealed by the master key (associated data: the key id); the
-- server needs it to check HMAC signatures. Policy: a JSON list of {"Action","Pattern"} rules.
CREATE TABLE access_keys (
    key_id     TEXT PRIMARY KEY,
    name       TEXT NOT NULL UNIQUE,
    sealed     BLOB NOT NULL,
    policy     TEXT NOT NULL,
    enabled    INTEGER NOT NULL DEFAULT 1,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
