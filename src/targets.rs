//! Targets and the secrets whose credentials live on them, through the rotator family that
//! serves the target's kind: `target add | update | check | remove`, `secret create --target`,
//! and the checked re-import and rollback of a managed secret (a target's admin secret included).
//!
//! What holds for every family lives here: a target kind some family declares, a URL with one
//! of its schemes and no credentials in it, one transaction for a target and its admin secret,
//! and for create mode the order that keeps every credential in the store — the secret is
//! stored first, then the family installs its credentials, and the secret goes again if the
//! target refuses.

use rotators::family::OptionScope;
use rotators::{
    NewTarget, Options, Registry, SecretRequest, SecretValue, SetupError, Source, TargetContext,
};

use crate::error::{Error, Result};
use crate::model::{SecretName, VersionId};
use crate::store::{DeleteMode, NewSecret, PutOutcome, RotationStatus, Store, TargetInfo};

mod shared;
use shared::refuse_shared_accounts;

/// A family's refusal as an engine error: bad input (exit 2) or a target that refused (exit 7).
pub fn setup_error(e: SetupError) -> Error {
    match e {
        SetupError::Invalid(m) => Error::invalid(m),
        SetupError::Target(m) => Error::Target(m),
    }
}

/// `rotor target add`: the family of `kind` validates the URL and options and builds the admin
/// credential; with `check`, the family then logs in with it (as `target check` does) and a
/// refusal stores nothing; the target and its admin secret are stored together.
pub async fn add_target(
    store: &Store,
    registry: &Registry,
    name: &str,
    kind: &str,
    url: Option<&str>,
    options: &Options,
    check: bool,
) -> Result<(TargetInfo, Vec<String>)> {
    let (family, spec) = registry.target_kind(kind).ok_or_else(|| {
        Error::invalid(format!(
            "unknown target kind '{kind}' (expected {})",
            or_list(&registry.target_kind_names())
        ))
    })?;
    let url = url
        .or(spec.default_url)
        .ok_or_else(|| Error::invalid(format!("give --url for a {} target", spec.name)))?;
    check_url(spec, url)?;
    check_options_fit(family.as_ref(), OptionScope::TargetAdd, options, spec.name)?;
    let new: NewTarget = family
        .new_target(spec, url, options)
        .await
        .map_err(setup_error)?;
    let notes = new.notes.clone();
    if check {
        let context = TargetContext {
            name: name.to_owned(),
            kind: new.kind.to_owned(),
            url: new.url.clone(),
            config: new.config.clone(),
            admin: new.admin.as_ref().map(|a| a.value.clone()),
        };
        family
            .check_target(&context)
            .await
            .map_err(|e| not_stored(name, e))?;
    }
    Ok((store.add_target(name, new).await?, notes))
}

/// A check that refused a target being added or updated: nothing was stored.
fn not_stored(name: &str, e: SetupError) -> Error {
    let how = "nothing stored (--no-check stores it without contacting the target, e.g. while it is down)";
    match e {
        SetupError::Invalid(m) => Error::invalid(format!("target '{name}': {m}; {how}")),
        SetupError::Target(m) => Error::Target(format!("target '{name}': {m}; {how}")),
    }
}

/// A target URL: free text with one of the kind's schemes, no account and no credential.
fn check_url(spec: &rotators::family::TargetKindSpec, url: &str) -> Result<()> {
    crate::model::check_free_text("target URL", url)?;
    if !spec.schemes.iter().any(|s| url.starts_with(s)) {
        return Err(Error::invalid(format!(
            "target URL must start with {} for a {} target",
            spec.schemes.join(" or "),
            spec.name
        )));
    }
    let authority = url
        .split("://")
        .nth(1)
        .unwrap_or_default()
        .split(['/', '?', '#'])
        .next()
        .unwrap_or_default();
    if authority.contains('@') {
        return Err(Error::invalid(
            "put no account in the target URL: the admin credential is given with the target's own options (see: rotor target add --help)",
        ));
    }
    if let Some(key) = crate::redact::credential_params(url).first() {
        return Err(Error::invalid(format!(
            "the target URL carries a credential ('{key}=' in its query): give it as the admin credential instead (see: rotor target add --help), which rotor stores encrypted"
        )));
    }
    Ok(())
}

