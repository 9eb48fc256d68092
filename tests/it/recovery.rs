//! Recovery from a failed rotation, with a failure injected into the store itself: a trigger on
//! the PostgreSQL store's `versions` table refuses the write a checked re-import makes after it
//! has ended the failed rotation's job. The re-import is one transaction: nothing changes, or
//! the job ends and the value is imported together.

use serde_json::json;
use sqlx::{Connection, Executor, PgConnection};

use crate::ssh::{add_target, import_file, ok, rotate, value};
use crate::sshd::{set_password, HostUser, Sshd, Sudo};
use crate::support::{assert_refused, Backend, TestEnv};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_re_import_that_fails_half_way_changes_nothing_and_a_retry_does_both() {
    let t = TestEnv::new(Backend::Postgres).await;
    t.ok(&["init"]);
    let sshd = Sshd::start();
    let user = HostUser::new(Sudo::No);
    ok(add_target(
        &t,
        "host",
        &sshd,
        &["--host-key", &sshd.host_key()],
        "",
    ));
    let first = json!({"UserName": user.name, "Password": user.password});
    t.ok(&[
        "secret",
        "create",
        "host/app",
        "--type",
        "ECS",
        "--target",
        "host",
        "--value-file",
        &import_file(&t, &first),
    ]);

    // The password is changed outside rotor: the rotation fails in `set`, keeping its job.
    set_password(&user.name, "Changed-Outside-1");
    let out = t.run(&["rotate", "host/app"]);
    assert_refused(&out, 6, "current password of user", Some(&user.password));
    let described = t.json(&["secret", "describe", "host/app"]);
    assert_eq!(described["RotationStatus"], "Failed", "{described}");
    assert_eq!(described["RotationStep"], "set", "{described}");
    let before = t.snapshot().await;

    // The store refuses new versions: the import fails after ending the job, and rolls back.
    let mut store_db = PgConnection::connect(&t.store_url().unwrap())
        .await
        .expect("the test store's PostgreSQL database");
    store_db
        .execute(
            "CREATE FUNCTION refuse_versions() RETURNS trigger LANGUAGE plpgsql AS \
             $$ BEGIN RAISE EXCEPTION 'injected failure: no new versions'; END $$",
        )
        .await
        .unwrap();
    store_db
        .execute(
            "CREATE TRIGGER refuse_versions BEFORE INSERT ON versions \
             FOR EACH ROW EXECUTE FUNCTION refuse_versions()",
        )
        .await
        .unwrap();
    let changed = json!({"UserName": user.name, "Password": "Changed-Outside-1"});
    let file = import_file(&t, &changed);
    let out = t.run(&["secret", "import", "host/app", "--value-file", &file]);
    assert_refused(&out, 1, "injected failure", Some("Changed-Outside-1"));
    let described = t.json(&["secret", "describe", "host/app"]);
    assert_eq!(
        (&described["RotationStatus"], &described["RotationStep"]),
        (&json!("Failed"), &json!("set")),
        "the failed import left the failed rotation's job in place: {described}"
    );
    assert_eq!(
        t.snapshot().await,
        before,
        "the failed import changed nothing"
    );
    assert_eq!(value(&t, "host/app", "ACSCurrent"), first);

    // Once the store takes versions again, the import ends the job and imports, together.
    store_db
        .execute("DROP TRIGGER refuse_versions ON versions")
        .await
        .unwrap();
    let out = t.ok(&["secret", "import", "host/app", "--value-file", &file]);
    assert!(out.contains("ACSCurrent"), "{out}");
    let described = t.json(&["secret", "describe", "host/app"]);
    assert_eq!(described["RotationStatus"], "Idle", "{described}");
    assert!(described["RotationStep"].is_null(), "{described}");
    assert_eq!(value(&t, "host/app", "ACSCurrent"), changed);
    assert!(
        !t.ok(&["secret", "versions", "host/app"])
            .contains("ACSPending"),
        "the failed cycle's pending version is unstaged"
    );
    assert_eq!(
        sshd.login_password(&user.name, "Changed-Outside-1")
            .unwrap(),
        user.name
    );
    // And rotation resumes from the imported password.
    rotate(&t, "host/app");
    let current = value(&t, "host/app", "ACSCurrent")["Password"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        sshd.login_password(&user.name, &current).unwrap(),
        user.name
    );
}
