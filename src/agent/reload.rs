//! The commands run after files changed (`[[template]] command`, through `sh -c`): each runs
//! once after a pass however many of its files changed (debounced), one at a time, with a time
//! limit. Its exit status and output are logged — output only when it quotes no value the agent
//! holds (else one fixed line says it was withheld), control characters escaped.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt};
use zeroize::Zeroizing;

use super::secrets::Snapshot;

/// How long a command may run before it is killed.
const LIMIT: Duration = Duration::from_secs(300);
/// How much of each output stream is kept for the log.
const KEEP: usize = 16 * 1024;

/// The fields of a value that are no secret (names, public keys, times); every other field and
/// every whole value is.
const PUBLIC_FIELDS: [&str; 5] = [
    "AccountName",
    "UserName",
    "AccessKeyId",
    "PublicKey",
    "GenerateTimestamp",
];

/// Every value in `snapshot`, and each secret field of JSON values: text a log must not quote.
pub fn secret_texts(snapshot: &Snapshot) -> Vec<Zeroizing<String>> {
    let mut out = Vec::new();
    for f in snapshot.values() {
        out.push(f.data.clone());
        if let Ok(serde_json::Value::Object(map)) = serde_json::from_str(&f.data) {
            for (k, v) in map {
                if let (false, serde_json::Value::String(s)) =
                    (PUBLIC_FIELDS.contains(&k.as_str()), v)
                {
                    out.push(Zeroizing::new(s));
                }
            }
        }
    }
    out
}

/// Runs `command` with `sh -c`, waits for it (killed after [`LIMIT`]) and logs how it ended.
/// `true` when it exited 0.
pub async fn run(command: &str, secrets: &[Zeroizing<String>]) -> bool {
    let mut child = match tokio::process::Command::new("/bin/sh")
        .args(["-c", command])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
    {
        Ok(child) => child,
        Err(e) => {
            tracing::error!(command, "cannot start the command: {e}");
            return false;
        }
    };
    let stdout = child.stdout.take().expect("piped stdout");
    let stderr = child.stderr.take().expect("piped stderr");
    let ended = tokio::time::timeout(LIMIT, async {
        let (out, err, status) = tokio::join!(bounded(stdout), bounded(stderr), child.wait());
        (out, err, status)
    })
    .await;
    let (out, err, status) = match ended {
        Ok(done) => done,
        Err(_) => {
            let _ = child.kill().await;
            tracing::error!(
                command,
                "the command ran longer than {LIMIT:?} and was killed"
            );
            return false;
        }
    };
    let quoted: Vec<&str> = secrets.iter().map(|s| s.as_str()).collect();
    let shown = |bytes: Vec<u8>| {
        let text = String::from_utf8_lossy(&bytes).trim_end().to_owned();
        let text = rotators::value::withhold_if_quoting(text, &quoted);
        crate::model::printable(&text).into_owned()
    };
    let (stdout, stderr) = (shown(out), shown(err));
    match status {
        Ok(s) if s.success() => {
            tracing::info!(command, %stdout, %stderr, "command ran after a change: exit 0");
            true
        }
        Ok(s) => {
            tracing::error!(command, %stdout, %stderr, "command ran after a change: {s}");
            false
        }
        Err(e) => {
            tracing::error!(command, "cannot wait for the command: {e}");
            false
        }
    }
}

/// Reads `stream` to its end, keeping the first [`KEEP`] bytes (the rest is read and dropped,
/// so a talkative command never blocks on a full pipe).
async fn bounded(mut stream: impl AsyncRead + Unpin) -> Vec<u8> {
    let mut kept = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return kept,
            Ok(n) => {
                let room = KEEP.saturating_sub(kept.len());
                kept.extend_from_slice(&chunk[..n.min(room)]);
            }
        }
    }
}
