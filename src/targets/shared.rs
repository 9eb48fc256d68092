//! One account, one secret: a secret is refused when another secret on its target — or on
//! another target naming the same server — already rotates one of its accounts.

use rotators::SecretValue;

use crate::error::{Error, Result};
use crate::model::SecretName;
use crate::store::Store;

/// Refuses a secret (`ours`: the accounts it would rotate) that would rotate an account another
/// secret on its target already rotates (the target's admin among them): each rotation would
/// lock out the applications of the other, whose credential no longer logs in. `refusal` begins
/// the message.
pub(super) async fn refuse_shared_accounts(
    store: &Store,
    family: &dyn rotators::Family,
    target: &str,
    name: &SecretName,
    ours: &[String],
    refusal: &str,
) -> Result<()> {
    if ours.is_empty() {
        return Ok(());
    }
    // The target, and every other target naming the same server.
    let targets = store.list_targets().await?;
    let this = targets.iter().find(|t| t.name == target);
    let server = this.and_then(|t| server_of(&t.url));
    let mut scanned: Vec<(String, SecretName)> = vec![];
    for t in &targets {
        let same = t.name == target
            || (family.server_holds_accounts()
                && this.is_some_and(|this| this.kind == t.kind)
                && server.is_some()
                && server_of(&t.url) == server);
        if same {
            for other in store.secrets_on_target(&t.name).await? {
                scanned.push((t.name.clone(), other));
            }
        }
    }
    let checking_admin = crate::store::admin_secret_name(target) == name.as_str();
    for (on, other) in scanned {
        let admin = crate::store::admin_secret_name(&on);
        // Two targets naming one server may well share its admin account.
        if other == *name || (checking_admin && other.as_str() == admin) {
            continue;
        }
        let holder = if on == target {
            format!("secret '{other}'")
        } else {
            format!("secret '{other}' (on target '{on}', the same server)")
        };
        // A secret scheduled for deletion counts: it may be restored.
        let (claim, scheduled) = store.claim_for_reading_any(&other).await?;
        let state = store
            .load_rotation_unleased(&claim)
            .await
            .map_err(|e| match e {
                Error::Store(_) => e,
                e => Error::conflict(format!(
                    "{refusal}: {holder} could not be read to tell which accounts it rotates ({e})"
                )),
            })?;
        let values: Vec<&SecretValue> = [&state.current, &state.previous, &state.pending]
            .into_iter()
            .flatten()
            .map(|v| &v.value)
            .collect();
        let theirs = family.accounts(state.kind, &state.settings, &values);
        if let Some(shared) = ours.iter().find(|a| theirs.contains(a)) {
            let way_out = if other.as_str() == admin {
                format!("it is the target's admin account, which rotor rotates as '{other}'")
            } else if scheduled {
                format!("'{other}' is scheduled for deletion: restore it with rotor secret restore {other}, or delete it now with rotor secret delete {other} --force")
            } else {
                format!(
                    "use '{other}', or delete it first with rotor secret delete {other} --force"
                )
            };
            return Err(Error::conflict(format!(
                "{refusal}: account '{shared}' on target '{target}' is rotated by {holder} already; two secrets rotating one account lock out each other's applications ({way_out})"
            )));
        }
    }
    Ok(())
}

/// The server a target's URL names, as `(host, port)`: the host in lower case with the
/// loopback names made one, the port or the scheme's default. `None` when the URL has no host.
fn server_of(url: &str) -> Option<(String, Option<u16>)> {
    let url = url::Url::parse(url).ok()?;
    let host = url.host_str()?.to_ascii_lowercase();
    let host = match host.trim_start_matches('[').trim_end_matches(']') {
        "localhost" | "127.0.0.1" | "::1" => "localhost".to_owned(),
        _ => host,
    };
    let port = url.port().or(match url.scheme() {
        "postgres" | "postgresql" => Some(5432),
        "mysql" | "mariadb" => Some(3306),
        "redis" | "rediss" => Some(6379),
        "ssh" => Some(22),
        _ => None,
    });
    Some((host, port))
}

#[cfg(test)]
mod tests {
    use super::server_of;

    #[test]
    fn one_server_however_its_url_names_it() {
        let pg = server_of("postgres://127.0.0.1:5432/postgres");
        assert_eq!(server_of("postgres://localhost/template1"), pg);
        assert_eq!(server_of("postgresql://[::1]:5432/x?sslmode=disable"), pg);
        assert_ne!(server_of("postgres://127.0.0.1:55432/postgres"), pg);
        assert_eq!(
            server_of("redis://DB.example:6379"),
            server_of("redis://db.example")
        );
        assert_ne!(
            server_of("mysql://a.example"),
            server_of("mysql://b.example")
        );
        assert_eq!(server_of("not a url"), None);
    }
}
