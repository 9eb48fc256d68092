//! The web console: console users made by the CLI (argon2id, the AccessKeys' rules), and the
//! console itself in a real browser — headless Chromium driven by playwright-core
//! (`tests/console/browser.cjs`) against `rotor serve` over HTTPS: log in, the secrets by tab and
//! search, a Generic secret and a dual-account PostgreSQL secret created from their panels, a
//! rotation started from the page with its steps watched live, the old version seen as
//! `ACSPrevious`, a value revealed (and audited), rotation settings (a bad interval's error next
//! to its field), rollback, delete with a recovery window and restore, a bad tag's error next to
//! its field, a user
//! whose rules cover only `app/*`, CSRF-less and cross-origin changes refused, a stored
//! `<script>` that does not run, framing refused, logout, failed logins throttled; a Generic
//! secret's new version, roll back and stage move; rotation settings by cron with a window and
//! jitter (each refusal next to its field); the RAM panel making an AccessKey on the RAM
//! emulator and the ECS panel refusing a missing target; the audit log paged; HSTS over TLS.
//! Screenshots of each page are kept in `target/console-screenshots/`.

use std::path::PathBuf;
use std::process::Command;

use crate::api::{serve, stop};
use crate::databases::Pg;
use crate::ram::{add_ram_target, keys_of, Emulator};
use crate::support::TestEnv;
use rotators::ram::client::SignatureStyle;

const ADMIN_PASSWORD: &str = "admin-password-for-the-test";
const NARROW_PASSWORD: &str = "narrow-password-for-the-test";

fn console_user(t: &TestEnv, name: &str, password: &str, allow: &[&str]) -> std::process::Output {
    let mut args = vec!["console-user", "create", name];
    for a in allow {
        args.extend(["--allow", a]);
    }
    t.run_with_stdin(&args, &format!("{password}\n"))
}

