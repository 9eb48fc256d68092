//! The RAM family at its edges: a key someone made by hand is never taken for one an interrupted
//! attempt of rotor's made — after a failed attempt, and with rotor's clock minutes off the
//! cloud's; a `create` that deleted the previous version's key and then failed takes
//! `ACSPrevious` off it and says so; a CreateAccessKey whose answer is lost leaves no key (or,
//! when the clean-up cannot reach the cloud either, the next attempt deletes it); the key of an
//! attempt cut off is still known for one after an attempt that was throttled; a RAM user is one
//! secret's.

use rotators::ram::client::SignatureStyle;

use crate::ram::{add_ram_target, env, keys_of, pair, Emulator};
use crate::support::{assert_refused, Backend, TestEnv};

/// A RAM user `user` on a fresh emulator, a target `cloud`, and the secret `ram/USER` in create
/// mode (the user holds its one key).
async fn rig(user: &str, backend: Backend) -> (TestEnv, Emulator) {
    let t = env(backend).await;
    let emulator = Emulator::start();
    emulator
        .admin(SignatureStyle::V3)
        .call("CreateUser", &[("UserName", user)])
        .await
        .unwrap();
    let out = add_ram_target(&t, "cloud", &emulator, &[]);
    assert!(out.status.success(), "{out:?}");
    let secret = format!("ram/{user}");
    t.ok(&[
        "secret",
        "create",
        &secret,
        "--type",
        "RAMCredentials",
        "--target",
        "cloud",
        "--ram-user",
        user,
    ]);
    (t, emulator)
}

