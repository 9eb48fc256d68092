-- rotor store, PostgreSQL flavour. Keep in step with ../sqlite/0001_store.sql.
-- Times are milliseconds since the Unix epoch (UTC); booleans are 0/1.

CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value BYTEA NOT NULL
);

-- Named master keys (CMKs), each wrapped by the installation's master key.
CREATE TABLE master_keys (
    id               BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name             TEXT NOT NULL UNIQUE,
    wrapped_material BYTEA NOT NULL,
    created_at       BIGINT NOT NULL
);

CREATE TABLE secrets (
    id                  BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    uid                 TEXT NOT NULL UNIQUE,        -- bound into every ciphertext's associated data
    name                TEXT NOT NULL UNIQUE,
    secret_type         TEXT NOT NULL,
    sub_type            TEXT,
    description         TEXT NOT NULL DEFAULT '',
    key_id              BIGINT NOT NULL REFERENCES master_keys (id),
    wrapped_data_key    BYTEA NOT NULL,
    version_seq         BIGINT NOT NULL DEFAULT 0,  -- versions ever created, orders versions
    created_at          BIGINT NOT NULL,
    updated_at          BIGINT NOT NULL,
    rotation_enabled    BIGINT NOT NULL DEFAULT 0,
    rotation_interval_s BIGINT,
    rotation_cron       TEXT,
    rotation_window_s   BIGINT,
    next_rotation_at    BIGINT,
    last_rotation_at    BIGINT,
    planned_delete_at   BIGINT
);
CREATE INDEX secrets_next_rotation ON secrets (next_rotation_at) WHERE next_rotation_at IS NOT NULL;
CREATE INDEX secrets_planned_delete ON secrets (planned_delete_at) WHERE planned_delete_at IS NOT NULL;

CREATE TABLE secret_tags (
    secret_id BIGINT NOT NULL REFERENCES secrets (id) ON DELETE CASCADE,
    tag_key   TEXT NOT NULL,
    tag_value TEXT NOT NULL,
    PRIMARY KEY (secret_id, tag_key)
);
CREATE INDEX secret_tags_pair ON secret_tags (tag_key, tag_value);

CREATE TABLE versions (
    secret_id  BIGINT NOT NULL REFERENCES secrets (id) ON DELETE CASCADE,
    version_id TEXT NOT NULL,
    seq        BIGINT NOT NULL,
    ciphertext BYTEA NOT NULL,
    data_type  TEXT NOT NULL,                          -- 'text' or 'binary'
    created_at BIGINT NOT NULL,
    PRIMARY KEY (secret_id, version_id)
);
CREATE UNIQUE INDEX versions_seq ON versions (secret_id, seq);

-- A stage is on at most one version of a secret: the primary key says so.
CREATE TABLE version_stages (
    secret_id  BIGINT NOT NULL,
    stage      TEXT NOT NULL,
    version_id TEXT NOT NULL,
    PRIMARY KEY (secret_id, stage),
    FOREIGN KEY (secret_id, version_id) REFERENCES versions (secret_id, version_id) ON DELETE CASCADE
);
CREATE INDEX version_stages_version ON version_stages (secret_id, version_id);
