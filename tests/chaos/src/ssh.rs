//! A throwaway OpenSSH server and Linux users for the SSH (ECS) secrets, as tests/testkit's
//! sshd.rs makes them (root only: useradd, chpasswd, sshd).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use tokio::process::{Child, Command};

use crate::services::{free_port, wait_port};

pub struct Sshd {
    pub port: u16,
    pub dir: PathBuf,
    child: Option<Child>,
}

async fn run(cmd: &mut Command, what: &str) -> Result<String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .await
        .with_context(|| what.to_owned())?;
    if !out.status.success() {
        bail!("{what}: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

impl Sshd {
    pub async fn start(dir: PathBuf) -> Result<Sshd> {
        if unsafe { libc::geteuid() } != 0 || !Path::new("/usr/sbin/sshd").exists() {
            bail!("the SSH secrets need root and OpenSSH's sshd (/usr/sbin/sshd)");
        }
        std::fs::create_dir_all(&dir)?;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755))?;
        std::fs::create_dir_all("/run/sshd")?;
        run(
            Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", "", "-f"])
                .arg(dir.join("host_key")),
            "ssh-keygen (host key)",
        )
        .await?;
        let mut sshd = Sshd {
            port: free_port(),
            dir,
            child: None,
        };
        sshd.resume().await?;
        Ok(sshd)
    }

    pub fn host_key(&self) -> String {
        std::fs::read_to_string(self.dir.join("host_key.pub"))
            .unwrap_or_default()
            .trim()
            .to_owned()
    }

    pub async fn resume(&mut self) -> Result<()> {
        let config = format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {dir}/host_key\nPidFile {dir}/sshd.pid\n\
             AuthorizedKeysFile .ssh/authorized_keys\nPasswordAuthentication yes\n\
             KbdInteractiveAuthentication no\nPubkeyAuthentication yes\nPermitRootLogin no\n\
             UsePAM no\nStrictModes yes\nLogLevel INFO\nMaxStartups 100:30:200\nMaxAuthTries 6\n\
             AllowUsers rtc*\n",
            port = self.port,
            dir = self.dir.display(),
        );
        let path = self.dir.join("sshd_config");
        std::fs::write(&path, config)?;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("sshd.log"))?;
        let child = Command::new("/usr/sbin/sshd")
            .args(["-D", "-e", "-f"])
            .arg(&path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .context("sshd starts")?;
        self.child = Some(child);
        wait_port(self.port, "sshd", Duration::from_secs(20)).await
    }

    /// Stops sshd and every session it started.
    pub async fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            if let Some(pid) = child.id() {
                let _ = Command::new("pkill")
                    .args(["-KILL", "-P", &pid.to_string()])
                    .status()
                    .await;
            }
            let _ = child.kill().await;
            let _ = child.wait().await;
        }
    }
}

/// A Linux user for one secret; removed by [`remove_user`].
pub async fn add_user(name: &str, password: &str) -> Result<()> {
    run(
        Command::new("useradd").args(["-m", "-s", "/bin/sh", name]),
        "useradd",
    )
    .await?;
    let mut child = Command::new("chpasswd")
        .stdin(Stdio::piped())
        .spawn()
        .context("chpasswd")?;
    use tokio::io::AsyncWriteExt;
    let mut stdin = child.stdin.take().expect("piped");
    stdin
        .write_all(format!("{name}:{password}\n").as_bytes())
        .await?;
    drop(stdin);
    if !child.wait().await?.success() {
        bail!("chpasswd {name}");
    }
    Ok(())
}

/// Writes `name`'s authorized_keys as the user would (owner, 0700 / 0600).
pub async fn authorize(name: &str, public: &str) -> Result<()> {
    let dir = PathBuf::from(format!("/home/{name}/.ssh"));
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join("authorized_keys"), format!("{public}\n"))?;
    run(
        Command::new("chown")
            .arg("-R")
            .arg(format!("{name}:"))
            .arg(&dir),
        "chown",
    )
    .await?;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))?;
    std::fs::set_permissions(
        dir.join("authorized_keys"),
        std::fs::Permissions::from_mode(0o600),
    )?;
    Ok(())
}

/// An ed25519 key pair from ssh-keygen: (public line, private key).
pub async fn keygen(dir: &Path, name: &str) -> Result<(String, String)> {
    let path = dir.join(format!("key_{name}"));
    run(
        Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C", "chaos", "-f"])
            .arg(&path),
        "ssh-keygen",
    )
    .await?;
    let public = std::fs::read_to_string(path.with_extension("pub"))?;
    let private = std::fs::read_to_string(&path)?;
    let _ = std::fs::remove_file(&path);
    Ok((public.trim().to_owned(), private))
}

pub async fn remove_user(name: &str) {
    let _ = Command::new("pkill")
        .args(["-KILL", "-u", name])
        .status()
        .await;
    let _ = Command::new("userdel")
        .args(["-f", "-r", name])
        .stderr(Stdio::null())
        .status()
        .await;
}
