//! A cluster of real `stratad` processes: node ids `1..=n`, one data
//! directory each in a temporary directory, fixed client and peer ports for
//! the cluster's lifetime (kept across restarts), and optionally one
//! fault-injecting [`Proxy`] per ordered broker pair for network partitions.
//!
//! Queries that need a live broker go to every started broker in turn, with
//! short timeouts, so a dead or partitioned broker only costs a second.
//! When a test panics, dropping the cluster prints the tail of every
//! broker's log.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::{Duration, Instant};

use strata_proto::v1::admin_client::AdminClient;
use strata_proto::v1::{
    ClusterStatusRequest, ClusterStatusResponse, CreateTopicRequest, TopicDescription,
};
use tonic::Status;
use tonic::transport::Channel;

use crate::proxy::Proxy;
use crate::{BrokerProc, describe_status, error_code, free_port, read_partition_batches};

/// Failures worth trying again, possibly on another broker.
fn retriable(st: &Status) -> bool {
    match error_code(st).as_str() {
        "" => matches!(
            st.code(),
            tonic::Code::Unavailable
                | tonic::Code::Cancelled
                | tonic::Code::DeadlineExceeded
                | tonic::Code::Unknown
        ),
        "NOT_CONTROLLER" | "NOT_LEADER" | "TIMEOUT" | "SHUTTING_DOWN" | "NOT_ENOUGH_REPLICAS" => {
            true
        }
        _ => false,
    }
}

/// How to start a [`Cluster`].
#[derive(Debug, Clone, Default)]
pub struct ClusterOpts {
    /// Route peer traffic through one [`Proxy`] per ordered pair (i → j).
    pub proxied: bool,
    /// Flags given to every broker.
    pub extra: Vec<String>,
    /// TLS of every client connection (harness, clients, CLI) when the
    /// brokers run with TLS.
    pub client_tls: Option<strata_client::ClientTls>,
    /// Give every broker a Kafka listener (`kafka_bootstrap`).
    pub kafka: bool,
}

/// tonic's form of a client's TLS settings.
pub fn tonic_tls(t: &strata_client::ClientTls) -> tonic::transport::ClientTlsConfig {
    let mut c = tonic::transport::ClientTlsConfig::new()
        .ca_certificate(tonic::transport::Certificate::from_pem(&t.ca_pem));
    if let Some((cert, key)) = &t.identity {
        c = c.identity(tonic::transport::Identity::from_pem(cert, key));
    }
    c
}

/// One cluster at a time per test process: the tests of a binary run in
/// parallel, and several 3-broker clusters on a 2-core machine would miss
/// their Raft election timeouts.
static CLUSTER_SLOT: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(1);

/// Brokers `1..=n` forming one Raft cluster.
pub struct Cluster {
    _slot: tokio::sync::SemaphorePermit<'static>,
    dir: tempfile::TempDir,
    brokers: BTreeMap<u64, BrokerProc>,
    initial_cluster: BTreeMap<u64, String>,
    proxies: BTreeMap<(u64, u64), Proxy>,
    proxy_rt: Option<tokio::runtime::Runtime>,
    client_tls: Option<strata_client::ClientTls>,
}

/// `n` distinct free ports.
fn distinct_ports(n: usize) -> Vec<u16> {
    let mut ports: Vec<u16> = Vec::with_capacity(n);
    while ports.len() < n {
        let p = free_port();
        if !ports.contains(&p) {
            ports.push(p);
        }
    }
    ports
}

