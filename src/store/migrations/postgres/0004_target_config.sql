-- A target's family settings, postgres flavour. Keep in step with ../sqlite/0004_target_config.sql.

-- The typed settings its family validated at `target add` (JSON; NULL when the family has none).
-- `kind` is the canonical kind name the family declared.
ALTER TABLE targets ADD COLUMN config TEXT;
