//! `rotor agent` against a real `rotor worker --api-listen` (its KMS-compatible API over HTTPS,
//! the installation CA pinned): templates rendered to files, `--once`, an API that goes away,
//! the cache endpoint, and application stand-ins (`psql`, `redis-cli` in a shell loop) that log
//! in every 100 ms while the worker rotates dual-account secrets — through the rendered file and
//! through `agent exec`.

mod files;
mod hostile;
mod repair;
mod rotations;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::api::{access_key, free_port};
use crate::support::TestEnv;

/// A worker serving the API on a free port, and what an agent needs to reach it.
pub(crate) struct Rig {
    pub worker: Option<Child>,
    pub addr: String,
    pub ca: PathBuf,
    pub key_id: String,
    pub key_file: PathBuf,
    /// Where the agent's files go.
    pub out: PathBuf,
}

impl Rig {
    /// Starts `rotor worker --api-listen` on `t`'s store (initialised) and makes an AccessKey
    /// allowed `allow`.
    pub fn start(t: &TestEnv, allow: &[&str]) -> Rig {
        t.ok(&["init"]);
        let (key_id, key_secret) = access_key(t, "agent", allow);
        let ca = t.dir.path().join("ca.pem");
        std::fs::write(&ca, t.ok(&["ca"])).unwrap();
        let key_file = t.dir.path().join("agent.key");
        private_file(&key_file, &key_secret);
        let out = t.dir.path().join("out");
        std::fs::create_dir(&out).unwrap();
        let mut rig = Rig {
            worker: None,
            addr: format!("127.0.0.1:{}", free_port()),
            ca,
            key_id,
            key_file,
            out,
        };
        rig.start_worker(t);
        rig
    }

    /// (Re)starts the worker on the rig's address.
    pub fn start_worker(&mut self, t: &TestEnv) {
        let worker = t
            .rotor()
            .args(["worker", "--poll", "100ms", "--api-listen", &self.addr])
            .env("ROTOR_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        wait_listening(&self.addr, "the worker's API");
        self.worker = Some(worker);
    }

    /// Stops the worker (SIGTERM; it exits 0): the API goes away.
    pub fn stop_worker(&mut self) {
        if let Some(mut worker) = self.worker.take() {
            signal(&worker, libc::SIGTERM);
            assert!(worker.wait().unwrap().success(), "the worker exits 0");
        }
    }

    pub fn endpoint(&self) -> String {
        format!("https://{}", self.addr)
    }

    /// An agent configuration with `[agent]` pointing here (poll `poll`) and `more` after it.
    pub fn config(&self, t: &TestEnv, poll: &str, more: &str) -> PathBuf {
        let path = t
            .dir
            .path()
            .join(format!("agent-{}.toml", &rotor::crypto::random_id()[..6]));
        let text = format!(
            "[agent]\nendpoint = \"{}\"\nca_file = \"{}\"\naccess_key_id = \"{}\"\naccess_key_secret_file = \"{}\"\npoll = \"{poll}\"\n\n{more}",
            self.endpoint(),
            self.ca.display(),
            self.key_id,
            self.key_file.display()
        );
        std::fs::write(&path, text).unwrap();
        path
    }

    /// An agent (poll 300 ms) serving its cache endpoint on a free loopback port, with a
    /// fresh token in a private file and `more` after `listen` and `token_file` in `[cache]`;
    /// returned once it listens, with the address and the token.
    pub fn cache_agent(&self, t: &TestEnv, more: &str) -> (Running, String, String) {
        let token_file = t.dir.path().join("cache.token");
        let token = rotor::crypto::random_id();
        private_file(&token_file, &token);
        let listen = format!("127.0.0.1:{}", free_port());
        let config = self.config(
            t,
            "300ms",
            &format!(
                "[cache]\nlisten = \"{listen}\"\ntoken_file = \"{}\"\n{more}",
                token_file.display()
            ),
        );
        let agent = self.agent(t, &["--config", config.to_str().unwrap()]);
        wait_listening(&listen, "the cache endpoint");
        (agent, listen, token)
    }

    /// `rotor agent` (or `agent exec …`) with `args`, its stderr collected.
    pub fn agent(&self, t: &TestEnv, args: &[&str]) -> Running {
        let mut cmd = t.rotor();
        cmd.arg("agent").args(args).env("ROTOR_LOG", "debug");
        Running::spawn(cmd)
    }

    /// `rotor agent exec` with the connection in `ROTOR_AGENT_…` variables, and `env` for the
    /// program.
    pub fn exec_with(
        &self,
        t: &TestEnv,
        poll: &str,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Running {
        let mut cmd = t.rotor();
        cmd.envs(env.iter().copied());
        cmd.args(["agent", "exec"])
            .args(args)
            .env("ROTOR_LOG", "debug")
            .env("ROTOR_AGENT_ENDPOINT", self.endpoint())
            .env("ROTOR_AGENT_CA_FILE", &self.ca)
            .env("ROTOR_AGENT_ACCESS_KEY_ID", &self.key_id)
            .env("ROTOR_AGENT_ACCESS_KEY_SECRET_FILE", &self.key_file)
            .env("ROTOR_AGENT_POLL", poll);
        Running::spawn(cmd)
    }

    pub fn stop(mut self) {
        self.stop_worker();
    }
}

/// A process whose stdout lines and stderr are collected as they come.
pub(crate) struct Running {
    pub child: Child,
    pub stdout: Arc<Mutex<Vec<String>>>,
    pub stderr: Arc<Mutex<String>>,
}

impl Running {
    pub fn spawn(mut cmd: Command) -> Running {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let stderr = Arc::new(Mutex::new(String::new()));
        let (out, err) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
        let lines = stdout.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                lines.lock().unwrap().push(line);
            }
        });
        let text = stderr.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                let mut t = text.lock().unwrap();
                t.push_str(&line);
                t.push('\n');
            }
        });
        Running {
            child,
            stdout,
            stderr,
        }
    }

    pub fn lines(&self) -> Vec<String> {
        self.stdout.lock().unwrap().clone()
    }

    pub fn log(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// SIGTERM, then the exit code.
    pub fn stop(mut self) -> (Option<i32>, String) {
        signal(&self.child, libc::SIGTERM);
        let status = self.child.wait().unwrap();
        std::thread::sleep(Duration::from_millis(100));
        (status.code(), self.log())
    }
}

pub(crate) fn signal(child: &Child, sig: i32) {
    // SAFETY: kill has no memory effects.
    unsafe { libc::kill(child.id() as i32, sig) };
}

pub(crate) fn private_file(path: &Path, text: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

pub(crate) fn wait_listening(addr: &str, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(addr).is_err() {
        assert!(Instant::now() < deadline, "{what} never listened on {addr}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits up to `limit` for `check`; the time it took.
pub(crate) fn wait_for(limit: Duration, what: &str, mut check: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    loop {
        if check() {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < limit,
            "{what} did not happen within {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// The `ACSCurrent` version of `secret`.
pub(crate) fn current_version(t: &TestEnv, secret: &str) -> String {
    t.json(&["secret", "get", secret])["VersionId"]
        .as_str()
        .unwrap()
        .to_owned()
}