impl Cluster {
    /// Starts `n` brokers and waits until each serves (60 s each). Waits
    /// first until no other cluster of this test process runs.
    pub async fn start(n: usize, opts: ClusterOpts) -> Cluster {
        assert!(n >= 1, "a cluster needs a broker");
        let slot = CLUSTER_SLOT.acquire().await.expect("cluster slot");
        // The one crypto provider of every TLS connection in this process.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let dir = tempfile::tempdir().expect("tempdir");
        let ids: Vec<u64> = (1..=n as u64).collect();
        let ports = distinct_ports(3 * n);
        let addr = |p: u16| -> SocketAddr { format!("127.0.0.1:{p}").parse().expect("addr") };
        let client: BTreeMap<u64, SocketAddr> = ids
            .iter()
            .map(|&i| (i, addr(ports[i as usize - 1])))
            .collect();
        let peer: BTreeMap<u64, SocketAddr> = ids
            .iter()
            .map(|&i| (i, addr(ports[n + i as usize - 1])))
            .collect();

        let mut proxies = BTreeMap::new();
        let proxy_rt = opts.proxied.then(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .thread_name("test-proxy")
                .enable_all()
                .build()
                .expect("proxy runtime")
        });
        if let Some(rt) = &proxy_rt {
            for &i in &ids {
                for &j in ids.iter().filter(|&&j| j != i) {
                    let p = Proxy::start(rt.handle(), peer[&j]).expect("start proxy");
                    proxies.insert((i, j), p);
                }
            }
        }

