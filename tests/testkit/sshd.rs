//! Test fixtures for the SSH family, shared by the integration tests and the `ssh` benchmark:
//! a throwaway OpenSSH `sshd` on a loopback port with its own host key and config, throwaway
//! Linux users (plain, sudo with or without a password, a second name for uid 0), key pairs
//! from `ssh-keygen`, and logins with the OpenSSH client (`ssh`, `sshpass` for passwords).
#![allow(dead_code)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

const SSHD: &str = "/usr/sbin/sshd";

/// useradd and userdel lock /etc/passwd: one at a time within this process.
static ACCOUNTS: Mutex<()> = Mutex::new(());

fn require_root() {
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "the SSH tests create Linux users and start sshd: run them as root (tests/run)"
    );
    assert!(
        Path::new(SSHD).exists(),
        "OpenSSH sshd ({SSHD}) is missing: install openssh-server (tests/run does)"
    );
    std::fs::create_dir_all("/run/sshd").expect("sshd's privilege separation directory");
}

pub fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

pub fn random_word(len: usize) -> String {
    let id = rotor::crypto::random_id();
    id.chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .take(len)
        .collect::<String>()
        .to_lowercase()
}

/// A throwaway OpenSSH server.
pub struct Sshd {
    pub port: u16,
    pub dir: tempfile::TempDir,
    child: Option<std::process::Child>,
    /// Lines appended to its sshd_config.
    extra: String,
}

impl Sshd {
    pub fn start() -> Sshd {
        Sshd::start_with("")
    }

    /// A throwaway sshd with `extra` lines in its configuration (e.g. `SetEnv PATH=…`).
    pub fn start_with(extra: &str) -> Sshd {
        require_root();
        let dir = tempfile::tempdir().expect("sshd directory");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut sshd = Sshd {
            port,
            dir,
            child: None,
            extra: extra.to_owned(),
        };
        sshd.new_host_key();
        sshd.resume();
        sshd
    }

    /// Makes a new host key (the host is "re-keyed"); takes effect at the next start.
    pub fn new_host_key(&mut self) {
        let key = self.dir.path().join("host_key");
        let _ = std::fs::remove_file(&key);
        let _ = std::fs::remove_file(key.with_extension("pub"));
        let out = run(Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(&key));
        assert!(out.status.success(), "ssh-keygen: {out:?}");
    }

    pub fn host_key(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("host_key.pub"))
            .unwrap()
            .trim()
            .to_owned()
    }

    pub fn fingerprint(&self) -> String {
        let out = run(Command::new("ssh-keygen")
            .arg("-lf")
            .arg(self.dir.path().join("host_key.pub")));
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .nth(1)
            .unwrap()
            .to_owned()
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("sshd.log")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Starts sshd (again) on its port.
    pub fn resume(&mut self) {
        let config = format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {dir}/host_key\nPidFile {dir}/sshd.pid\n\
             AuthorizedKeysFile .ssh/authorized_keys\nPasswordAuthentication yes\n\
             KbdInteractiveAuthentication no\nPubkeyAuthentication yes\nPermitRootLogin yes\n\
             UsePAM no\nStrictModes yes\nLogLevel DEBUG3\nMaxStartups 100:30:200\nMaxAuthTries 6\n\
             AllowUsers rt*\n{extra}",
            port = self.port,
            dir = self.dir.path().display(),
            extra = self.extra
        );
        let path = write_file(self.dir.path(), "sshd_config", config.as_bytes());
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .unwrap();
        let child = Command::new(SSHD)
            .args(["-D", "-e", "-f"])
            .arg(&path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("sshd starts");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "sshd did not listen on port {}: {}",
                self.port,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops sshd (its listener and every session).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // Its sessions first (children of the listener), then the listener.
            let _ = run(Command::new("pkill").args(["-KILL", "-P", &child.id().to_string()]));
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn url(&self) -> String {
        format!("ssh://127.0.0.1:{}", self.port)
    }

    fn known_hosts(&self) -> PathBuf {
        let line = format!("[127.0.0.1]:{} {}\n", self.port, self.host_key());
        write_file(self.dir.path(), "known_hosts", line.as_bytes())
    }

    fn ssh(&self) -> Command {
        let mut cmd = Command::new("ssh");
        cmd.args(["-p", &self.port.to_string()])
            .arg("-o")
            .arg(format!(
                "UserKnownHostsFile={}",
                self.known_hosts().display()
            ))
            .args([
                "-o",
                "StrictHostKeyChecking=yes",
                "-o",
                "ConnectTimeout=10",
                "-o",
                "LogLevel=ERROR",
                "-F",
                "/dev/null",
            ]);
        cmd
    }

    /// Logs in with OpenSSH's client and a password (through sshpass); returns `id -un`.
    pub fn login_password(&self, user: &str, password: &str) -> Result<String, String> {
        let out = run(Command::new("sshpass")
            .arg("-e")
            .env("SSHPASS", password)
            .arg("ssh")
            .args(self.ssh().get_args())
            .args([
                "-o",
                "PubkeyAuthentication=no",
                "-o",
                "PreferredAuthentications=password",
                "-o",
                "NumberOfPasswordPrompts=1",
            ])
            .arg(format!("{user}@127.0.0.1"))
            .arg("id -un"));
        answer(out)
    }

    /// Logs in with OpenSSH's client and a private key; returns `id -un`.
    pub fn login_key(&self, user: &str, private_key: &str) -> Result<String, String> {
        let file = self.dir.path().join(format!("id_{}", random_word(8)));
        std::fs::write(&file, format!("{}\n", private_key.trim_end())).unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
        let out = run(self
            .ssh()
            .args([
                "-o",
                "BatchMode=yes",
                "-o",
                "IdentitiesOnly=yes",
                "-o",
                "PasswordAuthentication=no",
                "-i",
            ])
            .arg(&file)
            .arg(format!("{user}@127.0.0.1"))
            .arg("id -un"));
        let _ = std::fs::remove_file(&file);
        answer(out)
    }
}

fn answer(out: Output) -> Result<String, String> {
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_owned())
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        self.stop();
    }
}