/// `rotor target update`: the target's address and what its family lets change (a pinned host
/// key, TLS settings) change; its admin secret and the secrets on it stay as they are. With
/// `check`, the family checks the updated target first (as `target check`), and a refusal
/// changes nothing.
pub async fn update_target(
    store: &Store,
    registry: &Registry,
    name: &str,
    url: Option<&str>,
    options: &Options,
    check: bool,
) -> Result<(TargetInfo, Vec<String>)> {
    let mut target = store.target_context(name).await?;
    let (family, spec) = family_of(registry, &target)?;
    if url.is_none() && options.names().next().is_none() {
        return Err(Error::invalid(format!(
            "give what changes for target '{name}': --url, or its kind's options (see: rotor target update --help)"
        )));
    }
    let url = url.unwrap_or(&target.url).to_owned();
    check_url(spec, &url)?;
    check_options_fit(family.as_ref(), OptionScope::TargetAdd, options, spec.name)?;
    let (config, notes) = family
        .update_target(spec, &target, &url, options)
        .await
        .map_err(setup_error)?;
    target.url = url;
    target.config = config;
    if check {
        family
            .check_target(&target)
            .await
            .map_err(|e| not_stored(name, e))?;
    }
    let info = store
        .update_target(name, &target.url, &target.config)
        .await?;
    Ok((info, notes))
}

/// A family's refusal of what was asked for one secret, saying what did not happen to it.
fn refused(name: &SecretName, what: &str, e: SetupError) -> Error {
    setup_error(match e {
        SetupError::Invalid(m) => SetupError::Invalid(format!("secret '{name}' {what}: {m}")),
        SetupError::Target(m) => SetupError::Target(format!("secret '{name}' {what}: {m}")),
    })
}

/// Refuses options that `family` does not read for this command (an SSH host key for a
/// database target, say): options share one namespace across families.
fn check_options_fit(
    family: &dyn rotators::Family,
    scope: OptionScope,
    options: &Options,
    kind: &str,
) -> Result<()> {
    for name in options.names() {
        if !family
            .options()
            .iter()
            .any(|o| o.name == name && o.scope == scope)
        {
            return Err(Error::invalid(format!(
                "--{name} is not an option for {kind} targets"
            )));
        }
    }
    Ok(())
}

/// `rotor target check`: the family logs in as the admin and says what it may do.
pub async fn check_target(store: &Store, registry: &Registry, name: &str) -> Result<String> {
    let target = store.target_context(name).await?;
    let (family, _) = family_of(registry, &target)?;
    family.check_target(&target).await.map_err(setup_error)
}

/// `rotor secret create --target`: the family makes (create mode) or checks (import mode) the
/// secret's first credentials; `new` brings the name, kind and metadata, and its value is
/// replaced by the family's. In create mode the credentials reach the target only once the
/// secret is stored, and the secret goes again if the target refuses them.
pub async fn create_secret(
    store: &Store,
    registry: &Registry,
    mut new: NewSecret,
    target: &str,
    source: Source,
    options: &Options,
) -> Result<PutOutcome> {
    let context = store.target_context(target).await?;
    let (family, spec) = family_of(registry, &context)?;
    if !family.serves(spec.name, new.kind) {
        return Err(Error::invalid(format!(
            "secret '{}': {} secrets cannot live on target '{target}', a {} target",
            new.name, new.kind, spec.name
        )));
    }
    check_options_fit(
        family.as_ref(),
        OptionScope::SecretCreate,
        options,
        spec.name,
    )?;
    let provisioned = family
        .provision(SecretRequest {
            secret_name: new.name.as_str(),
            kind: new.kind,
            source,
            options,
            target: &context,
        })
        .await
        .map_err(setup_error)?;
    let kind = new.kind;
    let discard = |e: Error| async {
        if provisioned.made_on_target {
            if let Err(gone) = family.discard(&context, kind, &provisioned).await {
                tracing::warn!(error = %gone, "could not remove the credential the target made");
            }
        }
        e
    };
    let values: Vec<&SecretValue> = [Some(&provisioned.current), provisioned.previous.as_ref()]
        .into_iter()
        .flatten()
        .collect();
    let ours = family.accounts(new.kind, &provisioned.settings, &values);
    let refusal = format!("secret '{}' was not created", new.name);
    if let Err(e) =
        refuse_shared_accounts(store, family.as_ref(), target, &new.name, &ours, &refusal).await
    {
        return Err(discard(e).await);
    }
    new.value = provisioned.current.clone();
    new.previous = provisioned.previous.clone();
    new.settings = Some(provisioned.settings.clone());
    new.target = Some(target.to_owned());
    let name = new.name.clone();
    let done = match store.create_secret(new).await {
        Ok(done) => done,
        Err(e) => return Err(discard(e).await),
    };
    if provisioned.install {
        if let Err(e) = family
            .install(
                &context,
                kind,
                name.as_str(),
                done.version_id.as_str(),
                &provisioned,
            )
            .await
        {
            store.delete(&name, DeleteMode::Force).await?;
            return Err(refused(&name, "was not created", e));
        }
    }
    Ok(done)
}

/// A managed secret as a check sees it: its family, target, kind, settings and values.
struct Managed {
    family: std::sync::Arc<dyn rotators::Family>,
    target: TargetContext,
    state: crate::store::RotationRecord,
}