        let mut brokers = BTreeMap::new();
        let mut initial_cluster = BTreeMap::new();
        for &i in &ids {
            let map = ids
                .iter()
                .map(|&j| {
                    let a = match proxies.get(&(i, j)) {
                        Some(p) => p.listen,
                        None => peer[&j],
                    };
                    format!("{j}={a}")
                })
                .collect::<Vec<_>>()
                .join(",");
            let mut flags = vec![
                "--node-id".to_string(),
                i.to_string(),
                "--peer-listen".to_string(),
                peer[&i].to_string(),
                "--advertise".to_string(),
                client[&i].to_string(),
                "--initial-cluster".to_string(),
                map.clone(),
            ];
            if opts.kafka {
                flags.push("--kafka-listen".to_string());
                flags.push(addr(ports[2 * n + i as usize - 1]).to_string());
            }
            flags.extend(opts.extra.iter().cloned());
            let data = dir.path().join(format!("node{i}"));
            let mut b = BrokerProc::with_addr(client[&i], &data, flags);
            b.set_client_tls(opts.client_tls.as_ref().map(tonic_tls));
            b.spawn();
            brokers.insert(i, b);
            initial_cluster.insert(i, map);
        }
        let mut cluster = Cluster {
            _slot: slot,
            dir,
            brokers,
            initial_cluster,
            proxies,
            proxy_rt,
            client_tls: opts.client_tls.clone(),
        };
        for b in cluster.brokers.values_mut() {
            b.wait_ready().await;
        }
        cluster
    }

    /// Starts one more broker (the next node id) that names the initial
    /// cluster but is not in it: it serves only once an admin adds it
    /// (`AddBroker`). Not proxied. Returns its id.
    pub fn spawn_joiner(&mut self, extra: &[String]) -> u64 {
        let id = self.brokers.keys().max().copied().unwrap_or(0) + 1;
        let ports = distinct_ports(2);
        let client: SocketAddr = format!("127.0.0.1:{}", ports[0]).parse().expect("addr");
        let peer: SocketAddr = format!("127.0.0.1:{}", ports[1]).parse().expect("addr");
        let first = *self.brokers.keys().next().expect("a broker");
        let map = self.initial_cluster[&first].clone();
        let flags = vec![
            "--node-id".to_string(),
            id.to_string(),
            "--peer-listen".to_string(),
            peer.to_string(),
            "--advertise".to_string(),
            client.to_string(),
            "--initial-cluster".to_string(),
            map.clone(),
        ];
        let flags = [flags, extra.to_vec()].concat();
        let data = self.dir.path().join(format!("node{id}"));
        let mut b = BrokerProc::with_addr(client, &data, flags);
        b.set_client_tls(self.client_tls.as_ref().map(tonic_tls));
        b.spawn();
        self.brokers.insert(id, b);
        self.initial_cluster.insert(id, map);
        id
    }

    /// Node ids, ascending.
    pub fn ids(&self) -> Vec<u64> {
        self.brokers.keys().copied().collect()
    }

    /// Ids of the brokers the harness started and has not stopped.
    pub fn running(&self) -> Vec<u64> {
        self.brokers
            .iter()
            .filter(|(_, b)| b.is_started())
            .map(|(&i, _)| i)
            .collect()
    }

    pub fn broker(&mut self, id: u64) -> &mut BrokerProc {
        self.brokers
            .get_mut(&id)
            .unwrap_or_else(|| panic!("no broker {id}"))
    }

    pub fn get(&self, id: u64) -> &BrokerProc {
        self.brokers
            .get(&id)
            .unwrap_or_else(|| panic!("no broker {id}"))
    }

    /// The temporary directory holding data directories and logs (a good
    /// place for the data directory of an extra broker).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn data_dir(&self, id: u64) -> PathBuf {
        self.get(id).data_dir.clone()
    }

    pub fn client_addr(&self, id: u64) -> SocketAddr {
        self.get(id).addr
    }

    /// The broker's own `--peer-listen` address.
    pub fn peer_addr(&self, id: u64) -> SocketAddr {
        self.get(id).peer_addr
    }

    /// The `--initial-cluster` value broker `id` was started with.
    pub fn initial_cluster(&self, id: u64) -> &str {
        &self.initial_cluster[&id]
    }

    /// Every client address, "addr1,addr2,addr3".
    pub fn bootstrap(&self) -> String {
        self.brokers
            .values()
            .map(|b| b.addr.to_string())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Every Kafka listener address, "addr1,addr2,addr3" (brokers started
    /// with `ClusterOpts::kafka`).
    pub fn kafka_bootstrap(&self) -> String {
        self.brokers
            .values()
            .filter_map(|b| b.kafka_addr())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// `(id, client address)` of every broker.
    pub fn client_addrs(&self) -> Vec<(u64, SocketAddr)> {
        self.brokers.iter().map(|(&i, b)| (i, b.addr)).collect()
    }

    /// A client configuration bootstrapping from every broker.
    pub fn client_config(&self) -> strata_client::ClientConfig {
        let mut c =
            strata_client::ClientConfig::new(self.brokers.values().map(|b| b.addr.to_string()));
        c.tls = self.client_tls.clone();
        c
    }

    // ------------------------------------------------------------ processes

    /// SIGKILL one broker.
    pub fn kill(&mut self, id: u64) {
        self.broker(id).kill();
    }

    /// SIGKILL every running broker at once, then reap them.
    pub fn kill_all(&mut self) {
        for b in self.brokers.values_mut() {
            b.signal_kill();
        }
        for b in self.brokers.values_mut() {
            b.kill();
        }
    }

    /// SIGTERM one broker and wait for it to exit.
    pub fn terminate(&mut self, id: u64) -> ExitStatus {
        self.broker(id).terminate()
    }

    /// SIGTERM every running broker, one after the other, asserting each
    /// exits 0.
    pub fn terminate_all(&mut self) {
        for (id, b) in self.brokers.iter_mut() {
            if b.is_started() {
                let status = b.terminate();
                assert!(
                    status.success(),
                    "broker {id} exited with {status} on SIGTERM:\n{}",
                    b.log_tail(80)
                );
            }
        }
    }

    /// SIGKILLs the broker if it runs, starts it again on the same ports
    /// and data directory, and waits until it serves.
    pub async fn restart(&mut self, id: u64) {
        self.broker(id).restart().await;
    }

    /// Starts every stopped broker, then waits until all serve (a cluster
    /// broker is ready only once a quorum runs, so they start together).
    pub async fn restart_all(&mut self) {
        for b in self.brokers.values_mut() {
            if !b.is_started() {
                b.spawn();
            }
        }
        for b in self.brokers.values_mut() {
            b.wait_ready().await;
        }
    }

    /// SIGKILLs the broker and deletes everything in its data directory.
    pub fn wipe(&mut self, id: u64) {
        let b = self.broker(id);
        b.kill();
        let dir = b.data_dir.clone();
        if dir.exists() {
            std::fs::remove_dir_all(&dir).expect("wipe data dir");
        }
        std::fs::create_dir_all(&dir).expect("recreate data dir");
    }

    // ------------------------------------------------------------ network

    /// The proxy carrying broker `from`'s peer traffic to broker `to`.
    pub fn proxy(&self, from: u64, to: u64) -> &Proxy {
        self.proxies
            .get(&(from, to))
            .unwrap_or_else(|| panic!("no proxy {from}->{to}: start with proxied: true"))
    }

    /// Cuts every proxy to and from `id`.
    pub fn isolate(&self, id: u64) {
        assert!(!self.proxies.is_empty(), "isolate needs a proxied cluster");
        for ((from, to), p) in &self.proxies {
            if *from == id || *to == id {
                p.cut();
            }
        }
    }

    /// Heals every proxy.
    pub fn heal_all(&self) {
        for p in self.proxies.values() {
            p.heal();
        }
    }

    // ------------------------------------------------------------ queries

    /// Calls `f` with an admin client on each running broker in turn until
    /// one answers with anything but a retriable failure (no connection,
    /// NOT_CONTROLLER, NOT_LEADER, TIMEOUT, SHUTTING_DOWN,
    /// NOT_ENOUGH_REPLICAS); after `timeout` the last failure.
    pub async fn admin_retry<T, F, Fut>(&self, timeout: Duration, mut f: F) -> Result<T, Status>
    where
        F: FnMut(AdminClient<Channel>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, Status>>,
    {
        let deadline = Instant::now() + timeout;
        let mut last = Status::unavailable("no broker running");
        loop {
            for id in self.running() {
                let admin = match self.get(id).try_admin().await {
                    Ok(a) => a,
                    Err(e) => {
                        last = Status::unavailable(format!("broker {id}: {e}"));
                        continue;
                    }
                };
                match f(admin).await {
                    Ok(r) => return Ok(r.into_inner()),
                    Err(st) if retriable(&st) => last = st,
                    Err(st) => return Err(st),
                }
            }
            if Instant::now() > deadline {
                return Err(last);
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// CreateTopic through [`admin_retry`](Self::admin_retry) (30 s).
    pub async fn create_topic(
        &self,
        name: &str,
        partitions: u32,
        replication_factor: u32,
    ) -> Result<TopicDescription, Status> {
        self.create_topic_with(name, partitions, replication_factor, &[])
            .await
    }

    /// As [`create_topic`](Self::create_topic), with topic configs.
    pub async fn create_topic_with(
        &self,
        name: &str,
        partitions: u32,
        replication_factor: u32,
        configs: &[(&str, &str)],
    ) -> Result<TopicDescription, Status> {
        let req = CreateTopicRequest {
            name: name.into(),
            partitions,
            replication_factor,
            configs: configs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        };
        let mut attempts = 0u32;
        let r = self
            .admin_retry(Duration::from_secs(30), |mut a| {
                attempts += 1;
                let req = req.clone();
                async move { a.create_topic(req).await }
            })
            .await;
        match r {
            Ok(r) => Ok(r.topic.unwrap_or_default()),
            // An attempt answered with a retriable error (the controller
            // lost its leadership while committing) may still have created
            // the topic: the retry then finds it, which is this create's
            // own success, as a Kafka client treats TOPIC_ALREADY_EXISTS
            // after a retried CreateTopics.
            Err(st) if attempts > 1 && st.code() == tonic::Code::AlreadyExists => {
                match self.describe(name).await {
                    Some(d) => Ok(d),
                    None => Err(st),
                }
            }
            Err(st) => Err(st),
        }
    }

    /// Creates a topic and waits until every partition is led and in sync.
    pub async fn create_in_sync(&self, name: &str, partitions: u32, rf: u32) {
        if let Err(st) = self.create_topic(name, partitions, rf).await {
            panic!(
                "create {name} ({partitions} partitions, rf {rf}): {}",
                describe_status(&st)
            );
        }
        self.wait_all_in_sync(name, Duration::from_secs(30)).await;
    }

    /// Each partition's high watermark as its leader reports it.
    pub async fn high_watermarks(&self, topic: &str) -> Vec<i64> {
        let d = self
            .describe(topic)
            .await
            .unwrap_or_else(|| panic!("no broker describes {topic}"));
        let mut out = Vec::new();
        for p in 0..d.partitions.len() as u32 {
            let l = self.wait_leader(topic, p, Duration::from_secs(30)).await;
            let ld =
                self.get(l).describe(topic).await.unwrap_or_else(|st| {
                    panic!("leader {l} of {topic}-{p}: {}", describe_status(&st))
                });
            let hw = ld
                .partitions
                .iter()
                .find(|x| x.partition == p)
                .unwrap_or_else(|| panic!("leader {l} does not describe {topic}-{p}"))
                .high_watermark;
            out.push(hw);
        }
        out
    }

    /// An admin client on the first running broker that accepts a
    /// connection.
    pub async fn admin(&self) -> AdminClient<Channel> {
        for id in self.running() {
            if let Ok(a) = self.get(id).try_admin().await {
                return a;
            }
        }
        panic!("no broker accepts connections:\n{}", self.logs(40));
    }

    /// DescribeTopic from the first running broker that answers.
    pub async fn describe(&self, topic: &str) -> Option<TopicDescription> {
        for id in self.running() {
            if let Ok(d) = self.get(id).describe(topic).await {
                return Some(d);
            }
        }
        None
    }

    /// ClusterStatus from the first running broker that answers.
    pub async fn cluster_status(&self) -> Option<ClusterStatusResponse> {
        for id in self.running() {
            if let Ok(mut a) = self.get(id).try_admin().await
                && let Ok(r) = a.cluster_status(ClusterStatusRequest {}).await
            {
                return Some(r.into_inner());
            }
        }
        None
    }

    /// The leader of a partition as broker `via` reports it (0 and missing
    /// answers are `None`).
    pub async fn leader_via(&self, via: u64, topic: &str, partition: u32) -> Option<u64> {
        let d = self.get(via).describe(topic).await.ok()?;
        let p = d.partitions.iter().find(|p| p.partition == partition)?;
        (p.leader != 0).then_some(p.leader)
    }

    /// The partition's leader: a running broker named leader by some
    /// running broker that also names itself leader.
    pub async fn leader_of(&self, topic: &str, partition: u32) -> Option<u64> {
        let running = self.running();
        for &via in &running {
            let Some(l) = self.leader_via(via, topic, partition).await else {
                continue;
            };
            if !running.contains(&l) {
                continue;
            }
            if l == via || self.leader_via(l, topic, partition).await == Some(l) {
                return Some(l);
            }
        }
        None
    }

    /// Why the cluster cannot be healthy any more: a broker the harness
    /// started has exited, or a broker logged a panic.
    pub fn broken(&self) -> Option<String> {
        for (id, b) in &self.brokers {
            if b.is_started() && b.has_died() {
                return Some(format!("broker {id} exited unexpectedly"));
            }
            if let Some(line) = b.panic_line() {
                return Some(format!("broker {id} panicked: {line}"));
            }
        }
        None
    }

    /// Panics with the logs if [`broken`](Self::broken).
    pub fn assert_not_broken(&self) {
        if let Some(why) = self.broken() {
            panic!("{why}\n{}", self.logs(80));
        }
    }

    /// Waits for [`leader_of`](Self::leader_of); panics with the brokers'
    /// logs on timeout.
    pub async fn wait_leader(&self, topic: &str, partition: u32, timeout: Duration) -> u64 {
        let deadline = Instant::now() + timeout;
        let mut last_check = Instant::now();
        loop {
            if let Some(l) = self.leader_of(topic, partition).await {
                return l;
            }
            if last_check.elapsed() > Duration::from_secs(2) {
                self.assert_not_broken();
                last_check = Instant::now();
            }
            if Instant::now() > deadline {
                panic!(
                    "no leader for {topic}-{partition} within {timeout:?}; describe: {:?}\n{}",
                    self.describe(topic).await,
                    self.logs(60)
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Why `topic` is not fully in sync, as each partition's leader sees
    /// it; `None` when every partition has a running leader, isr equals
    /// replicas (all running), and the high watermark equals the log end.
    pub async fn not_in_sync(&self, topic: &str) -> Option<String> {
        let Some(d) = self.describe(topic).await else {
            return Some(format!("no broker describes {topic}"));
        };
        if d.partitions.is_empty() {
            return Some(format!("{topic} has no partitions"));
        }
        let running = self.running();
        for p in &d.partitions {
            let l = p.leader;
            if l == 0 || !running.contains(&l) {
                return Some(format!("partition {} has leader {l}", p.partition));
            }
            // The leader's own view of isr, hw and log end.
            let Ok(ld) = self.get(l).describe(topic).await else {
                return Some(format!("leader {l} of {} does not answer", p.partition));
            };
            let Some(lp) = ld.partitions.iter().find(|x| x.partition == p.partition) else {
                return Some(format!(
                    "leader {l} does not know partition {}",
                    p.partition
                ));
            };
            let mut isr = lp.isr.clone();
            let mut replicas = lp.replicas.clone();
            isr.sort_unstable();
            replicas.sort_unstable();
            if lp.leader != l
                || isr != replicas
                || lp.high_watermark != lp.log_end_offset
                || replicas.iter().any(|r| !running.contains(r))
            {
                return Some(format!("partition {} per broker {l}: {lp:?}", p.partition));
            }
        }
        None
    }

    /// Waits until every partition of `topic` has a leader, isr ==
    /// replicas, and high watermark == log end offset; panics with the
    /// last state and the brokers' logs on timeout.
    pub async fn wait_all_in_sync(&self, topic: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let mut last_check = Instant::now();
        loop {
            let Some(why) = self.not_in_sync(topic).await else {
                return;
            };
            if last_check.elapsed() > Duration::from_secs(2) {
                self.assert_not_broken();
                last_check = Instant::now();
            }
            if Instant::now() > deadline {
                panic!(
                    "{topic} not in sync within {timeout:?}: {why}\n{}",
                    self.logs(60)
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The batches of a partition in broker `id`'s segment files (stopped
    /// or running), each as its bytes, in log order.
    pub fn partition_batches(&self, id: u64, topic: &str, partition: u32) -> Vec<Vec<u8>> {
        read_partition_batches(&self.get(id).data_dir, topic, partition)
    }

    /// The last `lines` lines of every broker's log, labelled.
    pub fn logs(&self, lines: usize) -> String {
        let mut out = String::new();
        for (id, b) in &self.brokers {
            out.push_str(&format!(
                "----- broker {id} ({}) log tail -----\n{}\n",
                b.log_path.display(),
                b.log_tail(lines)
            ));
        }
        out
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.logs(150));
            // Data directories and full logs stay for a post-mortem.
            self.dir.disable_cleanup(true);
            eprintln!(
                "kept {} (data directories and logs)",
                self.dir.path().display()
            );
        }
        for b in self.brokers.values_mut() {
            b.kill();
        }
        self.proxies.clear();
        if let Some(rt) = self.proxy_rt.take() {
            rt.shutdown_background();
        }
    }
}
