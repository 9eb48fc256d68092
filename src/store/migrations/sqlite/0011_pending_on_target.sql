-- Whether a failed rotation left its pending credential on the target, sqlite flavour. Keep in step with ../postgres/0011_pending_on_target.sql.

-- A rotation that replaces its one credential in place (a single account, a host password) and
-- failed after set, when putting ACSCurrent back failed too: the target holds the ACSPending
-- credential, not ACSCurrent. describe, the audit log and webhooks say so until the job ends
-- (a rotation resumes and promotes it, or a checked import ends it).
ALTER TABLE rotation_jobs ADD COLUMN pending_on_target INTEGER NOT NULL DEFAULT 0;
