-- Users of the web console, postgres flavour. Keep in step with ../sqlite/0012_console_users.sql.

-- `password_hash`: an argon2id PHC string (`$argon2id$v=19$…`), never the password. `policy`: a
-- JSON list of {"Action","Pattern"} rules, the same form as an AccessKey's (src/policy.rs).
CREATE TABLE console_users (
    name          TEXT PRIMARY KEY,
    password_hash TEXT NOT NULL,
    policy        TEXT NOT NULL,
    enabled       BIGINT NOT NULL DEFAULT 1,
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL
);
