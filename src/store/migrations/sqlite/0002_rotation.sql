-- Rotation engine state, SQLite flavour. Keep in step with ../postgres/0002_rotation.sql.

-- Scheduling and ownership on the secret row: `next_rotation_at` is when a worker should next
-- look at the secret (a due rotation, a retry after backoff, or a rotation to resume).
ALTER TABLE secrets ADD COLUMN rotation_jitter_s INTEGER;
ALTER TABLE secrets ADD COLUMN rotation_deadline_at INTEGER;  -- a cron window's end: start no rotation after it
ALTER TABLE secrets ADD COLUMN lease_owner TEXT;              -- the worker rotating it now
ALTER TABLE secrets ADD COLUMN lease_expires_at INTEGER;
ALTER TABLE secrets ADD COLUMN failure_reason TEXT;           -- set while the last rotation cycle failed
ALTER TABLE secrets ADD COLUMN failure_attempts INTEGER;
ALTER TABLE secrets ADD COLUMN failure_at INTEGER;
ALTER TABLE secrets ADD COLUMN target TEXT;                   -- the target it rotates on (filled by the rotator issues)
CREATE INDEX secrets_lease_owner ON secrets (lease_owner) WHERE lease_owner IS NOT NULL;

-- One rotation in flight per secret: the step to run next and the pending version.
CREATE TABLE rotation_jobs (
    secret_id  INTEGER PRIMARY KEY REFERENCES secrets (id) ON DELETE CASCADE,
    step       TEXT NOT NULL,             -- 'create', 'set', 'test' or 'finish'
    version_id TEXT,                      -- the ACSPending version, once created
    attempts   INTEGER NOT NULL DEFAULT 0, -- failed attempts in this cycle
    last_error TEXT,
    started_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