fn text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_made_by_hand_after_a_throttled_attempt_is_not_deleted() {
    let (t, emulator) = rig("ops", Backend::Sqlite).await;
    let admin = emulator.admin(SignatureStyle::V3);
    // An attempt throttled until it gives up: it made nothing.
    emulator.throttle(1000).await;
    let out = t.run(&["rotate", "ram/ops"]);
    assert_eq!(out.status.code(), Some(6), "{}", text(&out));
    emulator.throttle(0).await;
    // Later, someone makes a key of their own (more than the two seconds the clocks' whole
    // seconds leave uncertain before the next attempt).
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let hand = admin.create_access_key("ops").await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    let out = t.run(&["rotate", "ram/ops"]);
    assert_refused(&out, 6, &hand.access_key_id, Some(&hand.access_key_secret));
    assert!(
        text(&out).contains("not this secret's") && !text(&out).contains("interrupted attempt"),
        "{}",
        text(&out)
    );
    assert!(
        keys_of(&emulator, "ops")
            .await
            .contains(&hand.access_key_id),
        "the key made by hand survives"
    );
    // Once it is gone, rotations go on.
    admin
        .delete_access_key("ops", &hand.access_key_id)
        .await
        .unwrap();
    t.ok(&["rotate", "ram/ops"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_rotors_clock_5_minutes_behind_a_key_made_by_hand_is_not_deleted() {
    let (t, emulator) = rig("etl", Backend::Postgres).await;
    let admin = emulator.admin(SignatureStyle::V3);
    // Rotor's clock 5 minutes behind the cloud's.
    emulator.clock_offset(300).await;
    let hand = admin.create_access_key("etl").await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    let out = t.run(&["rotate", "ram/etl"]);
    assert_refused(&out, 6, &hand.access_key_id, Some(&hand.access_key_secret));
    assert!(
        text(&out).contains("ahead of rotor's"),
        "the refusal says the clocks differ: {}",
        text(&out)
    );
    assert!(keys_of(&emulator, "etl")
        .await
        .contains(&hand.access_key_id));
    admin
        .delete_access_key("etl", &hand.access_key_id)
        .await
        .unwrap();
    // Rotations work across the difference, within the two-key limit.
    let first = pair(&t, "ram/etl", "ACSCurrent");
    t.ok(&["rotate", "ram/etl"]);
    t.ok(&["rotate", "ram/etl"]);
    let mut expected = vec![
        pair(&t, "ram/etl", "ACSCurrent").0,
        pair(&t, "ram/etl", "ACSPrevious").0,
    ];
    expected.sort();
    assert_eq!(keys_of(&emulator, "etl").await, expected);
    assert!(!expected.contains(&first.0));
    // And the cloud 5 minutes behind rotor.
    emulator.clock_offset(-300).await;
    t.ok(&["rotate", "ram/etl"]);
    assert_eq!(keys_of(&emulator, "etl").await.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_create_that_deleted_the_previous_key_takes_acsprevious_off_and_says_so() {
    let (t, emulator) = rig("web", Backend::Sqlite).await;
    t.ok(&["rotate", "ram/web"]);
    let current = pair(&t, "ram/web", "ACSCurrent");
    let previous = pair(&t, "ram/web", "ACSPrevious");
    emulator
        .refuse("CreateAccessKey", 503, "ServiceUnavailable")
        .await;
    let out = t.run(&["rotate", "ram/web"]);
    assert_eq!(out.status.code(), Some(6), "{}", text(&out));
    assert_eq!(keys_of(&emulator, "web").await, vec![current.0.clone()]);
    let described = t.json(&["secret", "describe", "ram/web"]);
    let said = described.to_string();
    assert!(
        said.contains(&previous.0) && said.contains("no longer signs"),
        "describe says the previous key is gone: {described}"
    );
    // The stages say what is true: no version is ACSPrevious any more.
    assert_refused(
        &t.run(&["secret", "get", "ram/web", "--stage", "ACSPrevious"]),
        3,
        "",
        None,
    );
    let versions = t.json(&["secret", "versions", "ram/web"]).to_string();
    assert!(!versions.contains("ACSPrevious"), "{versions}");
    let out = t.run(&["secret", "rollback", "ram/web"]);
    assert!(!out.status.success(), "{}", text(&out));
    // The next attempt rotates: the old current becomes ACSPrevious.
    emulator.allow("CreateAccessKey").await;
    t.ok(&["rotate", "ram/web"]);
    assert_eq!(pair(&t, "ram/web", "ACSPrevious"), current);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_create_access_key_whose_answer_is_lost_leaves_no_key_behind() {
    let (t, emulator) = rig("api", Backend::Postgres).await;
    t.ok(&["rotate", "ram/api"]);
    let current = pair(&t, "ram/api", "ACSCurrent");
    // The cloud makes the key, and the answer is lost: the attempt deletes what it made.
    emulator.lose_create(1).await;
    let out = t.run(&["rotate", "ram/api"]);
    assert_eq!(out.status.code(), Some(6), "{}", text(&out));
    assert_eq!(
        keys_of(&emulator, "api").await,
        vec![current.0.clone()],
        "no key that no version holds"
    );
    // The next attempt rotates, within the two-key limit.
    t.ok(&["rotate", "ram/api"]);
    let mut expected = vec![pair(&t, "ram/api", "ACSCurrent").0, current.0.clone()];
    expected.sort();
    assert_eq!(keys_of(&emulator, "api").await, expected);
}

/// Found by the chaos soak (seed 1130): an attempt cut off while the cloud made its key left
/// the job's create mark; the next attempt, throttled before it listed the user's keys,
/// returned — and cleared that mark as if it were its own, so every later attempt took the
/// cut-off attempt's key for one made by hand and the secret failed until someone deleted it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_an_attempt_cut_off_made_is_deleted_even_after_a_throttled_attempt() {
    let (t, emulator) = rig("cut", Backend::Sqlite).await;
    let current = pair(&t, "ram/cut", "ACSCurrent");
    // The cloud makes the key and answers late: the attempt's step timeout cuts it off.
    emulator.slow_create(3000).await;
    let out = t.run(&["rotate", "ram/cut", "--step-timeout", "1s"]);
    assert_eq!(out.status.code(), Some(6), "{}", text(&out));
    emulator.slow_create(0).await;
    assert_eq!(
        keys_of(&emulator, "cut").await.len(),
        2,
        "the cut-off attempt's key exists"
    );
    // The next attempt is throttled before it looks at the user's keys...
    emulator.throttle(1000).await;
    let out = t.run(&["rotate", "ram/cut"]);
    assert_eq!(out.status.code(), Some(6), "{}", text(&out));
    emulator.throttle(0).await;
    // ...and the one after still takes that key for the cut-off attempt's: deleted, rotated.
    let out = t.run(&["rotate", "ram/cut"]);
    assert!(out.status.success(), "{}", text(&out));
    let mut expected = vec![pair(&t, "ram/cut", "ACSCurrent").0, current.0.clone()];
    expected.sort();
    assert_eq!(keys_of(&emulator, "cut").await, expected);
}

/// Found by the chaos soak (seed 1130, second hour): the cloud made the key and the answer to
/// CreateAccessKey was lost; the attempt's clean-up could not list the user's keys (the network
/// still down) and the attempt returned — its create mark was cleared, and every later attempt
/// took the key for one made by hand and the secret failed until someone deleted it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_a_failed_create_could_not_clean_up_is_deleted_by_the_next_attempt() {
    let (t, emulator) = rig("lost", Backend::Sqlite).await;
    let current = pair(&t, "ram/lost", "ACSCurrent");
    emulator.lose_create_then_outage().await;
    let out = t.run(&["rotate", "ram/lost"]);
    assert_eq!(out.status.code(), Some(6), "{}", text(&out));
    assert!(
        text(&out).contains("the next attempt deletes it"),
        "{}",
        text(&out)
    );
    emulator.end_outage().await;
    assert_eq!(
        keys_of(&emulator, "lost").await.len(),
        2,
        "the key the failed attempt made exists"
    );
    let out = t.run(&["rotate", "ram/lost"]);
    assert!(out.status.success(), "{}", text(&out));
    let mut expected = vec![pair(&t, "ram/lost", "ACSCurrent").0, current.0.clone()];
    expected.sort();
    assert_eq!(keys_of(&emulator, "lost").await, expected);
}

/// A RAM user's AccessKeys are one secret's: a second secret for the user is refused, and the
/// key the cloud made for it (create mode) is deleted again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_secret_for_a_ram_user_is_refused_and_its_key_deleted() {
    let (t, emulator) = rig("twice", Backend::Sqlite).await;
    let current = pair(&t, "ram/twice", "ACSCurrent");
    let out = t.run(&[
        "secret",
        "create",
        "ram/again",
        "--type",
        "RAMCredentials",
        "--target",
        "cloud",
        "--ram-user",
        "twice",
    ]);
    assert_refused(&out, 4, "is rotated by secret 'ram/twice' already", None);
    assert_eq!(keys_of(&emulator, "twice").await, vec![current.0]);
    assert_refused(&t.run(&["secret", "describe", "ram/again"]), 3, "", None);
}
