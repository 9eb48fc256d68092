-- The audit log, sqlite flavour. Keep in step with ../postgres/0007_audit.sql.

-- One row per change (and, when configured, per value read), written in the transaction of the
-- change it records: a rolled-back write leaves no record. Names, versions and outcomes only,
-- never a value. Rows are never updated (the trigger refuses it); only the worker's retention
-- pruning deletes old ones.
CREATE TABLE audit_log (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    at      INTEGER NOT NULL,     -- ms since the epoch
    actor   TEXT NOT NULL,        -- cli:USER, worker:OWNER
    action  TEXT NOT NULL,        -- secret.create, rotation.set, target.add, …
    secret  TEXT,
    version TEXT,
    outcome TEXT NOT NULL,        -- ok, retrying, failed
    detail  TEXT
);
CREATE INDEX audit_log_at ON audit_log (at);
CREATE INDEX audit_log_secret ON audit_log (secret, at);

CREATE TRIGGER audit_log_append_only BEFORE UPDATE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'audit records cannot be changed');
END;

-- A claim that takes over an expired lease keeps the previous holder's name here (lease
-- takeovers are counted in the metrics and logged); a claim of a free secret sets NULL.
ALTER TABLE secrets ADD COLUMN lease_taken_from TEXT;
