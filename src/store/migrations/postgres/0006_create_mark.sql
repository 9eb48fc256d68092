-- When a rotation first began creating a credential on its target, postgres flavour. Keep in step with ../sqlite/0006_create_mark.sql.

-- Set (milliseconds since the epoch) before a rotator whose target makes the credential itself
-- (the RAM API's CreateAccessKey) is called, and kept across attempts: a key created at or after
-- it that no version holds was made by an attempt that died before the store write.
ALTER TABLE rotation_jobs ADD COLUMN create_mark BIGINT;

-- A follow-up due after a rotation (ms since the epoch): the RAM family disables the previous
-- AccessKey once its grace period has passed. While one is pending, next_rotation_at is the
-- earlier of it and the next rotation, which waits in followup_next_at.
ALTER TABLE secrets ADD COLUMN followup_at BIGINT;
ALTER TABLE secrets ADD COLUMN followup_next_at BIGINT;