async fn managed(
    store: &Store,
    registry: &Registry,
    name: &SecretName,
    what: &str,
) -> Result<Managed> {
    let claim = store.claim_for_reading(name).await?;
    let state = store.load_rotation_unleased(&claim).await?;
    let Some(target_name) = state.target.clone() else {
        return Err(Error::invalid(format!(
            "secret '{name}' has no target to check a credential on, so it cannot be {what}"
        )));
    };
    let target = store.target_context(&target_name).await?;
    let family = family_of(registry, &target)?.0.clone();
    Ok(Managed {
        family,
        target,
        state,
    })
}

/// `rotor secret import`: a credential changed outside rotor becomes the new `ACSCurrent` once
/// the secret's family has logged in with it (and found it is this secret's).
pub async fn reimport(
    store: &Store,
    registry: &Registry,
    name: &SecretName,
    value: SecretValue,
) -> Result<PutOutcome> {
    let m = managed(store, registry, name, "re-imported").await?;
    // A rotation that failed before its new credential was surely applied (in `create` or
    // `set`: the current credential was changed outside rotor, say), or that left it on the
    // target in place of the current one (a single account's failed `test`), gives way to the
    // credential the operator brings; the store checks it again, and ends the job in the
    // import's own transaction. One still running or retrying does not, nor one that failed
    // later with the current credential working.
    if let Some(job) = &m.state.job {
        let failed = store.describe(name).await?.rotation_status == RotationStatus::Failed;
        if !failed || !crate::engine::Job::from_record(job.clone())?.importable() {
            return Err(crate::store::rotation_in_flight(name));
        }
    }
    // A target's own admin secret: the new credential must work as the admin.
    if crate::store::admin_secret_name(&m.target.name) == name.as_str() {
        return reimport_admin(store, m, name, value).await;
    }
    let current = m
        .state
        .current
        .as_ref()
        .ok_or_else(|| Error::invalid(format!("secret '{name}' has no current version")))?;
    m.family
        .check_credential(
            &m.target,
            m.state.kind,
            &m.state.settings,
            &current.value,
            &value,
        )
        .await
        .map_err(|e| match e {
            SetupError::Invalid(msg) => Error::invalid(format!("{msg}; nothing stored")),
            other => setup_error(other),
        })?;
    let next = m
        .state
        .schedule
        .as_ref()
        .and_then(|s| s.plan(m.state.jitter, store.clock().now()));
    store.import_value(name, value, next).await
}

/// `rotor secret import acs/target/NAME/admin`: the target's admin credential changed outside
/// rotor (or was taken over): the family checks the target with it, as `target check` does,
/// and only then is it stored.
async fn reimport_admin(
    store: &Store,
    mut m: Managed,
    name: &SecretName,
    value: SecretValue,
) -> Result<PutOutcome> {
    rotators::value::validate(m.state.kind, value.expose())
        .map_err(|e| Error::invalid(format!("secret '{name}': {e}")))?;
    let ours = m
        .family
        .accounts(m.state.kind, &m.state.settings, &[&value]);
    let refusal = format!("secret '{name}' was not imported");
    refuse_shared_accounts(
        store,
        m.family.as_ref(),
        &m.target.name,
        name,
        &ours,
        &refusal,
    )
    .await?;
    m.target.admin = Some(value.clone());
    m.family.check_target(&m.target).await.map_err(|e| {
        Error::invalid(format!(
            "the new admin credential of target '{}' does not work: {e}; nothing stored",
            m.target.name
        ))
    })?;
    let next = m
        .state
        .schedule
        .as_ref()
        .and_then(|s| s.plan(m.state.jitter, store.clock().now()));
    store.import_value(name, value, next).await
}

/// `rotor secret rollback`: `ACSCurrent` goes back to the `ACSPrevious` version after its
/// credential logged in; only where the previous credential stays valid (dual accounts, key
/// pairs), never while a rotation is in flight.
pub async fn rollback(
    store: &Store,
    registry: &Registry,
    name: &SecretName,
) -> Result<Vec<crate::store::VersionInfo>> {
    let m = managed(store, registry, name, "rolled back").await?;
    let kind = m.state.kind;
    if !m.family.previous_stays_valid(kind) {
        return Err(Error::invalid(format!(
            "secret '{name}' is {kind}: its previous credential stops working when it rotates, so it cannot be rolled back (rotate it, or re-import the credential in use: rotor secret import {name})"
        )));
    }
    if m.state.job.is_some() {
        return Err(crate::store::rotation_in_flight(name));
    }
    let (Some(current), Some(previous)) = (&m.state.current, &m.state.previous) else {
        return Err(Error::invalid(format!(
            "secret '{name}' has no ACSPrevious version to roll back to"
        )));
    };
    m.family
        .check_credential(&m.target, kind, &m.state.settings, &current.value, &previous.value)
        .await
        .map_err(|e| {
            Error::Target(format!(
                "the previous credential of secret '{name}' no longer works, so nothing changed: {e}"
            ))
        })?;
    let from = VersionId::parse(&current.version_id)?;
    let to = VersionId::parse(&previous.version_id)?;
    store.rollback(name, &from, &to).await
}

