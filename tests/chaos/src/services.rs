//! The servers the soak owns, on ports of their own, so that stopping them disturbs no other
//! test on the machine: a PostgreSQL cluster for the store (trust), one that checks passwords
//! for the PostgreSQL target (scram-sha-256), a Redis with an ACL file, a MariaDB.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use tokio::process::{Child, Command};

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

pub async fn wait_port(port: u16, what: &str, within: Duration) -> Result<()> {
    let deadline = Instant::now() + within;
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        if Instant::now() > deadline {
            bail!("{what} did not listen on 127.0.0.1:{port} within {within:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

fn pg_bin() -> Result<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|d| d.flatten().map(|e| e.path().join("bin")).collect())
        .unwrap_or_default();
    dirs.sort();
    if let Some(d) = dirs.into_iter().rev().find(|d| d.join("initdb").exists()) {
        return Ok(d);
    }
    for d in ["/usr/local/bin", "/usr/bin"] {
        if Path::new(d).join("initdb").exists() {
            return Ok(PathBuf::from(d));
        }
    }
    bail!("PostgreSQL's initdb is missing: install the PostgreSQL server")
}

/// Runs as the postgres user when we are root (initdb and postgres refuse root).
fn as_postgres(program: &Path) -> Command {
    let mut cmd = if unsafe { libc::geteuid() } == 0 {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    };
    cmd.stdin(Stdio::null());
    cmd
}

async fn status_ok(cmd: &mut Command, what: &str) -> Result<()> {
    let out = cmd.output().await.with_context(|| what.to_owned())?;
    if !out.status.success() {
        bail!(
            "{what}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// A throwaway PostgreSQL cluster.
pub struct PgCluster {
    pub dir: PathBuf,
    pub port: u16,
    pub password: Option<String>,
    bin: PathBuf,
}

impl PgCluster {
    /// initdb in `dir`; with a password, logins are checked (scram-sha-256).
    pub async fn create(dir: PathBuf, password: Option<&str>) -> Result<PgCluster> {
        let bin = pg_bin()?;
        std::fs::create_dir_all(&dir)?;
        let root = unsafe { libc::geteuid() } == 0;
        let mut initdb = as_postgres(&bin.join("initdb"));
        initdb.arg("-D").arg(&dir).args(["-U", "postgres"]);
        let pwfile = dir.with_extension("pw");
        if let Some(pw) = password {
            std::fs::write(&pwfile, format!("{pw}\n"))?;
            initdb
                .arg(format!("--pwfile={}", pwfile.display()))
                .args(["--auth-host=scram-sha-256", "--auth-local=scram-sha-256"]);
        } else {
            initdb.args(["--auth-host=trust", "--auth-local=trust"]);
        }
        if root {
            for p in [&dir, &pwfile] {
                if p.exists() {
                    status_ok(
                        Command::new("chown").arg("postgres").arg(p),
                        "chown the cluster to postgres",
                    )
                    .await?;
                }
            }
        }
        status_ok(initdb.stdout(Stdio::null()), "initdb").await?;
        let _ = std::fs::remove_file(&pwfile);
        let cluster = PgCluster {
            dir,
            port: free_port(),
            password: password.map(str::to_owned),
            bin,
        };
        cluster.start().await?;
        Ok(cluster)
    }

    pub fn url(&self, port: u16, db: &str) -> String {
        match &self.password {
            Some(pw) => format!("postgres://postgres:{pw}@127.0.0.1:{port}/{db}"),
            None => format!("postgres://postgres@127.0.0.1:{port}/{db}"),
        }
    }

    pub async fn start(&self) -> Result<()> {
        let opts = format!(
            "-p {} -c listen_addresses=127.0.0.1 -k {} -c max_connections=300 -c fsync=off",
            self.port,
            self.dir.display()
        );
        status_ok(
            as_postgres(&self.bin.join("pg_ctl"))
                .arg("-D")
                .arg(&self.dir)
                .arg("-l")
                .arg(self.dir.join("server.log"))
                .args(["-w", "-t", "60", "-o", &opts, "start"])
                .stdout(Stdio::null()),
            "pg_ctl start",
        )
        .await?;
        wait_port(self.port, "PostgreSQL", Duration::from_secs(30)).await
    }

    /// `pg_ctl stop -m fast|immediate`.
    pub async fn stop(&self, mode: &str) -> Result<()> {
        status_ok(
            as_postgres(&self.bin.join("pg_ctl"))
                .arg("-D")
                .arg(&self.dir)
                .args(["-w", "-t", "60", "-m", mode, "stop"])
                .stdout(Stdio::null()),
            "pg_ctl stop",
        )
        .await
    }
}

/// A cluster goes with the run that made it, whatever way the run ends.
impl Drop for PgCluster {
    fn drop(&mut self) {
        let mut cmd = if unsafe { libc::geteuid() } == 0 {
            let mut c = std::process::Command::new("runuser");
            c.args(["-u", "postgres", "--"])
                .arg(self.bin.join("pg_ctl"));
            c
        } else {
            std::process::Command::new(self.bin.join("pg_ctl"))
        };
        let _ = cmd
            .arg("-D")
            .arg(&self.dir)
            .args(["-m", "immediate", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// A Redis of our own, its users in an ACL file (kept across restarts, as an operator who
/// rotates Redis passwords would configure it).
pub struct Redis {
    pub port: u16,
    pub dir: PathBuf,
    child: Option<Child>,
}

impl Redis {
    pub async fn start(dir: PathBuf, password: &str) -> Result<Redis> {
        std::fs::create_dir_all(&dir)?;
        std::fs::write(
            dir.join("users.acl"),
            format!("user default on >{password} ~* &* +@all\n"),
        )?;
        let mut redis = Redis {
            port: free_port(),
            dir,
            child: None,
        };
        redis.resume().await?;
        Ok(redis)
    }

    pub async fn resume(&mut self) -> Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("redis.log"))?;
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &self.port.to_string()])
            .args(["--save", "", "--appendonly", "no", "--aclfile"])
            .arg(self.dir.join("users.acl"))
            .arg("--dir")
            .arg(&self.dir)
            .stdin(Stdio::null())
            .stdout(log)
            .kill_on_drop(true)
            .spawn()
            .context("redis-server runs (install the Redis server)")?;
        self.child = Some(child);
        wait_port(self.port, "redis-server", Duration::from_secs(20)).await
    }

    /// Stops it: SIGKILL (a crash) or SIGTERM (a clean shutdown).
    pub async fn stop(&mut self, kill: bool) {
        if let Some(mut child) = self.child.take() {
            if let Some(pid) = child.id() {
                let sig = if kill { libc::SIGKILL } else { libc::SIGTERM };
                unsafe { libc::kill(pid as i32, sig) };
            }
            let _ = tokio::time::timeout(Duration::from_secs(20), child.wait()).await;
            let _ = child.kill().await;
        }
    }
}

/// A MariaDB of our own (mariadb-install-db into a directory, mariadbd on its own port).
pub struct Maria {
    pub port: u16,
    pub dir: PathBuf,
    child: Option<Child>,
}

impl Maria {
    pub async fn start(dir: PathBuf, password: &str) -> Result<Maria> {
        std::fs::create_dir_all(dir.join("data"))?;
        status_ok(
            Command::new("mariadb-install-db")
                .args([
                    "--no-defaults",
                    "--auth-root-authentication-method=normal",
                    "--user=mysql",
                ])
                .arg(format!("--datadir={}", dir.join("data").display()))
                .stdout(Stdio::null()),
            "mariadb-install-db",
        )
        .await?;
        let _ = Command::new("chown")
            .args(["-R", "mysql:"])
            .arg(&dir)
            .status()
            .await;
        let mut maria = Maria {
            port: free_port(),
            dir,
            child: None,
        };
        maria.resume().await?;
        // root over TCP with a password: the admin rotor is given.
        let sql = format!(
            "CREATE DATABASE IF NOT EXISTS chaos; \
             CREATE OR REPLACE USER 'root'@'127.0.0.1' IDENTIFIED BY '{password}'; \
             GRANT ALL ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION; FLUSH PRIVILEGES;"
        );
        status_ok(
            Command::new("mariadb")
                .arg(format!("--socket={}", maria.dir.join("sock").display()))
                .args(["-uroot", "-e", &sql]),
            "mariadb: the admin account",
        )
        .await?;
        Ok(maria)
    }

    pub async fn resume(&mut self) -> Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("mariadb.log"))?;
        let child = Command::new("mariadbd")
            .args([
                "--no-defaults",
                "--user=mysql",
                "--bind-address=127.0.0.1",
                "--skip-name-resolve",
            ])
            .arg(format!("--port={}", self.port))
            .arg(format!("--datadir={}", self.dir.join("data").display()))
            .arg(format!("--socket={}", self.dir.join("sock").display()))
            .arg(format!("--pid-file={}", self.dir.join("pid").display()))
            .args([
                "--skip-log-bin",
                "--innodb-flush-log-at-trx-commit=2",
                "--max-connections=300",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .context("mariadbd runs (install the MariaDB server)")?;
        self.child = Some(child);
        wait_port(self.port, "mariadbd", Duration::from_secs(60)).await
    }

    /// SIGKILL: the crash the issue asks for.
    pub async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill().await;
            let _ = child.wait().await;
        }
    }
}

/// The RAM API's stand-in (tests/ram-emulator), with its test controls.
pub struct RamEmulator {
    pub port: u16,
    pub admin_id: String,
    pub admin_secret: String,
    _child: Child,
}

impl RamEmulator {
    /// `bin`: the emulator; found beside the rotor binary unless `ROTOR_CHAOS_RAM_EMULATOR`
    /// names it.
    pub async fn start(rotor_bin: &Path, dir: &Path) -> Result<RamEmulator> {
        let bin = std::env::var_os("ROTOR_CHAOS_RAM_EMULATOR")
            .map(PathBuf::from)
            .unwrap_or_else(|| rotor_bin.with_file_name("ram-emulator"));
        if !bin.exists() {
            bail!(
                "the RAM emulator ({}) is missing: cargo build --release -p ram-emulator, or ROTOR_CHAOS_RAM_EMULATOR",
                bin.display()
            );
        }
        let port = free_port();
        let admin_id = "LTAIchaosAdminKey0001".to_owned();
        let admin_secret = format!("ChaosAdmin{:016x}", rand::random::<u64>());
        let log = std::fs::File::create(dir.join("ram-emulator.log"))?;
        let child = Command::new(&bin)
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(["--admin-access-key-id", &admin_id])
            .args(["--admin-access-key-secret", &admin_secret])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .context("the RAM emulator starts")?;
        wait_port(port, "ram-emulator", Duration::from_secs(20)).await?;
        Ok(RamEmulator {
            port,
            admin_id,
            admin_secret,
            _child: child,
        })
    }

    /// A test control (`throttle?count=N`, `slow-create?ms=N`).
    pub async fn control(&self, path: &str) -> Result<()> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", self.port)).await?;
        s.write_all(
            format!("POST /_emulator/{path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .await?;
        let mut answer = String::new();
        s.read_to_string(&mut answer).await?;
        if !answer.starts_with("HTTP/1.1 200") {
            bail!(
                "emulator control {path}: {}",
                answer.lines().next().unwrap_or("")
            );
        }
        Ok(())
    }
}
