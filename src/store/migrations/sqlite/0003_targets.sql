-- Targets and rotator settings, SQLite flavour. Keep in step with ../postgres/0003_targets.sql.

-- The systems rotor rotates credentials on. The admin account is a secret of its own.
CREATE TABLE targets (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    name         TEXT NOT NULL UNIQUE,
    kind         TEXT NOT NULL,             -- 'postgres', 'mysql' or 'redis'
    url          TEXT NOT NULL,             -- address and options, never a password
    admin_secret TEXT NOT NULL,             -- name of the SingleUser secret holding the admin account
    created_at   INTEGER NOT NULL
);

-- What a rotator needs beyond the value (account base name, database, privilege, password rules).
ALTER TABLE secrets ADD COLUMN settings TEXT;
CREATE INDEX secrets_target ON secrets (target) WHERE target IS NOT NULL;
