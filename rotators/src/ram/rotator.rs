//! [`AccessKeyRotator`]: the steps for a `RAMCredentials` secret. `create` makes the new pair
//! with CreateAccessKey (after deleting an interrupted attempt's orphan and, at the two-key
//! limit, the previous version's key); `set` checks the new key still exists; `test` signs a
//! call with it; the follow-up after `--previous-grace` sets the previous key Inactive (the next
//! rotation deletes it). The family's module header says how orphans are told from others' keys.

use super::*;

/// Replaces a `RAMCredentials` secret's AccessKey pair.
pub struct AccessKeyRotator;

fn current(cx: &RotationContext) -> Result<AccessKey, RotateError> {
    AccessKey::from_value(
        &cx.current
            .as_ref()
            .ok_or_else(|| RotateError::fatal("the secret has no current version"))?
            .value,
    )
}

#[async_trait]
impl Rotator for AccessKeyRotator {
    fn creates_on_target(&self) -> bool {
        true
    }

    async fn create(&self, cx: &RotationContext) -> Result<SecretValue, RotateError> {
        let target = cx.require_target()?;
        let settings = RamSettings::from_json(&cx.settings)?;
        let user = settings.user.as_str();
        let current = current(cx)?;
        let previous = cx
            .previous
            .as_ref()
            .map(|p| AccessKey::from_value(&p.value).map(|k| (p.version_id.clone(), k)))
            .transpose()?;
        let admin = admin_client(target)?;
        let keys = admin.list_access_keys(user).await?;
        let skew = admin.clock_skew_ms();
        // Keys no version holds: an earlier attempt's (one that did not end: made at or after
        // its mark, on the cloud's clock), or someone else's, which stops the rotation before
        // anything changes.
        let ours =
            |id: &str| id == current.id || previous.as_ref().is_some_and(|(_, p)| p.id == id);
        let mut orphans = vec![];
        for key in keys.iter().filter(|k| !ours(&k.access_key_id)) {
            match made_since(&key.create_date, cx.create_mark, skew) {
                Made::Since => orphans.push(key),
                made => {
                    return Err(RotateError::fatal(format!(
                        "RAM user '{user}' holds AccessKey {} (created {}), which is not this secret's: rotor neither deletes nor adopts it; nothing changed (delete it, or import it with rotor secret import){}",
                        key.access_key_id,
                        key.create_date,
                        made.note(skew)
                    )))
                }
            }
        }
        for orphan in &orphans {
            admin.delete_access_key(user, &orphan.access_key_id).await?;
            tracing::info!(access_key_id = %orphan.access_key_id, "deleted an AccessKey an interrupted attempt created");
        }
        let held = keys.len() - orphans.len();
        let mut made_room = None;
        if held >= 2 {
            // The two are current and previous: the previous version's key makes room.
            let (version, previous) = previous
                .as_ref()
                .filter(|(_, p)| p.id != current.id)
                .ok_or_else(|| RotateError::fatal(format!("RAM user '{user}' holds two AccessKeys and the secret knows no previous one to replace")))?;
            admin.delete_access_key(user, &previous.id).await?;
            made_room = Some((version.clone(), previous.id.clone()));
        }
        let before: Vec<&str> = keys.iter().map(|k| k.access_key_id.as_str()).collect();
        let started = chrono::Utc::now().timestamp_millis();
        match admin.create_access_key(user).await {
            Ok(new) => Ok(AccessKey {
                id: new.access_key_id,
                secret: new.access_key_secret,
                generated: new.create_date,
            }
            .to_value()),
            Err(e) => {
                // The key may exist all the same (an answer lost on the way): this attempt
                // removes what it made, so that none is left that no version holds. When it
                // cannot (the cloud unreachable still), the error says so, and the engine
                // keeps the create mark for the next attempt to delete that key.
                let settled = e.code.starts_with("Throttling")
                    || sweep(&admin, user, &before, started, &ours).await;
                let mut e = match RotateError::from(e) {
                    RotateError::Retryable(m) if !settled => RotateError::unsettled(format!(
                        "{m}; the cloud may have made the new AccessKey, and it could not be looked for: the next attempt deletes it"
                    )),
                    e => e,
                };
                if let Some((version, id)) = made_room {
                    e = with_note(e, &format!("; the previous version's AccessKey {id} ({version}, ACSPrevious) was deleted to make room, so it no longer signs; the next attempt makes the new key"));
                }
                Err(e)
            }
        }
    }

    async fn previous_gone(&self, cx: &RotationContext) -> Result<bool, RotateError> {
        let (Some(previous), Some(current)) = (&cx.previous, &cx.current) else {
            return Ok(false);
        };
        let previous = AccessKey::from_value(&previous.value)?;
        if previous.id == AccessKey::from_value(&current.value)?.id {
            return Ok(false);
        }
        let settings = RamSettings::from_json(&cx.settings)?;
        let keys = admin_client(cx.require_target()?)?
            .list_access_keys(&settings.user)
            .await?;
        Ok(!keys.iter().any(|k| k.access_key_id == previous.id))
    }

    async fn set(&self, cx: &RotationContext, pending: &SecretValue) -> Result<(), RotateError> {
        // The cloud made the key Active; check it is still there.
        let settings = RamSettings::from_json(&cx.settings)?;
        let pending = AccessKey::from_value(pending)?;
        let keys = admin_client(cx.require_target()?)?
            .list_access_keys(&settings.user)
            .await?;
        if !keys.iter().any(|k| k.access_key_id == pending.id) {
            return Err(RotateError::fatal(format!(
                "the new AccessKey {} of RAM user '{}' is gone",
                pending.id, settings.user
            )));
        }
        Ok(())
    }

    async fn test(&self, cx: &RotationContext, pending: &SecretValue) -> Result<(), RotateError> {
        let settings = RamSettings::from_json(&cx.settings)?;
        let pending = AccessKey::from_value(pending)?;
        client(cx.require_target()?, &pending)?
            .get_user(&settings.user)
            .await
            .map(drop)
            .map_err(|e| match e.code.as_str() {
                // A new key may take a moment to reach every region.
                "InvalidAccessKeyId.NotFound" => RotateError::retryable(e.to_string()),
                _ => e.into(),
            })
    }

    fn followup_after(&self, cx: &RotationContext) -> Option<std::time::Duration> {
        RamSettings::from_json(&cx.settings)
            .ok()?
            .previous_grace_s
            .map(std::time::Duration::from_secs)
    }

    /// The grace period is over: the previous key is set Inactive (it stays, so a rollback
    /// can still find it; the next rotation deletes it).
    async fn followup(&self, cx: &RotationContext) -> Result<(), RotateError> {
        let Some(previous) = &cx.previous else {
            return Ok(());
        };
        let settings = RamSettings::from_json(&cx.settings)?;
        let previous = AccessKey::from_value(&previous.value)?;
        match admin_client(cx.require_target()?)?
            .update_access_key(&settings.user, &previous.id, "Inactive")
            .await
        {
            Err(e) if e.code == "EntityNotExist.User.AccessKey" => Ok(()),
            done => done.map_err(RotateError::from),
        }
    }

    async fn check(&self, cx: &RotationContext) -> Result<(), RotateError> {
        let settings = RamSettings::from_json(&cx.settings)?;
        client(cx.require_target()?, &current(cx)?)?
            .get_user(&settings.user)
            .await
            .map(drop)
            .map_err(RotateError::from)
    }
}