crate::both_backends!(
    console_users_hold_an_argon2id_hash_and_the_access_key_rules,
    |t: TestEnv| async move {
        t.ok(&["init"]);
        let made = console_user(&t, "ops", ADMIN_PASSWORD, &["*:*"]);
        assert!(
            made.status.success(),
            "{}",
            String::from_utf8_lossy(&made.stderr)
        );
        let narrow = console_user(
            &t,
            "app-reader",
            NARROW_PASSWORD,
            &["DescribeSecret:app/*", "ListSecrets:app/*"],
        );
        assert!(
            narrow.status.success(),
            "{}",
            String::from_utf8_lossy(&narrow.stderr)
        );
        // The rules, the name and the password are checked as an AccessKey's.
        for (name, password, why) in [
            ("short", "too-short", "a password under 12 characters"),
            ("bad name", ADMIN_PASSWORD, "a name with a space"),
        ] {
            let out = console_user(&t, name, password, &["*:*"]);
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{why}: {stderr}");
        }
        // A rule that does not parse is refused before the password is read.
        let out = t.run(&["console-user", "create", "x", "--allow", "Nope:*"]);
        assert_eq!(out.status.code(), Some(2), "an unknown action");
        let again = console_user(&t, "ops", ADMIN_PASSWORD, &["*:*"]);
        assert_eq!(
            again.status.code(),
            Some(4),
            "a second user of the same name"
        );
        let listed = t.json(&["console-user", "list"]);
        let names: Vec<&str> = listed
            .as_array()
            .unwrap()
            .iter()
            .map(|u| u["ConsoleUserName"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["app-reader", "ops"]);
        assert_eq!(
            listed[0]["Policy"],
            serde_json::json!(["DescribeSecret:app/*", "ListSecrets:app/*"])
        );
        let text = listed.to_string();
        assert!(
            !text.contains("argon2") && !text.contains(ADMIN_PASSWORD),
            "{text}"
        );
        // Only the hash is stored, an argon2id one.
        let raw = t.raw_store_bytes();
        let has = |needle: &[u8]| raw.windows(needle.len()).any(|w| w == needle);
        assert!(
            !has(ADMIN_PASSWORD.as_bytes()),
            "the password is in the store"
        );
        assert!(has(b"$argon2id$"), "an argon2id hash is in the store");
        let audit = t.json(&["audit", "--action", "console_user"]);
        assert_eq!(audit.as_array().unwrap().len(), 2, "{audit}");
        t.ok(&["console-user", "delete", "app-reader"]);
        assert_eq!(
            t.run(&["console-user", "delete", "app-reader"])
                .status
                .code(),
            Some(3)
        );
    }
);

/// Where the browser test's screenshots go: `console-screenshots` in the target directory.
fn screenshots() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("the target directory")
        .join("console-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_in_a_real_browser() {
    let modules = std::env::var("ROTOR_TEST_NODE_MODULES").unwrap_or_else(|_| {
        panic!("ROTOR_TEST_NODE_MODULES is not set: tests/run installs playwright-core (npm) and Chromium (apt) and sets it")
    });
    let chromium =
        std::env::var("ROTOR_TEST_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        std::path::Path::new(&chromium).exists(),
        "Chromium is missing at {chromium}: tests/run installs it (apt-get install chromium)"
    );
    let pg = Pg::new().await;
    let t = &pg.t;
    let account = pg.name("console");
    for args in [
        vec![
            "secret",
            "create",
            "app/one",
            "--type",
            "Generic",
            "--value",
            "one-value",
            "--tag",
            "team=app",
        ],
        vec![
            "secret",
            "create",
            "other/two",
            "--type",
            "Generic",
            "--value",
            "two-value",
        ],
        vec![
            "secret",
            "create",
            "app/xss",
            "--type",
            "Generic",
            "--value",
            "x",
            "--description",
            "<script>window.__xss=1</script><img src=x onerror=\"window.__xss=2\">",
        ],
    ] {
        t.ok(&args);
    }
    for (name, password, allow) in [
        ("admin", ADMIN_PASSWORD, "*:*"),
        ("app-reader", NARROW_PASSWORD, "*:app/*"),
    ] {
        let out = console_user(t, name, password, &[allow]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // The RAM panel's target: the emulator, with a user whose AccessKey the console makes.
    let emulator = Emulator::start();
    let ram_user = "console-batch";
    emulator
        .admin(SignatureStyle::V3)
        .call("CreateUser", &[("UserName", ram_user)])
        .await
        .unwrap();
    let added = add_ram_target(t, "cloud", &emulator, &[]);
    assert!(
        added.status.success(),
        "{}",
        String::from_utf8_lossy(&added.stderr)
    );
    let (server, addr) = serve(t, &[]);
    let shots = screenshots();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/console/browser.cjs");
    let out = Command::new("node")
        .arg(script)
        .env("NODE_PATH", &modules)
        .env("ROTOR_CONSOLE_URL", format!("https://{addr}"))
        .env("ROTOR_CONSOLE_ADMIN", format!("admin:{ADMIN_PASSWORD}"))
        .env(
            "ROTOR_CONSOLE_NARROW",
            format!("app-reader:{NARROW_PASSWORD}"),
        )
        .env("ROTOR_CONSOLE_DB", format!("{}:{account}", pg.db))
        .env("ROTOR_CONSOLE_RAM_USER", ram_user)
        .env("ROTOR_CONSOLE_SHOTS", &shots)
        .env("ROTOR_TEST_CHROMIUM", &chromium)
        .output()
        .expect("node runs (install Node.js)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let log = stop(server);
    assert!(
        out.status.success(),
        "the browser test failed:\n{stdout}\n{}\nserver log:\n{log}",
        String::from_utf8_lossy(&out.stderr)
    );
    println!("{stdout}");
    for page in [
        "login",
        "secrets",
        "create-rds",
        "create-ram",
        "create-ecs",
        "details-generic",
        "rotate-progress",
        "details-revealed",
        "targets",
        "audit",
        "secrets-narrow",
    ] {
        assert!(
            shots.join(format!("{page}.png")).exists(),
            "screenshot {page}"
        );
    }
    // The value revealed in the page: the rotated account, which logs in; never in the log.
    let revealed: String = stdout
        .lines()
        .find_map(|l| l.strip_prefix("REVEALED "))
        .map(|l| serde_json::from_str(l).unwrap())
        .expect("the revealed value");
    let data: serde_json::Value = serde_json::from_str(&revealed).unwrap();
    let login = (
        data["AccountName"].as_str().unwrap().to_owned(),
        data["AccountPassword"].as_str().unwrap().to_owned(),
    );
    assert_eq!(pg.login(&login).await.unwrap(), login.0);
    for secret in [
        login.1.as_str(),
        ADMIN_PASSWORD,
        NARROW_PASSWORD,
        "one-value",
    ] {
        assert!(!log.contains(secret), "the server's log shows a secret");
    }
    // Every change and the reveal ran as console:admin; the refused delete changed nothing.
    let audit = t.json(&["audit"]);
    let by = |action: &str, outcome: &str| {
        audit
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["Action"] == action && r["Actor"] == "console:admin")
            .filter(|r| r["Outcome"] == outcome)
            .count()
    };
    assert!(by("secret.create", "ok") >= 2, "{audit}");
    assert_eq!(by("secret.reveal", "ok"), 1, "{audit}");
    assert_eq!(by("rotation.finish", "ok"), 1, "{audit}");
    assert_eq!(by("console.login", "ok"), 1, "{audit}");
    assert_eq!(by("console.login", "failed"), 1, "{audit}");
    assert_eq!(by("console.logout", "ok"), 1, "{audit}");
    assert_eq!(by("secret.put", "ok"), 1, "{audit}");
    assert_eq!(by("secret.stage", "ok"), 2, "{audit}");
    assert!(by("rotation.policy", "ok") >= 3, "{audit}");
    // The RAM secret holds a key the emulator made for its user.
    let ram = t.json(&["secret", "get", "ram/console"]);
    let pair: serde_json::Value =
        serde_json::from_str(ram["SecretData"].as_str().unwrap()).unwrap();
    assert!(
        keys_of(&emulator, ram_user)
            .await
            .contains(&pair["AccessKeyId"].as_str().unwrap().to_owned()),
        "{ram}"
    );
    let one = t.json(&["secret", "describe", "app/one"]);
    assert!(one.get("PlannedDeleteTime").is_none(), "{one}");
    pg.cleanup_dual(&account).await;
}
