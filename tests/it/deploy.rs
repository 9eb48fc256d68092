//! The deployment files, read against each other and against what the README and the tests
//! use: Docker does not run here, so `docker-compose.yml` and the `Dockerfile` are parsed, and
//! the systemd unit is checked with `systemd-analyze verify` where the machine has it.

use std::path::Path;

use serde_yaml::Value;

fn read(path: &str) -> String {
    let full = Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("{}: {e}", full.display()))
}

/// The Dockerfile's final stage, instruction by instruction (continuations joined).
fn final_stage(dockerfile: &str) -> Vec<(String, String)> {
    let joined = dockerfile.replace("\\\n", " ");
    let instructions: Vec<(String, String)> = joined
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_once(' '))
        .map(|(k, v)| (k.to_uppercase(), v.trim().to_owned()))
        .collect();
    let last_from = instructions
        .iter()
        .rposition(|(k, _)| k == "FROM")
        .expect("a FROM");
    instructions[last_from..].to_vec()
}

fn instruction<'a>(stage: &'a [(String, String)], name: &str) -> Vec<&'a str> {
    stage
        .iter()
        .filter(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .collect()
}

#[test]
fn the_image_runs_rotor_unprivileged_with_a_data_volume_and_a_health_check() {
    let stage = final_stage(&read("Dockerfile"));
    assert!(
        instruction(&stage, "FROM")[0].contains("slim"),
        "a slim runtime"
    );
    let user = instruction(&stage, "USER");
    assert_eq!(user, ["rotor"], "not root");
    let env = instruction(&stage, "ENV").join(" ");
    assert!(env.contains("ROTOR_DATA_DIR=/var/lib/rotor/data"), "{env}");
    assert_eq!(
        instruction(&stage, "VOLUME"),
        [r#"["/var/lib/rotor/data"]"#]
    );
    assert_eq!(instruction(&stage, "EXPOSE"), ["9464"]);
    let health = instruction(&stage, "HEALTHCHECK").join(" ");
    assert!(health.contains("http://127.0.0.1:9464/healthz"), "{health}");
    let cmd = instruction(&stage, "CMD").join(" ");
    assert!(
        cmd.contains(r#""--metrics-listen", "0.0.0.0:9464""#),
        "{cmd}"
    );
    let run = instruction(&stage, "RUN").join(" ");
    assert!(
        run.contains("-m 0700 /var/lib/rotor/data"),
        "the data directory is 0700: {run}"
    );
}

#[test]
fn the_compose_rig_matches_the_image_the_readme_and_the_tests() {
    let compose: Value = serde_yaml::from_str(&read("docker-compose.yml")).expect("compose parses");
    let services = compose["services"].as_mapping().expect("services");
    let names: Vec<&str> = services.keys().filter_map(Value::as_str).collect();
    for wanted in ["postgres", "mysql", "redis", "ssh-host", "rotor", "setup"] {
        assert!(names.contains(&wanted), "service {wanted} in {names:?}");
    }
    // Every published port is on loopback only.
    for (name, service) in services {
        for port in service["ports"].as_sequence().into_iter().flatten() {
            let port = port.as_str().unwrap();
            assert!(port.starts_with("127.0.0.1:"), "{name:?} publishes {port}");
        }
    }
    // The ports tests/run expects of a compose fallback.
    let run = read("tests/run");
    for (service, port) in [("postgres", 5432), ("mysql", 3306), ("redis", 6379)] {
        let published = format!("127.0.0.1:{port}:{port}");
        assert_eq!(
            services[service]["ports"][0].as_str(),
            Some(published.as_str()),
            "{service}"
        );
        assert!(
            run.contains(&format!("up -d --wait {service}")),
            "tests/run starts {service}"
        );
    }
    let rotor = &services["rotor"];
    assert_eq!(rotor["build"]["dockerfile"].as_str(), Some("Dockerfile"));
    assert_eq!(
        rotor["volumes"][0].as_str(),
        Some("rotor-data:/var/lib/rotor/data")
    );
    assert_eq!(rotor["ports"][0].as_str(), Some("127.0.0.1:9464:9464"));
    assert!(rotor["environment"]["ROTOR_STORE"]
        .as_str()
        .unwrap()
        .starts_with("postgres://"));
    let setup = &services["setup"];
    assert_eq!(
        setup["volumes"], rotor["volumes"],
        "setup shares the master key"
    );
    assert_eq!(
        setup["environment"]["ROTOR_STORE"],
        rotor["environment"]["ROTOR_STORE"]
    );
    let script = setup["command"][0].as_str().unwrap();
    for kind in ["postgres", "mysql", "redis", "ssh"] {
        assert!(
            script.contains(&format!("--kind {kind}")),
            "setup adds a {kind} target"
        );
    }
    let readme = read("README.md");
    for text in [
        "docker compose run --rm setup",
        "127.0.0.1:9464",
        "contrib/rotor.service",
    ] {
        assert!(readme.contains(text), "README mentions {text}");
    }
}

#[test]
fn the_systemd_unit_is_hardened_and_verifies() {
    let unit = read("contrib/rotor.service");
    for line in [
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ReadWritePaths=/var/lib/rotor",
        "DynamicUser=yes",
        "StateDirectoryMode=0700",
        "Environment=ROTOR_DATA_DIR=/var/lib/rotor",
        "KillSignal=SIGTERM",
    ] {
        assert!(unit.lines().any(|l| l == line), "{line}");
    }
    let Ok(analyze) = which("systemd-analyze") else {
        return; // "where available": the unit's contents are checked above.
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rotor.service");
    std::fs::write(
        &path,
        unit.replace("/usr/local/bin/rotor", env!("CARGO_BIN_EXE_rotor")),
    )
    .unwrap();
    let out = std::process::Command::new(analyze)
        .arg("verify")
        .arg(&path)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && said.trim().is_empty(),
        "systemd-analyze verify: {said}"
    );
}

fn which(program: &str) -> Result<std::path::PathBuf, ()> {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join(program))
        .find(|p| p.exists())
        .ok_or(())
}
