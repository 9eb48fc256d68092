-- AccessKeys for the KMS-compatible API, postgres flavour. Keep in step with ../sqlite/0008_access_keys.sql.

-- The secret half is kept only sealed by the master key (associated data: the key id); the
-- server needs it to check HMAC signatures. Policy: a JSON list of {"Action","Pattern"} rules.
CREATE TABLE access_keys (
    key_id     TEXT PRIMARY KEY,
    name       TEXT NOT NULL UNIQUE,
    sealed     BYTEA NOT NULL,
    policy     TEXT NOT NULL,
    enabled    BIGINT NOT NULL DEFAULT 1,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
