-- Which stages drifted, sqlite flavour. Keep in step with ../postgres/0014_drift_stages.sql.

-- The stages whose credential the target refuses, space-separated (`ACSCurrent`, `ACSPrevious`
-- — a dual account's previous account must still log in until the next rotation); NULL with
-- drift_since.
ALTER TABLE secrets ADD COLUMN drift_stages TEXT;
