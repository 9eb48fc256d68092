-- Users of the web console, sqlite flavour. Keep in step with ../postgres/0012_console_users.sql.

-- `password_hash`: an argon2id PHC string (`$argon2id$v=19$…`), never the password. `policy`: a
-- JSON list of {"Action","Pattern"} rules, the same form as an AccessKey's (src/policy.rs).
CREATE TABLE console_users (
    name          TEXT PRIMARY KEY,
    password_hash TEXT NOT NULL,
    policy        TEXT NOT NULL,
    enabled       INTEGER NOT NULL DEFAULT 1,
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL
);
