-- A target without an admin credential, sqlite flavour. Keep in step with ../postgres/0005_optional_admin.sql.

-- SSH hosts whose users change their own passwords and keys need no admin: admin_secret is NULL.
-- SQLite cannot drop a NOT NULL constraint: the table is rebuilt with the same rows and ids.
CREATE TABLE targets_new (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    name         TEXT NOT NULL UNIQUE,
    kind         TEXT NOT NULL,             -- the canonical kind name its family declared
    url          TEXT NOT NULL,             -- address and options, never a password
    admin_secret TEXT,                      -- name of the secret holding the admin credential, if any
    created_at   INTEGER NOT NULL,
    config       TEXT                       -- the family's settings (JSON), if any
);
INSERT INTO targets_new (id, name, kind, url, admin_secret, created_at, config)
    SELECT id, name, kind, url, admin_secret, created_at, config FROM targets;
DROP TABLE targets;
ALTER TABLE targets_new RENAME TO targets;
