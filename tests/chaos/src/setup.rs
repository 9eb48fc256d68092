//! The soak's world: its own servers, a fault proxy in front of each target, a store with
//! targets and secrets of every family made through the CLI as an operator would, an AccessKey
//! for the API, the API server and three workers.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};
use tokio::sync::Mutex as AsyncMutex;

use crate::faults::{Workers, World};
use crate::prober::{Family, Secret};
use crate::proxy::Proxy;
use crate::rotor::{Api, Rotor};
use crate::services::{free_port, wait_port, Maria, PgCluster, RamEmulator, Redis};
use crate::ssh::{self, Sshd};

pub const WORKERS: usize = 3;

fn word(rng_word: u64) -> String {
    format!("{rng_word:016x}")
}

pub struct Made {
    pub world: Arc<World>,
    pub users: Vec<String>,
}

pub async fn build(bin: &Path, dir: &Path, run_id: &str) -> Result<Made> {
    let admin_pw = format!("Chaos-admin-{}", word(rand::random()));
    eprintln!("chaos: starting the store's and the target's PostgreSQL, Redis, MariaDB, sshd");
    let store = PgCluster::create(dir.join("pg-store"), None).await?;
    let pg_target = PgCluster::create(dir.join("pg-target"), Some(&admin_pw)).await?;
    let redis = Redis::start(dir.join("redis"), &admin_pw).await?;
    let maria = match Maria::start(dir.join("mariadb"), &admin_pw).await {
        Ok(m) => Some(m),
        Err(e) => {
            eprintln!("chaos: MariaDB is left out: {e:#}");
            None
        }
    };
    let sshd = match Sshd::start(dir.join("sshd")).await {
        Ok(s) => Some(s),
        Err(e) => {
            eprintln!("chaos: SSH is left out: {e:#}");
            None
        }
    };

    let ram = match RamEmulator::start(bin, dir).await {
        Ok(r) => Some(r),
        Err(e) => {
            eprintln!("chaos: RAM is left out: {e:#}");
            None
        }
    };

    let rotor = Rotor {
        bin: bin.to_owned(),
        data_dir: dir.join("rotor-data"),
        store: store.url(store.port, "postgres"),
    };
    rotor.ok(&["init"]).await?;

    let mut proxies = Vec::new();
    let mut secrets = Vec::new();
    let mut users = Vec::new();

    // PostgreSQL.
    let proxy = Proxy::start(format!("127.0.0.1:{}", pg_target.port)).await?;
    let url = format!(
        "postgres://127.0.0.1:{}/postgres?sslmode=disable",
        proxy.port
    );
    add_db_target(&rotor, "pg", "postgres", &url, "postgres", &admin_pw).await?;
    proxies.push(("pg".to_owned(), proxy));
    for (name, family, sub) in [
        ("chaos/pg-dual", Family::PgDual, None),
        ("chaos/pg-single", Family::PgSingle, Some("SingleUser")),
    ] {
        let account = format!("ch_{}_{}", run_id, name.rsplit('-').next().unwrap_or("x"));
        create_db(&rotor, name, "Rds", "pg", &account, sub, Some("postgres")).await?;
        secrets.push(Secret {
            name: name.into(),
            family,
            port: pg_target.port,
        });
    }

    // Redis.
    let proxy = Proxy::start(format!("127.0.0.1:{}", redis.port)).await?;
    let url = format!("redis://127.0.0.1:{}", proxy.port);
    add_db_target(&rotor, "redis", "redis", &url, "default", &admin_pw).await?;
    proxies.push(("redis".to_owned(), proxy));
    for (name, family, sub) in [
        ("chaos/redis-dual", Family::RedisDual, None),
        (
            "chaos/redis-single",
            Family::RedisSingle,
            Some("SingleUser"),
        ),
    ] {
        let account = format!("ch_{}_{}", run_id, name.rsplit('-').next().unwrap_or("x"));
        create_db(&rotor, name, "Redis", "redis", &account, sub, None).await?;
        secrets.push(Secret {
            name: name.into(),
            family,
            port: redis.port,
        });
    }

    // MariaDB.
    if let Some(m) = &maria {
        let proxy = Proxy::start(format!("127.0.0.1:{}", m.port)).await?;
        let url = format!("mysql://127.0.0.1:{}/mysql?ssl-mode=disabled", proxy.port);
        add_db_target(&rotor, "maria", "mysql", &url, "root", &admin_pw).await?;
        proxies.push(("mariadb".to_owned(), proxy));
        for (name, family, sub) in [
            ("chaos/mariadb-dual", Family::MariaDual, None),
            (
                "chaos/mariadb-single",
                Family::MariaSingle,
                Some("SingleUser"),
            ),
        ] {
            let account = format!("ch_{}_{}", run_id, name.rsplit('-').next().unwrap_or("x"));
            create_db(&rotor, name, "Rds", "maria", &account, sub, Some("chaos")).await?;
            secrets.push(Secret {
                name: name.into(),
                family,
                port: m.port,
            });
        }
    }

    // SSH: a password and a key pair, imported (no admin: the users rotate themselves).
    if let Some(s) = &sshd {
        let proxy = Proxy::start(format!("127.0.0.1:{}", s.port)).await?;
        let url = format!("ssh://127.0.0.1:{}", proxy.port);
        let host_key = s.host_key();
        rotor
            .ok(&[
                "target",
                "add",
                "host",
                "--kind",
                "ssh",
                "--url",
                &url,
                "--host-key",
                &host_key,
            ])
            .await?;
        proxies.push(("sshd".to_owned(), proxy));
        let pw_user = format!("rtc{run_id}p");
        let password = format!("Aa1-{}", word(rand::random()));
        ssh::add_user(&pw_user, &password).await?;
        users.push(pw_user.clone());
        let value = serde_json::json!({"UserName": pw_user, "Password": password}).to_string();
        import_ecs(&rotor, dir, "chaos/ssh-password", "Password", &value).await?;
        secrets.push(Secret {
            name: "chaos/ssh-password".into(),
            family: Family::SshPassword,
            port: s.port,
        });

        let key_user = format!("rtc{run_id}k");
        ssh::add_user(&key_user, &format!("Aa1-{}", word(rand::random()))).await?;
        users.push(key_user.clone());
        let (public, private) = ssh::keygen(dir, &key_user).await?;
        ssh::authorize(&key_user, &public).await?;
        let value =
            serde_json::json!({"UserName": key_user, "PublicKey": public, "PrivateKey": private})
                .to_string();
        import_ecs(&rotor, dir, "chaos/ssh-key", "SSHKey", &value).await?;
        secrets.push(Secret {
            name: "chaos/ssh-key".into(),
            family: Family::SshKey,
            port: s.port,
        });
    }

    // RAM: a user made with the admin pair; its first AccessKey made by rotor (create mode).
    if let Some(r) = &ram {
        let proxy = Proxy::start(format!("127.0.0.1:{}", r.port)).await?;
        let url = format!("http://127.0.0.1:{}", proxy.port);
        rotor
            .ok_with(
                &[
                    "target",
                    "add",
                    "ram",
                    "--kind",
                    "ram",
                    "--url",
                    &url,
                    "--admin-access-key-id",
                    &r.admin_id,
                    "--admin-access-key-secret-stdin",
                ],
                Some(&r.admin_secret),
            )
            .await?;
        proxies.push(("ram".to_owned(), proxy));
        let user = format!("chaos-{run_id}");
        let admin = Api {
            addr: format!("127.0.0.1:{}", r.port),
            key_id: r.admin_id.clone(),
            key_secret: r.admin_secret.clone(),
            version: crate::rotor::RAM,
        };
        admin.call("CreateUser", &[("UserName", &user)]).await?;
        rotor
            .ok(&[
                "secret",
                "create",
                "chaos/ram",
                "--type",
                "RAMCredentials",
                "--target",
                "ram",
                "--ram-user",
                &user,
            ])
            .await?;
        secrets.push(Secret {
            name: "chaos/ram".into(),
            family: Family::Ram,
            port: r.port,
        });
    }

    // The API: an AccessKey that reads every secret and rotates them.
    let key: serde_json::Value = rotor
        .json(&[
            "access-key",
            "create",
            "--name",
            "chaos",
            "--allow",
            "GetSecretValue:*",
            "--allow",
            "RotateSecret:*",
        ])
        .await?;
    let api_port = free_port();
    let api_addr = format!("127.0.0.1:{api_port}");
    let api_child = rotor.spawn_api(&api_addr, &dir.join("api.log"))?;
    wait_port(api_port, "rotor serve", std::time::Duration::from_secs(30)).await?;
    let api = Api {
        addr: api_addr,
        key_id: key["AccessKeyId"]
            .as_str()
            .context("AccessKeyId")?
            .to_owned(),
        key_secret: key["AccessKeySecret"]
            .as_str()
            .context("AccessKeySecret")?
            .to_owned(),
        version: crate::rotor::KMS,
    };

    let mut workers = Workers {
        rotor: rotor.clone(),
        logs: dir.to_owned(),
        children: (0..WORKERS).map(|_| None).collect(),
        api: Some(api_child),
        api_addr: api.addr.clone(),
    };
    for i in 0..WORKERS {
        workers.spawn(i)?;
    }
    let world = World {
        workers: AsyncMutex::new(workers),
        proxies,
        store,
        pg_target,
        redis: AsyncMutex::new(redis),
        maria: maria.map(AsyncMutex::new),
        sshd: sshd.map(AsyncMutex::new),
        ram,
        rotor,
        api,
        secrets,
    };
    Ok(Made {
        world: Arc::new(world),
        users,
    })
}

