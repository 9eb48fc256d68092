//! The API's conflict codes follow the kind of conflict the store raises (a name or version id
//! taken, a secret in its deletion window, any other state), not the words of its message.

use crate::api::{access_key, refused, serve, stop, Client, Signing};
use crate::support::{Backend, TestEnv};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_kind_of_conflict_answers_its_kms_code() {
    let t = TestEnv::new(Backend::Sqlite).await;
    t.ok(&["init"]);
    for name in ["app/live", "app/gone"] {
        t.ok(&[
            "secret", "create", name, "--type", "Generic", "--value", "v",
        ]);
    }
    let all = access_key(&t, "all", &["*:*"]);
    let (server, addr) = serve(&t, &[]);
    let c = Client::new(&t, &addr);
    let s = || Signing::new(&all);

    // Taken: a secret's name, a version id with other data.
    let create = [("SecretName", "app/live"), ("SecretData", "x")];
    refused(
        c.v1(&s(), "CreateSecret", &create, "").await,
        409,
        "Rejected.ResourceExist",
    );
    let put = [
        ("SecretName", "app/live"),
        ("SecretData", "other"),
        ("VersionId", "v1"),
    ];
    refused(
        c.v1(&s(), "PutSecretValue", &put, "").await,
        409,
        "Rejected.ResourceExist",
    );

    // In its deletion window: read, deleted again, created again.
    let gone = [("SecretName", "app/gone")];
    let (status, body) = c.v1(&s(), "DeleteSecret", &gone, "").await;
    assert_eq!(status, 200, "{body}");
    for (action, params) in [
        ("GetSecretValue", &gone[..]),
        ("DeleteSecret", &gone[..]),
        (
            "CreateSecret",
            &[("SecretName", "app/gone"), ("SecretData", "x")][..],
        ),
    ] {
        refused(
            c.v1(&s(), action, params, "").await,
            409,
            "Rejected.ResourceInDeleteWindow",
        );
    }

    // Any other state: a stage that is not on the version named (v2 takes ACSCurrent).
    let put = [
        ("SecretName", "app/live"),
        ("SecretData", "two"),
        ("VersionId", "v2"),
    ];
    let (status, body) = c.v1(&s(), "PutSecretValue", &put, "").await;
    assert_eq!(status, 200, "{body}");
    let stage = [
        ("SecretName", "app/live"),
        ("VersionStage", "ACSCurrent"),
        ("MoveToVersion", "v1"),
        ("RemoveFromVersion", "v1"),
    ];
    refused(
        c.v1(&s(), "UpdateSecretVersionStage", &stage, "").await,
        409,
        "Rejected.ResourceConflict",
    );
    stop(server);
}
