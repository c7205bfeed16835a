//! A fault-injecting TCP proxy for one ordered broker pair (i → j): broker
//! i's `--initial-cluster` names the proxy as node j's peer address, and the
//! proxy forwards bytes both ways to j's real peer listener.
//!
//! [`Proxy::cut`] drops every live connection and black-holes new ones
//! (accepted, never forwarded, closed at the next heal), and returns once
//! no byte can cross any more (every forwarding task has ended: a message a
//! test sends after the cut cannot slip through); [`Proxy::heal`]
//! forwards again. Every state change closes the connections accepted
//! before it, so a broker never keeps a half-dead stream across a fault.
//!
//! The proxy runs on a runtime the caller hands in (the cluster keeps a
//! dedicated one, so that blocking calls in a test never stall traffic).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// One direction of peer traffic between two brokers.
pub struct Proxy {
    /// Where the proxy listens (what the sending broker dials).
    pub listen: SocketAddr,
    /// The receiving broker's real peer address.
    pub target: SocketAddr,
    state: Arc<State>,
    accept: JoinHandle<()>,
}

struct State {
    cut: AtomicBool,
    /// Bumped on every cut and heal; connections close when it changes.
    epoch: watch::Sender<u64>,
    accepted: AtomicU64,
    /// Connections being forwarded (or connecting) now.
    forwarding: AtomicU64,
}

/// Counts one forwarding task while it lives.
struct Forwarding(Arc<State>);

impl Drop for Forwarding {
    fn drop(&mut self) {
        self.0.forwarding.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Proxy {
    /// Binds a listener on 127.0.0.1 and forwards to `target` on `rt`.
    pub fn start(rt: &tokio::runtime::Handle, target: SocketAddr) -> std::io::Result<Self> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let listen = listener.local_addr()?;
        let state = Arc::new(State {
            cut: AtomicBool::new(false),
            epoch: watch::channel(0).0,
            accepted: AtomicU64::new(0),
            forwarding: AtomicU64::new(0),
        });
        let st = state.clone();
        let accept = rt.spawn(async move {
            let listener = TcpListener::from_std(listener).expect("proxy listener");
            accept_loop(listener, target, st).await;
        });
        Ok(Self {
            listen,
            target,
            state,
            accept,
        })
    }

    /// Drops live connections; new ones are accepted and black-holed.
    /// Returns once every connection forwarded before has stopped (the
    /// proxy runs on another thread's runtime, so waiting here blocks
    /// nothing it needs), or after 5 s.
    pub fn cut(&self) {
        if !self.state.cut.swap(true, Ordering::SeqCst) {
            self.state.epoch.send_modify(|e| *e += 1);
        }
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while self.state.forwarding.load(Ordering::SeqCst) > 0
            && std::time::Instant::now() < deadline
        {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    }

    /// Forwards again (black-holed connections are closed first).
    pub fn heal(&self) {
        if self.state.cut.swap(false, Ordering::SeqCst) {
            self.state.epoch.send_modify(|e| *e += 1);
        }
    }

    pub fn is_cut(&self) -> bool {
        self.state.cut.load(Ordering::SeqCst)
    }

    /// Connections accepted so far (forwarded or black-holed).
    pub fn accepted(&self) -> u64 {
        self.state.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
        // Closes every connection of this proxy.
        self.state.epoch.send_modify(|e| *e += 1);
    }
}

async fn accept_loop(listener: TcpListener, target: SocketAddr, state: Arc<State>) {
    loop {
        let inbound = match listener.accept().await {
            Ok((s, _)) => s,
            Err(_) => {
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                continue;
            }
        };
        // Subscribe before reading the flag: a cut that lands after the
        // check bumps the epoch this receiver has not seen yet.
        let mut changed = state.epoch.subscribe();
        if state.cut.load(Ordering::SeqCst) {
            tokio::spawn(async move {
                let _held = inbound;
                let _ = changed.changed().await;
            });
            state.accepted.fetch_add(1, Ordering::SeqCst);
            continue;
        }
        state.accepted.fetch_add(1, Ordering::SeqCst);
        state.forwarding.fetch_add(1, Ordering::SeqCst);
        let guard = Forwarding(Arc::clone(&state));
        tokio::spawn(async move {
            let _guard = guard;
            let _ = inbound.set_nodelay(true);
            let mut inbound = inbound;
            let mut outbound = tokio::select! {
                r = TcpStream::connect(target) => match r {
                    Ok(s) => s,
                    Err(_) => return,
                },
                _ = changed.changed() => return,
            };
            let _ = outbound.set_nodelay(true);
            tokio::select! {
                _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                _ = changed.changed() => {}
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// An echo server; returns its address.
    async fn echo() -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                tokio::spawn(async move {
                    let (mut r, mut w) = s.split();
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                });
            }
        });
        addr
    }

    async fn round_trip(addr: SocketAddr) -> std::io::Result<Vec<u8>> {
        let mut s = TcpStream::connect(addr).await?;
        s.write_all(b"ping").await?;
        let mut buf = [0u8; 4];
        tokio::time::timeout(Duration::from_millis(500), s.read_exact(&mut buf))
            .await
            .map_err(|_| std::io::Error::other("timed out"))??;
        Ok(buf.to_vec())
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn forwards_cuts_and_heals() {
        let target = echo().await;
        let proxy = Proxy::start(&tokio::runtime::Handle::current(), target).unwrap();
        assert_eq!(round_trip(proxy.listen).await.unwrap(), b"ping");

        // A live connection dies at the cut.
        let mut live = TcpStream::connect(proxy.listen).await.unwrap();
        live.write_all(b"x").await.unwrap();
        let mut one = [0u8; 1];
        live.read_exact(&mut one).await.unwrap();
        proxy.cut();
        let n = tokio::time::timeout(Duration::from_secs(2), live.read(&mut one))
            .await
            .expect("closed promptly");
        assert!(
            matches!(n, Ok(0) | Err(_)),
            "live connection survived the cut"
        );

        // New connections are black-holed while cut.
        assert!(round_trip(proxy.listen).await.is_err());
        let before = proxy.accepted();
        let mut held = TcpStream::connect(proxy.listen).await.unwrap();
        while proxy.accepted() == before {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }

        proxy.heal();
        assert_eq!(round_trip(proxy.listen).await.unwrap(), b"ping");
        // The black-holed connection is closed at the heal.
        let n = tokio::time::timeout(Duration::from_secs(2), held.read(&mut one))
            .await
            .expect("closed promptly");
        assert!(matches!(n, Ok(0) | Err(_)));
        assert!(proxy.accepted() >= 5);
    }
}
