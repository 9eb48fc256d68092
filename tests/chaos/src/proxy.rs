//! A fault-injecting TCP proxy between the workers and one target: every byte passes through
//! it, and a fault, while it lasts, changes what happens to them.
//!
//! - `Latency(ms)`: each chunk waits that long before it is forwarded, both directions;
//! - `Reset`: open connections are torn down with an RST (SO_LINGER 0) and new ones are reset
//!   as soon as they are accepted;
//! - `Stall`: open and new connections stop forwarding (bytes are held, sockets stay open)
//!   until the fault ends, then what was held flows;
//! - `HalfOpen`: the peer is gone without a word: nothing is forwarded, nothing is answered,
//!   nothing is closed — until the fault ends, when the connections are dropped silently
//!   (a FIN, as a host coming back with no memory of them would eventually cause).

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Pass,
    Latency(u64),
    Reset,
    Stall,
    HalfOpen,
}

/// A running proxy; it stops with the process.
pub struct Proxy {
    pub port: u16,
    mode: Arc<watch::Sender<(Mode, u64)>>,
}

impl Proxy {
    pub async fn start(target: String) -> std::io::Result<Proxy> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let (tx, _) = watch::channel((Mode::Pass, 0u64));
        let mode = Arc::new(tx);
        let shared = mode.clone();
        tokio::spawn(async move {
            loop {
                let Ok((inbound, _)) = listener.accept().await else {
                    continue;
                };
                let rx = shared.subscribe();
                let target = target.clone();
                tokio::spawn(connection(inbound, target, rx));
            }
        });
        Ok(Proxy { port, mode })
    }

    /// Sets the mode; every change is a new epoch that open connections notice.
    pub fn set(&self, mode: Mode) {
        self.mode.send_modify(|(m, epoch)| {
            *m = mode;
            *epoch += 1;
        });
    }
}

fn reset(stream: &TcpStream) {
    let _ = stream.set_zero_linger();
}

async fn connection(inbound: TcpStream, target: String, mut rx: watch::Receiver<(Mode, u64)>) {
    let (mode, _) = *rx.borrow_and_update();
    match mode {
        Mode::Reset => {
            reset(&inbound);
            return;
        }
        Mode::HalfOpen => {
            // Accepted, never answered; dropped silently once the fault ends.
            while rx.changed().await.is_ok() {
                if rx.borrow().0 != Mode::HalfOpen {
                    break;
                }
            }
            return;
        }
        _ => {}
    }
    let Ok(Ok(outbound)) =
        tokio::time::timeout(Duration::from_secs(10), TcpStream::connect(&target)).await
    else {
        reset(&inbound);
        return;
    };
    let _ = inbound.set_nodelay(true);
    let _ = outbound.set_nodelay(true);
    let (ci, co) = inbound.into_split();
    let (si, so) = outbound.into_split();
    let up = tokio::spawn(pump(ci, so, rx.clone()));
    let down = tokio::spawn(pump(si, co, rx));
    // Either direction ending on a reset ends both.
    let (a, b) = (up.abort_handle(), down.abort_handle());
    tokio::select! {
        _ = up => { b.abort(); }
        _ = down => { a.abort(); }
    }
}

/// Forwards one direction, honouring the mode. Returns when either side closes or a reset
/// tears the connection down.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut rx: watch::Receiver<(Mode, u64)>,
) {
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        let mode = rx.borrow_and_update().0;
        match mode {
            Mode::Reset => {
                reset_halves(&from, &to);
                return;
            }
            Mode::Stall | Mode::HalfOpen => {
                // Hold: read nothing, forward nothing, until the mode changes.
                if rx.changed().await.is_err() {
                    return;
                }
                if mode == Mode::HalfOpen && rx.borrow().0 != Mode::HalfOpen {
                    return;
                }
                continue;
            }
            _ => {}
        }
        tokio::select! {
            n = from.read(&mut buf) => {
                let n = match n { Ok(0) | Err(_) => { let _ = to.shutdown().await; return; } Ok(n) => n };
                let mode = rx.borrow().0;
                if let Mode::Latency(ms) = mode {
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                }
                // A stall that began while this chunk was read holds it until it ends.
                while matches!(rx.borrow().0, Mode::Stall | Mode::HalfOpen) {
                    if rx.changed().await.is_err() { return; }
                }
                if rx.borrow().0 == Mode::Reset {
                    reset_halves(&from, &to);
                    return;
                }
                if to.write_all(&buf[..n]).await.is_err() {
                    return;
                }
            }
            changed = rx.changed() => {
                if changed.is_err() { return; }
            }
        }
    }
}

fn reset_halves(from: &tokio::net::tcp::OwnedReadHalf, to: &tokio::net::tcp::OwnedWriteHalf) {
    // The halves of both sockets are dropped by the caller; linger 0 makes the close an RST.
    let _ = socket2_linger(from.as_ref());
    let _ = socket2_linger(to.as_ref());
}

fn socket2_linger(s: &TcpStream) -> std::io::Result<()> {
    s.set_zero_linger()
}