/// What a test user may do as root.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Sudo {
    No,
    WithPassword,
    WithoutPassword,
    /// A second name for uid 0 (root itself, with its own home and keys).
    IsRoot,
}

/// A Linux user made for one test, removed with its home afterwards.
pub struct HostUser {
    pub name: String,
    pub password: String,
    sudo: Sudo,
}

impl HostUser {
    pub fn new(sudo: Sudo) -> HostUser {
        require_root();
        let name = format!("rt{}", random_word(10));
        let password = format!("Aa1-{}", random_word(20));
        let _lock = ACCOUNTS.lock().unwrap_or_else(|e| e.into_inner());
        let mut useradd = Command::new("useradd");
        useradd.args(["-m", "-s", "/bin/sh"]);
        if sudo == Sudo::IsRoot {
            useradd.args(["-o", "-u", "0", "-g", "0"]);
        }
        let out = run(useradd.arg(&name));
        assert!(out.status.success(), "useradd {name}: {out:?}");
        set_password(&name, &password);
        let rule = match sudo {
            Sudo::WithPassword => Some(format!("{name} ALL=(ALL) ALL\n")),
            Sudo::WithoutPassword => Some(format!("{name} ALL=(ALL) NOPASSWD: ALL\n")),
            _ => None,
        };
        if let Some(rule) = rule {
            let path = format!("/etc/sudoers.d/{name}");
            std::fs::write(&path, rule).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o440)).unwrap();
        }
        HostUser {
            name,
            password,
            sudo,
        }
    }

    pub fn home(&self) -> PathBuf {
        PathBuf::from(format!("/home/{}", self.name))
    }

    pub fn authorized_keys(&self) -> PathBuf {
        self.home().join(".ssh/authorized_keys")
    }

    /// Writes the user's authorized_keys as the user would (owner, 0700 / 0600).
    pub fn write_authorized_keys(&self, content: &str) {
        let dir = self.home().join(".ssh");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(self.authorized_keys(), content).unwrap();
        let _ = run(Command::new("chown")
            .arg("-R")
            .arg(format!("{}:", self.name))
            .arg(&dir));
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
        std::fs::set_permissions(
            self.authorized_keys(),
            std::fs::Permissions::from_mode(0o600),
        )
        .unwrap();
    }
}

pub fn set_password(user: &str, password: &str) {
    let mut child = Command::new("chpasswd")
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{user}:{password}\n").as_bytes())
        .unwrap();
    assert!(child.wait().unwrap().success(), "chpasswd {user}");
}

impl Drop for HostUser {
    fn drop(&mut self) {
        let _lock = ACCOUNTS.lock().unwrap_or_else(|e| e.into_inner());
        let _ = std::fs::remove_file(format!("/etc/sudoers.d/{}", self.name));
        if self.sudo != Sudo::IsRoot {
            let _ = run(Command::new("pkill").args(["-KILL", "-u", &self.name]));
        }
        let _ = run(Command::new("userdel").args(["-f", "-r", &self.name]));
    }
}

/// A key pair made with OpenSSH's ssh-keygen: (public line, private key text).
pub fn keygen(dir: &Path, args: &[&str]) -> (String, String) {
    let path = dir.join(format!("key_{}", random_word(8)));
    let out = run(Command::new("ssh-keygen")
        .args(["-q", "-N", "", "-C", "made-by-ssh-keygen", "-f"])
        .arg(&path)
        .args(args));
    assert!(out.status.success(), "ssh-keygen: {out:?}");
    let public = std::fs::read_to_string(path.with_extension("pub")).unwrap();
    let private = std::fs::read_to_string(&path).unwrap();
    (public.trim().to_owned(), private)
}

fn write_file(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).expect("write file");
    path
}
