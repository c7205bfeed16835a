//! Peer transport: one long-lived client stream per destination broker
//! carrying every Raft message of one event-loop cycle in one `RaftBatch`.
//! Sends never block the event loop: a full queue drops the batch (Raft
//! retransmits) and a broken link reconnects with backoff.
//!
//! Between batches, a keepalive task sends every peer an empty batch every
//! [`KEEPALIVE_EVERY`] while the event loop ticks (`loop_ticked`), so that
//! a loop running a few hundred milliseconds late (a long cycle, a
//! CPU-starved host) is not taken for a dead broker; a loop stalled for
//! [`LOOP_STALL`] stops them, and its peers treat it as silent.
//!
//! An in-memory mode (`Transport::in_memory`) hands every batch to a
//! caller-supplied router instead (tests run whole clusters in a process).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use strata_proto::v1::peer_client::PeerClient;
use strata_proto::v1::{LeaderNotice, RaftBatch, RaftEnvelope};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::node::{Cmd, RaftHandle};
use super::storage::decode_message;
use crate::error::BrokerError;
use crate::raft::directory::Directory;

/// Batches queued per peer before new ones are dropped.
const QUEUE: usize = 1024;
const MAX_MESSAGE: usize = 256 << 20;

/// How often the keepalive task sends each peer an empty batch (as often
/// as the event loop's own broker heartbeats).
const KEEPALIVE_EVERY: Duration = Duration::from_millis(100);

/// The keepalive task stops while the event loop has not ticked for this
/// long: peers then see this broker silent (`quiesce::WAKE_AFTER` later)
/// and its groups' followers take over, as for a dead broker. Below an
/// election timeout (1–2 s): a stuck loop is replaced about as fast as a
/// leader's missed heartbeats would have it replaced.
const LOOP_STALL: Duration = Duration::from_secs(1);

/// Delivers a batch to broker `to` (in-memory mode).
pub type Router = Arc<dyn Fn(u64, RaftBatch) + Send + Sync>;

/// How batches leave this broker.
enum Mode {
    /// One gRPC stream per peer, spawned on this runtime; the connector
    /// builds each peer's endpoint at every connect (where mutual TLS is
    /// set up, its files are read again).
    Grpc(tokio::runtime::Handle, Connector),
    /// Handed synchronously to the router.
    InMemory(Router),
}

struct Link {
    tx: mpsc::Sender<RaftBatch>,
}

pub struct Transport {
    node_id: u64,
    fingerprint: String,
    mode: Mode,
    addrs: RwLock<HashMap<u64, String>>,
    links: RwLock<HashMap<u64, Link>>,
    /// Peers whose link failed since the loop last asked.
    unreachable: Arc<std::sync::Mutex<Vec<u64>>>,
    /// When the event loop last ticked, in milliseconds since `epoch`.
    loop_ticked_ms: AtomicU64,
    epoch: Instant,
}

/// Makes the endpoint for a peer address (scheme and TLS included).
pub type Connector = Arc<dyn Fn(&str) -> Result<tonic::transport::Endpoint, String> + Send + Sync>;

impl Transport {
    pub fn new(
        node_id: u64,
        fingerprint: String,
        runtime: tokio::runtime::Handle,
        addrs: HashMap<u64, String>,
        connect: Connector,
    ) -> Self {
        Self {
            node_id,
            fingerprint,
            mode: Mode::Grpc(runtime, connect),
            addrs: RwLock::new(addrs),
            links: RwLock::default(),
            unreachable: Arc::default(),
            loop_ticked_ms: AtomicU64::new(0),
            epoch: Instant::now(),
        }
    }

    /// A transport that passes every batch to `router` on the sending
    /// thread instead of a network. `peers` are the other brokers (their
    /// addresses read as `mem:<id>`); peers added later are reachable too.
    pub fn in_memory(
        node_id: u64,
        fingerprint: String,
        router: Router,
        peers: impl IntoIterator<Item = u64>,
    ) -> Self {
        let addrs = peers
            .into_iter()
            .filter(|id| *id != node_id)
            .map(|id| (id, format!("mem:{id}")))
            .collect();
        Self {
            node_id,
            fingerprint,
            mode: Mode::InMemory(router),
            addrs: RwLock::new(addrs),
            links: RwLock::default(),
            unreachable: Arc::default(),
            loop_ticked_ms: AtomicU64::new(0),
            epoch: Instant::now(),
        }
    }

