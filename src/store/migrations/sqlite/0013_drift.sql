-- Drift checks (the worker's [worker] verify_interval), sqlite flavour. Keep in step with ../postgres/0013_drift.sql.

-- When a worker next checks the secret's ACSCurrent credential on its target (ms since the
-- epoch); NULL until a worker first plans it (at a random time within the interval).
ALTER TABLE secrets ADD COLUMN drift_check_at INTEGER;
-- Since when the target refuses the current credential (ms), and its refusal; NULL: no drift.
ALTER TABLE secrets ADD COLUMN drift_since INTEGER;
ALTER TABLE secrets ADD COLUMN drift_reason TEXT;
CREATE INDEX secrets_drift_check_at ON secrets (drift_check_at) WHERE drift_check_at IS NOT NULL;