/// What `secret delete` did, and what it left on the secret's target.
#[derive(Debug, Default)]
pub struct Deletion {
    /// When the deletion happens (a recovery window), or `None`: done.
    pub planned: Option<i64>,
    /// The target the secret's credentials lived on, if it had one.
    pub target: Option<String>,
    /// What stays on the target, in words (empty when its family does not say).
    pub left: Vec<String>,
    /// Who made what stays (`None` when its family does not say).
    pub left_origin: Option<rotators::Origin>,
    /// What `--drop-accounts` removed from the target, in words.
    pub dropped: Vec<String>,
}

/// `rotor secret delete`: deletes (or schedules the deletion of) a secret and says what its
/// credentials leave on its target; with `drop_accounts` (only with [`DeleteMode::Force`])
/// its family first removes the accounts rotor created for it, so that none outlives the
/// secret holding its password, and nothing is deleted if it cannot.
pub async fn delete_secret(
    store: &Store,
    registry: &Registry,
    name: &SecretName,
    mode: DeleteMode,
    drop_accounts: bool,
) -> Result<Deletion> {
    if drop_accounts && mode != DeleteMode::Force {
        return Err(Error::invalid(format!(
            "--drop-accounts needs --force: a dropped account cannot be restored, so it goes only with a deletion that cannot be undone (secret '{name}' kept; schedule its deletion now and run `rotor secret delete {name} --force --drop-accounts` when sure)"
        )));
    }
    let mut done = Deletion::default();
    // What stays is said when it can be found out; a secret is deleted all the same.
    let view = match store.deletion_view(name).await {
        Ok(view) => Some(view),
        Err(e) if drop_accounts => return Err(e),
        Err(_) => None,
    };
    if let Some(view) = &view {
        if let Some(target_name) = &view.target {
            done.target = Some(target_name.clone());
            let found = match store.target_context(target_name).await {
                Ok(target) => {
                    family_of(registry, &target).map(|(family, _)| (family.clone(), target))
                }
                Err(e) => Err(e),
            };
            let (family, target) = match found {
                Ok(found) => found,
                Err(e) if drop_accounts => return Err(e),
                Err(_) => return finish_delete(store, name, mode, done).await,
            };
            let current = view.current.as_ref().map(|c| &c.value);
            let on_target =
                current.and_then(|c| family.on_target(&target, view.kind, &view.settings, c));
            if let Some(on) = on_target {
                done.left = on.items;
                done.left_origin = Some(on.origin);
            }
            if drop_accounts {
                let current = current.ok_or_else(|| {
                    Error::invalid(format!(
                        "secret '{name}' has no current version; nothing deleted"
                    ))
                })?;
                done.dropped = family
                    .remove_accounts(&target, view.kind, &view.settings, current)
                    .await
                    .map_err(|e| refused(name, "was not deleted", e))?;
                done.left.clear();
                done.left_origin = None;
            }
        } else if drop_accounts {
            return Err(Error::invalid(format!(
                "secret '{name}' has no target, so it has no accounts to drop; nothing deleted"
            )));
        }
    }
    finish_delete(store, name, mode, done).await
}

async fn finish_delete(
    store: &Store,
    name: &SecretName,
    mode: DeleteMode,
    mut done: Deletion,
) -> Result<Deletion> {
    done.planned = store.delete(name, mode).await.inspect_err(|e| {
        if !done.dropped.is_empty() {
            tracing::error!(secret = %name, target = done.target.as_deref().unwrap_or_default(), error = %e,
                "the secret's accounts were dropped from its target, but deleting the secret failed: delete it again");
        }
    })?;
    Ok(done)
}

/// The family serving a stored target's kind.
fn family_of<'r>(
    registry: &'r Registry,
    target: &TargetContext,
) -> Result<(
    &'r std::sync::Arc<dyn rotators::Family>,
    &'static rotators::family::TargetKindSpec,
)> {
    registry.target_kind(&target.kind).ok_or_else(|| {
        Error::invalid(format!(
            "target '{}' is of kind '{}', which this build does not serve",
            target.name, target.kind
        ))
    })
}

/// `a`, `a or b`, `a, b or c`.
fn or_list(items: &[&str]) -> String {
    match items {
        [] => String::new(),
        [one] => (*one).to_owned(),
        [rest @ .., last] => format!("{} or {last}", rest.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_read_as_english() {
        assert_eq!(
            or_list(&["postgres", "mysql", "redis"]),
            "postgres, mysql or redis"
        );
    }
}
