-- When a rotation first began creating a credential on its target, sqlite flavour. Keep in step with ../postgres/0006_create_mark.sql.

-- Set (milliseconds since the epoch) before a rotator whose target makes the credential itself
-- (the RAM API's CreateAccessKey) is called, and kept across attempts: a key created at or after
-- it that no version holds was made by an attempt that died before the store write.
ALTER TABLE rotation_jobs ADD COLUMN create_mark INTEGER;
