//! A loopback TCP proxy for tests that can hold what clients send: it accepts on a port of its
//! own, forwards every connection to one target address, and can stop forwarding the
//! client→server direction of a connection — buffering what arrives — until [`Proxy::release`].
//! That is how a test keeps a target write "on the wire" (a stalled process, a slow network)
//! and lets it land later.
//!
//! - [`Proxy::hold_on`]: the first connection whose client sends `pattern` (plain-text
//!   protocols: Redis `SETUSER`, PostgreSQL `ALTER ROLE` without TLS) is held from the chunk
//!   holding it on; other connections pass.
//! - [`Proxy::hold_now`]: every connection open at that moment is held from now on (encrypted
//!   protocols, where no text can be matched); connections opened later pass.
//! - [`Proxy::hold_next`] and [`Proxy::flush`]: the next connection is held from its first byte,
//!   and the test lets it through one exchange at a time (`flush` forwards what is held and
//!   keeps holding) until the server's log shows the client is about to send the write to hold
//!   (SSH: once the session channel for the command is confirmed, the next bytes are the
//!   command and its input).
//!
//! The server→client direction always flows. Held bytes are read off the client's socket (so a
//! client that goes away cannot lose them) and written to the server, in order, on release.
#![allow(dead_code)]

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// A running proxy; it stops when dropped.
pub struct Proxy {
    pub port: u16,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

#[derive(Default)]
struct State {
    /// Armed by `hold_on`: the first connection sending it is held.
    pattern: Option<Vec<u8>>,
    /// Armed by `hold_next`: the next connection accepted is held.
    hold_next: bool,
    /// Bumped by `flush`: held connections forward what they hold so far.
    flushes: u64,
    open: HashSet<u64>,
    held: HashSet<u64>,
    /// Bytes buffered since the last release.
    held_bytes: usize,
    accepted: u64,
}

struct Shared {
    state: Mutex<State>,
    /// Bumped by every release and flush: held connections look again.
    released: watch::Sender<u64>,
}

impl State {
    /// Notes `chunk` from connection `id`'s client (`tail`: the end of its previous chunk, so
    /// that a pattern split between two chunks matches); true if it is to be held.
    fn note(&mut self, id: u64, chunk: &[u8], tail: &mut Vec<u8>) -> bool {
        if let Some(p) = self.pattern.clone() {
            let mut window = std::mem::take(tail);
            window.extend_from_slice(chunk);
            if window.windows(p.len()).any(|w| w == p.as_slice()) {
                self.pattern = None;
                self.held.insert(id);
            }
            let keep = p.len().saturating_sub(1).min(window.len());
            *tail = window[window.len() - keep..].to_vec();
        }
        let held = self.held.contains(&id);
        if held {
            self.held_bytes += chunk.len();
        }
        held
    }
}

impl Proxy {
    /// Starts a proxy on a free loopback port forwarding to `target` (`host:port`).
    pub async fn start(target: &str) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("the proxy binds a loopback port");
        let port = listener.local_addr().unwrap().port();
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            released: watch::channel(0).0,
        });
        let target = target.to_owned();
        let task = {
            let shared = shared.clone();
            tokio::spawn(async move {
                let mut conns = tokio::task::JoinSet::new();
                while let Ok((inbound, _)) = listener.accept().await {
                    let id = {
                        let mut s = shared.state.lock().unwrap();
                        s.accepted += 1;
                        let id = s.accepted;
                        s.open.insert(id);
                        if std::mem::take(&mut s.hold_next) {
                            s.held.insert(id);
                        }
                        id
                    };
                    conns.spawn(connection(id, inbound, target.clone(), shared.clone()));
                }
            })
        };
        Proxy { port, shared, task }
    }

    /// Holds the first connection whose client sends `pattern`, from that chunk on.
    pub fn hold_on(&self, pattern: &str) {
        self.shared.state.lock().unwrap().pattern = Some(pattern.as_bytes().to_vec());
    }

    /// Holds what the clients of all open connections send from now on.
    pub fn hold_now(&self) {
        let mut s = self.shared.state.lock().unwrap();
        s.held = s.open.clone();
    }

    /// Holds the next connection accepted, from its first byte.
    pub fn hold_next(&self) {
        self.shared.state.lock().unwrap().hold_next = true;
    }

    /// Forwards what the held connections hold so far, and goes on holding what comes next.
    pub fn flush(&self) {
        {
            let mut s = self.shared.state.lock().unwrap();
            s.flushes += 1;
            s.held_bytes = 0;
        }
        self.shared.released.send_modify(|n| *n += 1);
    }

    /// Bytes held back since the last release or flush (0: nothing held yet).
    pub fn held_bytes(&self) -> usize {
        self.shared.state.lock().unwrap().held_bytes
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> u64 {
        self.shared.state.lock().unwrap().accepted
    }

    /// Forwards what was held, in order, and stops holding (an armed pattern is disarmed).
    pub fn release(&self) {
        {
            let mut s = self.shared.state.lock().unwrap();
            s.pattern = None;
            s.hold_next = false;
            s.held.clear();
            s.held_bytes = 0;
        }
        self.shared.released.send_modify(|n| *n += 1);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Forwards one connection; the client→server direction honours holds.
async fn connection(id: u64, mut inbound: TcpStream, target: String, shared: Arc<Shared>) {
    let Ok(mut outbound) = TcpStream::connect(&target).await else {
        shared.state.lock().unwrap().open.remove(&id);
        return;
    };
    let (mut client_read, mut client_write) = inbound.split();
    let (mut server_read, mut server_write) = outbound.split();
    let mut released = shared.released.subscribe();
    let upstream = async {
        let mut buf = vec![0u8; 64 * 1024];
        let mut pending: Vec<u8> = Vec::new();
        let mut tail: Vec<u8> = Vec::new();
        let mut eof = false;
        let mut flushed = 0;
        loop {
            let (held, flushes) = {
                let s = shared.state.lock().unwrap();
                (s.held.contains(&id), s.flushes)
            };
            // A flush forwards what was held when it was asked for.
            let flush = std::mem::replace(&mut flushed, flushes) != flushes;
            if (!held || flush) && !pending.is_empty() {
                server_write.write_all(&pending).await?;
                pending.clear();
            }
            if eof && !held {
                return server_write.shutdown().await;
            }
            tokio::select! {
                // A client that went away (even with a reset) leaves what it sent before.
                n = client_read.read(&mut buf), if !eof => {
                    let n = n.unwrap_or(0);
                    if n == 0 {
                        eof = true;
                        continue;
                    }
                    let chunk = &buf[..n];
                    let held = shared.state.lock().unwrap().note(id, chunk, &mut tail);
                    if held {
                        pending.extend_from_slice(chunk);
                    } else {
                        server_write.write_all(chunk).await?;
                    }
                }
                changed = released.changed() => {
                    if changed.is_err() {
                        return Ok(());
                    }
                }
            }
        }
    };
    let downstream = tokio::io::copy(&mut server_read, &mut client_write);
    let _: (std::io::Result<()>, _) = tokio::join!(upstream, downstream);
    shared.state.lock().unwrap().open.remove(&id);
}