    /// Records that the event loop ticked (see [`Self::spawn_keepalive`]).
    pub fn loop_ticked(&self) {
        // 0 stands for "never".
        let ms = (self.epoch.elapsed().as_millis() as u64).max(1);
        self.loop_ticked_ms.store(ms, Ordering::Relaxed);
    }

    /// Whether the event loop ticked within [`LOOP_STALL`].
    fn loop_alive(&self) -> bool {
        let last = self.loop_ticked_ms.load(Ordering::Relaxed);
        let now = self.epoch.elapsed().as_millis() as u64;
        last > 0 && now.saturating_sub(last) < LOOP_STALL.as_millis() as u64
    }

    /// Starts the keepalive task (gRPC mode; in-memory clusters are driven
    /// by their loops alone). It ends with the transport.
    pub fn spawn_keepalive(self: &Arc<Self>) {
        let Mode::Grpc(runtime, _) = &self.mode else {
            return;
        };
        let me = Arc::downgrade(self);
        runtime.spawn(async move {
            let mut every = tokio::time::interval(KEEPALIVE_EVERY);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            loop {
                every.tick().await;
                let Some(t) = me.upgrade() else { return };
                if !t.loop_alive() {
                    continue;
                }
                for peer in t.peer_ids() {
                    t.send(peer, Vec::new(), Vec::new());
                }
            }
        });
    }

    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// Learns a peer address (brokers added after bootstrap). Addresses
    /// given at start take precedence.
    pub fn add_peer(&self, id: u64, addr: &str) {
        if id == self.node_id {
            return;
        }
        let mut a = self.addrs.write().unwrap_or_else(|e| e.into_inner());
        a.entry(id).or_insert_with(|| addr.to_owned());
    }