async fn add_db_target(
    rotor: &Rotor,
    name: &str,
    kind: &str,
    url: &str,
    user: &str,
    pw: &str,
) -> Result<()> {
    rotor
        .ok_with(
            &[
                "target",
                "add",
                name,
                "--kind",
                kind,
                "--url",
                url,
                "--admin-user",
                user,
                "--admin-password-stdin",
            ],
            Some(pw),
        )
        .await
        .map(drop)
}

async fn create_db(
    rotor: &Rotor,
    name: &str,
    ty: &str,
    target: &str,
    account: &str,
    sub: Option<&str>,
    database: Option<&str>,
) -> Result<()> {
    let mut args = vec![
        "secret",
        "create",
        name,
        "--type",
        ty,
        "--target",
        target,
        "--account",
        account,
    ];
    if let Some(sub) = sub {
        args.extend(["--sub-type", sub]);
    }
    if let Some(db) = database {
        args.extend(["--database", db]);
    }
    rotor.ok(&args).await.map(drop)
}

async fn import_ecs(rotor: &Rotor, dir: &Path, name: &str, sub: &str, value: &str) -> Result<()> {
    let file = dir.join(format!("{}.json", name.replace('/', "_")));
    std::fs::write(&file, value)?;
    let path = file.display().to_string();
    let out = rotor
        .ok(&[
            "secret",
            "create",
            name,
            "--type",
            "ECS",
            "--sub-type",
            sub,
            "--target",
            "host",
            "--value-file",
            &path,
        ])
        .await;
    let _ = std::fs::remove_file(&file);
    out.map(drop)
}
