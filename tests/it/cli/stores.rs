//! Stores that cannot open say why at once; rotor's files must be trusted (StrictModes).

use super::*;

#[tokio::test]
async fn stores_that_cannot_open_say_why_at_once() {
    // A corrupt SQLite file: SQLite's own reason, one line.
    let t = TestEnv::new(crate::support::Backend::Sqlite).await;
    t.ok(&["init"]);
    // (Without its WAL, which may still hold the first page and so hide the damage.)
    for side in ["rotor.db-wal", "rotor.db-shm"] {
        let _ = std::fs::remove_file(t.data_dir().join(side));
    }
    std::fs::write(t.data_dir().join("rotor.db"), vec![0x5a; 8192]).unwrap();
    let out = t.run(&["secret", "list"]);
    assert_refused(&out, 1, "file is not a database", None);
    // An unreachable PostgreSQL store: its host and the cause.
    let out = t
        .rotor()
        .args([
            "--store",
            "postgres://rotor:Hunter2-Store@127.0.0.1:1/rotor",
            "--store-connect-timeout",
            "2s",
            "secret",
            "list",
        ])
        .output()
        .unwrap();
    assert_refused(
        &out,
        1,
        "the PostgreSQL store at 127.0.0.1:1",
        Some("Hunter2-Store"),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.to_lowercase().contains("refused"), "{stderr}");
}

/// StrictModes for rotor's files (these cases give files to `nobody`: CI runs as root).
mod trusted_files {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    use std::path::Path;

    use super::*;

    fn chmod(path: &Path, mode: u32) {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    fn give_to_nobody(path: &Path) {
        let ok = std::process::Command::new("chown")
            .args(["nobody", path.to_str().unwrap()])
            .status()
            .unwrap()
            .success();
        assert!(
            ok,
            "chown nobody {} failed: this test needs root to give files to another user",
            path.display()
        );
    }

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().mode() & 0o777
    }

    #[tokio::test]
    async fn init_makes_private_files_and_refuses_a_prepared_directory() {
        let t = TestEnv::new(crate::support::Backend::Sqlite).await;
        let dir = t.data_dir();
        t.ok(&["init"]);
        t.ok(&["secret", "create", "s", "--type", "Generic", "--value", "v"]);
        assert_eq!(mode(&dir), 0o700);
        for file in ["master.key", "rotor.db"] {
            assert_eq!(mode(&dir.join(file)), 0o600, "{file}");
        }

        // An attacker's directory: world-writable, someone else's, with their key and store.
        let evil = t.data_dir().with_file_name("evil");
        std::fs::create_dir(&evil).unwrap();
        std::fs::copy(dir.join("master.key"), evil.join("master.key")).unwrap();
        std::fs::write(evil.join("rotor.db"), b"").unwrap();
        chmod(&evil.join("rotor.db"), 0o666);
        for f in ["master.key", "rotor.db"] {
            give_to_nobody(&evil.join(f));
        }
        give_to_nobody(&evil);
        chmod(&evil, 0o777);
        let out = t
            .rotor()
            .args(["--data-dir", evil.to_str().unwrap(), "init"])
            .output()
            .unwrap();
        assert_refused(
            &out,
            1,
            &format!("data directory {} belongs to uid 65534", evil.display()),
            None,
        );
        assert_eq!(mode(&evil), 0o777, "nothing repaired");
        assert_eq!(
            std::fs::metadata(evil.join("rotor.db")).unwrap().len(),
            0,
            "nothing written"
        );

        // Ours but writable by others.
        let open = t.data_dir().with_file_name("open");
        std::fs::create_dir(&open).unwrap();
        chmod(&open, 0o777);
        let out = t
            .rotor()
            .args(["--data-dir", open.to_str().unwrap(), "init"])
            .output()
            .unwrap();
        assert_refused(
            &out,
            1,
            "is writable by others (mode 0777); run: chmod 700",
            None,
        );
        assert!(!open.join("master.key").exists());
    }

    #[tokio::test]
    async fn key_store_and_lock_files_others_could_use_are_refused() {
        let t = TestEnv::new(crate::support::Backend::Sqlite).await;
        let dir = t.data_dir();
        t.ok(&["init"]);
        let list = || t.run(&["secret", "list"]);

        // A store file others can read.
        chmod(&dir.join("rotor.db"), 0o644);
        assert_refused(&list(), 1, "store file", None);
        assert_refused(
            &list(),
            1,
            "readable by others (mode 0644); run: chmod 600",
            None,
        );
        chmod(&dir.join("rotor.db"), 0o600);
        t.ok(&["secret", "list"]);

        // A key file someone else owns.
        give_to_nobody(&dir.join("master.key"));
        assert_refused(&list(), 1, "master key file", None);
        assert_refused(&list(), 1, "belongs to uid 65534", None);
        std::process::Command::new("chown")
            .args(["root", dir.join("master.key").to_str().unwrap()])
            .status()
            .unwrap();
        t.ok(&["secret", "list"]);

        // A symlinked key file whose target sits in a directory anyone may write.
        let shared = dir.with_file_name("shared");
        std::fs::create_dir(&shared).unwrap();
        chmod(&shared, 0o777);
        std::fs::rename(dir.join("master.key"), shared.join("master.key")).unwrap();
        std::os::unix::fs::symlink(shared.join("master.key"), dir.join("master.key")).unwrap();
        assert_refused(
            &list(),
            1,
            &format!("reached through {}", shared.display()),
            None,
        );
        chmod(&shared, 0o700);
        t.ok(&["secret", "list"]);

        // A worker lock others may write.
        std::fs::write(dir.join("worker.lock"), b"").unwrap();
        chmod(&dir.join("worker.lock"), 0o666);
        let out = t.run(&["worker"]);
        assert_refused(&out, 1, "worker lock file", None);
        assert_eq!(mode(&dir.join("worker.lock")), 0o666, "nothing repaired");
    }
}