    pub fn remove_peer(&self, id: u64) {
        self.addrs
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&id);
        self.links
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&id);
    }

    pub fn peer_addr(&self, id: u64) -> Option<String> {
        self.addrs
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&id)
            .cloned()
    }

    pub fn peer_ids(&self) -> Vec<u64> {
        self.addrs
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .keys()
            .copied()
            .filter(|id| *id != self.node_id)
            .collect()
    }

    /// Queues one batch for `to`; drops it when the link is saturated.
    pub fn send(&self, to: u64, messages: Vec<RaftEnvelope>, leaders: Vec<LeaderNotice>) {
        let batch = RaftBatch {
            from: self.node_id,
            cluster: self.fingerprint.clone(),
            messages,
            leaders,
            to,
        };
        let (runtime, connect) = match &self.mode {
            Mode::Grpc(rt, connect) => (rt, connect),
            Mode::InMemory(router) => {
                if self.peer_addr(to).is_some() {
                    router(to, batch);
                }
                return;
            }
        };
        {
            let links = self.links.read().unwrap_or_else(|e| e.into_inner());
            if let Some(l) = links.get(&to) {
                let _ = l.tx.try_send(batch);
                return;
            }
        }
        let Some(addr) = self.peer_addr(to) else {
            return;
        };
        let (tx, rx) = mpsc::channel(QUEUE);
        let _ = tx.try_send(batch);
        let unreachable = Arc::clone(&self.unreachable);
        runtime.spawn(pump(to, addr, Arc::clone(connect), rx, unreachable));
        self.links
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(to, Link { tx });
    }

    /// Peers whose link broke since the last call.
    pub fn take_unreachable(&self) -> Vec<u64> {
        std::mem::take(&mut *self.unreachable.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

/// Connects to `addr` and streams batches from `rx`, reconnecting on error.
async fn pump(
    to: u64,
    addr: String,
    connect: Connector,
    mut rx: mpsc::Receiver<RaftBatch>,
    unreachable: Arc<std::sync::Mutex<Vec<u64>>>,
) {
    let mut backoff = Duration::from_millis(50);
    loop {
        let endpoint = match connect(&addr) {
            Ok(e) => e
                .connect_timeout(Duration::from_secs(1))
                .tcp_nodelay(true)
                .http2_keep_alive_interval(Duration::from_secs(1))
                .keep_alive_timeout(Duration::from_secs(2))
                .initial_stream_window_size(Some(16 << 20))
                .initial_connection_window_size(Some(32 << 20)),
            Err(e) => {
                // A bad address, or TLS files caught mid-rotation: retry.
                tracing::warn!(peer = to, addr = %addr, error = %e, "cannot set up the peer link");
                if rx.is_closed() {
                    return;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        // Bounded as a whole: the connect timeout covers TCP only, and a
        // TLS handshake with a peer that is not serving yet would hang.
        let connected = tokio::time::timeout(Duration::from_secs(2), endpoint.connect())
            .await
            .map_err(|_| "connect timed out".to_string())
            .and_then(|r| r.map_err(|e| e.to_string()));
        match connected {
            Ok(ch) => {
                backoff = Duration::from_millis(50);
                let mut client = PeerClient::new(ch)
                    .max_encoding_message_size(MAX_MESSAGE)
                    .max_decoding_message_size(MAX_MESSAGE);
                let (tx2, rx2) = mpsc::channel::<RaftBatch>(64);
                let mut call =
                    tokio::spawn(async move { client.raft(ReceiverStream::new(rx2)).await });
                loop {
                    tokio::select! {
                        m = rx.recv() => match m {
                            Some(b) => {
                                if tx2.send(b).await.is_err() {
                                    break;
                                }
                            }
                            None => {
                                call.abort();
                                return;
                            }
                        },
                        r = &mut call => {
                            if let Ok(Err(st)) = r {
                                if st.code() == tonic::Code::FailedPrecondition {
                                    tracing::error!(peer = to, addr = %addr, "peer refused this broker: {}", st.message());
                                } else {
                                    tracing::debug!(peer = to, error = %st, "peer stream ended");
                                }
                            }
                            break;
                        }
                    }
                }
                call.abort();
            }
            Err(e) => {
                tracing::debug!(peer = to, addr = %addr, error = %e, "cannot reach peer");
            }
        }
        unreachable
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(to);
        // Drop what queued up while the peer was away (Raft resends).
        let deadline = tokio::time::Instant::now() + backoff;
        while let Ok(Some(_)) = tokio::time::timeout_at(deadline, rx.recv()).await {}
        if rx.is_closed() {
            return;
        }
        backoff = (backoff * 2).min(Duration::from_secs(1));
    }
}

/// Hands a batch received from broker `b.from` to the event loop of broker
/// `me`: records the sender's liveness and its leader notices, and turns
/// quiesce notices and checked Raft messages into commands. Messages that
/// are invalid or not addressed to `me` are dropped and described in the
/// returned list. Errors only when the event loop is gone.
pub fn deliver(
    me: u64,
    b: RaftBatch,
    directory: &Directory,
    raft: &RaftHandle,
) -> Result<Vec<String>, BrokerError> {
    directory.saw(b.from);
    for n in &b.leaders {
        directory.set_leader(&n.topic, n.partition, n.leader, n.term);
    }
    let mut dropped = Vec::new();
    let mut msgs = Vec::with_capacity(b.messages.len());
    for env in b.messages {
        if env.quiesce {
            raft.send(Cmd::Quiesce {
                key: (env.topic, env.partition),
                from: b.from,
                term: env.quiesce_term,
                index: env.quiesce_index,
            })?;
            continue;
        }
        match decode_message(&env.message) {
            Ok(m) if m.to == me && m.from == b.from => msgs.push(((env.topic, env.partition), m)),
            Ok(m) => dropped.push(format!(
                "misaddressed {:?} {} -> {} in a batch {} -> {me}",
                m.get_msg_type(),
                m.from,
                m.to,
                b.from
            )),
            Err(e) => dropped.push(format!("invalid message {} -> {me}: {e}", b.from)),
        }
    }
    if !msgs.is_empty() {
        raft.send(Cmd::Step(msgs))?;
    }
    Ok(dropped)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_keepalive_follows_the_loops_ticks() {
        let router: Router = Arc::new(|_, _| {});
        let t = Transport::in_memory(1, "test".into(), router, [1, 2, 3]);
        assert!(!t.loop_alive(), "no tick yet");
        t.loop_ticked();
        assert!(t.loop_alive());
        // A loop whose last tick is older than the stall limit.
        t.loop_ticked_ms.store(1, Ordering::Relaxed);
        std::thread::sleep(Duration::from_millis(2));
        let stalled = Instant::now() + LOOP_STALL + Duration::from_millis(500);
        while Instant::now() < stalled && t.loop_alive() {
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(
            !t.loop_alive(),
            "a loop stalled for {LOOP_STALL:?} is not alive"
        );
    }
}
