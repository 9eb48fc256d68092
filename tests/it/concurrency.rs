//! Concurrent writers: two processes putting versions of one secret at once leave a consistent
//! history — every put lands, exactly one ACSCurrent and one ACSPrevious, pruning intact.

use std::collections::HashSet;

use rotor::model::{SecretName, Stage};
use rotor::store::{OpenMode, Selector, Store};

use crate::both_backends;
use crate::support::TestEnv;

const PUTS_PER_PROCESS: usize = 100;

both_backends!(two_processes_put_at_once, |t: TestEnv| async move {
    t.ok(&["init"]);
    t.ok(&[
        "secret", "create", "shared", "--type", "Generic", "--value", "initial",
    ]);
    let t = std::sync::Arc::new(t);
    let writers: Vec<_> = (0..2)
        .map(|p| {
            let t = t.clone();
            std::thread::spawn(move || {
                for i in 0..PUTS_PER_PROCESS {
                    let out = t.run(&[
                        "--json",
                        "secret",
                        "put",
                        "shared",
                        "--value",
                        &format!("p{p}-{i}"),
                    ]);
                    assert!(
                        out.status.success(),
                        "put failed: {}",
                        String::from_utf8_lossy(&out.stderr)
                    );
                }
            })
        })
        .collect();
    for w in writers {
        w.join().expect("writer finished");
    }

    let store = Store::open(&t.config(), OpenMode::Existing).await.unwrap();
    let name = SecretName::parse("shared").unwrap();
    let versions = store.versions(&name).await.unwrap();
    let with = |stage: Stage| {
        versions
            .iter()
            .filter(|v| v.version_stages.contains(&stage))
            .count()
    };
    assert_eq!(with(Stage::Current), 1);
    assert_eq!(with(Stage::Previous), 1);
    assert_eq!(
        versions
            .iter()
            .filter(|v| v.version_stages.is_empty())
            .count(),
        10
    );
    assert_eq!(versions.len(), 12);
    let ids: HashSet<_> = versions.iter().map(|v| v.version_id.to_string()).collect();
    assert_eq!(ids.len(), 12, "version ids are unique");
    // 201 versions were created, one after the other: the newest is current, the one before it
    // previous, and the ten before those are kept.
    let expected: Vec<String> = (190..=201).rev().map(|n| format!("v{n}")).collect();
    let got: Vec<String> = versions.iter().map(|v| v.version_id.to_string()).collect();
    assert_eq!(got, expected);
    assert_eq!(versions[0].version_stages, vec![Stage::Current]);
    assert_eq!(versions[1].version_stages, vec![Stage::Previous]);
    let current = store.get_value(&name, &Selector::default()).await.unwrap();
    let text = current.value.as_text().unwrap().to_owned();
    assert!(
        text == "p0-99" || text == "p1-99",
        "the last put of one writer is current, got {text}"
    );
    for v in &versions {
        store
            .get_value(&name, &Selector::Version(v.version_id.clone()))
            .await
            .expect("every kept version decrypts");
    }
});
