-- A rotation's two larger transactions as one call each, postgres flavour (SQLite runs the
-- statements one by one: ../sqlite/0015_rotation_calls.sql adds nothing). Keep in step with
-- `Store::store_pending` and `Store::promote_complete` (src/store/rotation.rs), which send the
-- same writes, in the same order, as separate statements: one round trip instead of eight and
-- eleven. A lease or job step that no longer holds raises SQLSTATE RT001 (message 'lease' or
-- 'step'): the call's transaction rolls back and nothing is written. Times come from the
-- caller (the store's clock), never from the server's.

-- The rotator's new credential, sealed by the caller for version `p_version` (`v<p_seq>`),
-- stored as ACSPending with the job moved from `p_from` to `p_to` (its row made at `p_to`) and
-- the `rotation.create` record. Returns 'ok', 'gone' (no such secret), or 'stale' (the secret's
-- version counter or name is not what the caller sealed for, or a user took `p_version`:
-- nothing written, the caller takes the statement-by-statement path).
CREATE FUNCTION rotor_store_pending(
    p_secret BIGINT, p_token TEXT, p_name TEXT, p_seq BIGINT, p_version TEXT,
    p_ciphertext BYTEA, p_data_type TEXT, p_now BIGINT, p_from TEXT, p_to TEXT,
    p_actor TEXT, p_detail TEXT
) RETURNS TEXT LANGUAGE plpgsql AS $$
DECLARE
    r RECORD;
BEGIN
    SELECT lease_token, version_seq, name INTO r FROM secrets WHERE id = p_secret FOR UPDATE;
    IF NOT FOUND THEN
        RETURN 'gone';
    END IF;
    IF r.lease_token IS NULL OR p_token = '' OR r.lease_token <> p_token THEN
        RAISE EXCEPTION 'lease' USING ERRCODE = 'RT001';
    END IF;
    IF r.version_seq <> p_seq - 1 OR r.name <> p_name THEN
        RETURN 'stale';
    END IF;
    INSERT INTO versions (secret_id, version_id, seq, ciphertext, data_type, created_at)
        VALUES (p_secret, p_version, p_seq, p_ciphertext, p_data_type, p_now)
        ON CONFLICT (secret_id, version_id) DO NOTHING;
    IF NOT FOUND THEN
        RETURN 'stale';
    END IF;
    UPDATE secrets SET version_seq = p_seq, updated_at = p_now WHERE id = p_secret;
    INSERT INTO version_stages (secret_id, stage, version_id) VALUES (p_secret, 'ACSPending', p_version)
        ON CONFLICT (secret_id, stage) DO UPDATE SET version_id = excluded.version_id;
    INSERT INTO rotation_jobs (secret_id, step, version_id, attempts, started_at, updated_at)
        VALUES (p_secret, p_to, p_version, 0, p_now, p_now)
        ON CONFLICT (secret_id) DO UPDATE SET step = excluded.step, version_id = excluded.version_id,
                                              updated_at = excluded.updated_at, create_mark = NULL
        WHERE rotation_jobs.step = p_from;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'step' USING ERRCODE = 'RT001';
    END IF;
    INSERT INTO audit_log (at, actor, action, secret, version, outcome, detail)
        VALUES (p_now, p_actor, 'rotation.create', p_name, p_version, 'ok', p_detail);
    RETURN 'ok';
END
$$;

-- The last step before `finish` (`p_tested`) recorded, the pending version `p_version`
-- promoted (ACSCurrent; the old current ACSPrevious; ACSPending gone; unstaged versions
-- beyond the newest `p_keep` pruned), the job deleted, the next looks written, the lease
-- given up, and the three records (`rotation.<tested>`, `rotation.promote`, `rotation.finish`)
-- with their actor and details as the caller names them.
CREATE FUNCTION rotor_promote_complete(
    p_secret BIGINT, p_token TEXT, p_name TEXT, p_tested TEXT, p_finish TEXT, p_version TEXT,
    p_keep BIGINT, p_now BIGINT,
    p_next_at BIGINT, p_deadline BIGINT, p_followup BIGINT, p_followup_attempts BIGINT,
    p_followup_next BIGINT, p_verify BIGINT,
    p_actor TEXT, p_tested_detail TEXT, p_promote_detail TEXT, p_finish_detail TEXT
) RETURNS TEXT LANGUAGE plpgsql AS $$
DECLARE
    tested_version TEXT;
    token TEXT;
BEGIN
    UPDATE rotation_jobs SET step = p_finish, updated_at = p_now, pending_on_target = 0
        WHERE secret_id = p_secret AND step = p_tested
          AND EXISTS (SELECT 1 FROM secrets WHERE id = p_secret AND lease_token = p_token)
        RETURNING version_id INTO tested_version;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'step' USING ERRCODE = 'RT001';
    END IF;
    SELECT lease_token INTO token FROM secrets WHERE id = p_secret FOR UPDATE;
    IF token IS NULL OR p_token = '' OR token <> p_token THEN
        RAISE EXCEPTION 'lease' USING ERRCODE = 'RT001';
    END IF;
    INSERT INTO version_stages (secret_id, stage, version_id)
        SELECT secret_id, 'ACSPrevious', version_id FROM version_stages
        WHERE secret_id = p_secret AND stage = 'ACSCurrent' AND version_id <> p_version
        ON CONFLICT (secret_id, stage) DO UPDATE SET version_id = excluded.version_id;
    INSERT INTO version_stages (secret_id, stage, version_id) VALUES (p_secret, 'ACSCurrent', p_version)
        ON CONFLICT (secret_id, stage) DO UPDATE SET version_id = excluded.version_id;
    DELETE FROM version_stages
        WHERE secret_id = p_secret AND stage = 'ACSPending' AND version_id = p_version;
    DELETE FROM versions WHERE secret_id = p_secret
        AND NOT EXISTS (SELECT 1 FROM version_stages st
                        WHERE st.secret_id = versions.secret_id AND st.version_id = versions.version_id)
        AND seq <= (SELECT v.seq FROM versions v
                    WHERE v.secret_id = p_secret
                      AND NOT EXISTS (SELECT 1 FROM version_stages st
                                      WHERE st.secret_id = v.secret_id AND st.version_id = v.version_id)
                    ORDER BY v.seq DESC LIMIT 1 OFFSET p_keep);
    DELETE FROM rotation_jobs WHERE secret_id = p_secret;
    UPDATE secrets SET next_rotation_at = p_next_at, rotation_deadline_at = p_deadline,
           followup_at = p_followup, followup_attempts = p_followup_attempts,
           followup_next_at = p_followup_next, verify_at = p_verify,
           lease_owner = NULL, lease_expires_at = NULL, lease_token = NULL,
           last_rotation_at = p_now, updated_at = p_now, failure_reason = NULL,
           failure_attempts = NULL, failure_at = NULL
        WHERE id = p_secret AND lease_token = p_token;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'lease' USING ERRCODE = 'RT001';
    END IF;
    INSERT INTO audit_log (at, actor, action, secret, version, outcome, detail) VALUES
        (p_now, p_actor, 'rotation.' || p_tested, p_name, tested_version, 'ok', p_tested_detail),
        (p_now, p_actor, 'rotation.promote', p_name, p_version, 'ok', p_promote_detail),
        (p_now, p_actor, 'rotation.finish', p_name, NULL, 'ok', p_finish_detail);
    RETURN 'ok';
END
$$;
