-- Leases per claim, checks after a takeover, follow-up retries; postgres flavour. Keep in step with ../sqlite/0009_claims.sql.

-- Each claim of a secret gets its own token: every job write checks it, so a second claim in the
-- same process (or a claim whose lease passed to another) cannot move the job. lease_owner
-- still names the process, for describe, the audit log and dead-process takeover.
ALTER TABLE secrets ADD COLUMN lease_token TEXT;

-- When a claim took over a lease its holder stopped renewing, the holder's last target write may
-- still land late: once its step timeout has passed (ms since the epoch), a worker checks that
-- ACSCurrent still logs in and sets it again if not.
ALTER TABLE secrets ADD COLUMN verify_at BIGINT;

-- Failed attempts of the pending follow-up (it backs off like a rotation).
ALTER TABLE secrets ADD COLUMN followup_attempts BIGINT;
