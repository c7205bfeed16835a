//! Harness for integration tests: spawns real `stratad` processes on
//! free 127.0.0.1 ports, kills them (SIGKILL) or stops them (SIGTERM),
//! restarts them on the same data directory, and runs the `strata` CLI.
//!
//! Binaries are taken from the cargo target directory of the running test
//! (`cargo test --workspace` builds them first).
//!
//! Multi-broker clusters (with fault-injecting peer proxies), a tracked
//! `acks=all` load generator and on-disk log readers live in the modules
//! below and are re-exported here.

mod cluster;
mod load;
pub mod netns;
mod proxy;
pub mod s3;
mod segments;
pub mod tools;

pub use cluster::{Cluster, ClusterOpts, tonic_tls};
pub use load::{
    Acked, LoadReport, ProduceLoad, assert_replicas_identical, batch_of, check_acked,
    read_partition, replicas_converged, wait_replicas_converged,
};
pub use netns::{NetnsCluster, NsBroker, netns_or_skip};
pub use proxy::Proxy;

/// Runs `strata tls gen --out DIR --hosts 127.0.0.1,localhost` with
/// `extra` arguments (a CA, a broker and a client certificate); returns DIR.
pub fn tls_gen(dir: &Path, extra: &[&str]) -> PathBuf {
    let out = dir.to_str().expect("utf-8 path");
    let mut args = vec!["tls", "gen", "--out", out, "--hosts", "127.0.0.1,localhost"];
    args.extend_from_slice(extra);
    let o = run_cli("127.0.0.1:1", &args, None);
    assert!(
        o.status.success(),
        "strata tls gen failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    dir.to_owned()
}

/// `stratad` flags for TLS with the material [`tls_gen`] wrote to `dir`.
pub fn tls_broker_flags(dir: &Path, client_auth: &str) -> Vec<String> {
    let p = |n: &str| dir.join(n).display().to_string();
    vec![
        "--tls-cert".into(),
        p("broker.pem"),
        "--tls-key".into(),
        p("broker-key.pem"),
        "--tls-ca".into(),
        p("ca.pem"),
        "--tls-client-auth".into(),
        client_auth.into(),
    ]
}

/// A client trusting the CA in `ca_dir` and presenting the client
/// certificate of `id_dir` (if any), both made by [`tls_gen`].
pub fn client_tls(ca_dir: &Path, id_dir: Option<&Path>) -> strata_client::ClientTls {
    let read = |p: PathBuf| std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    let t = strata_client::ClientTls::new(read(ca_dir.join("ca.pem")));
    match id_dir {
        Some(d) => t.identity(read(d.join("client.pem")), read(d.join("client-key.pem"))),
        None => t,
    }
}

/// Produces `values` to `topic`-`partition` (acks=all) and returns each
/// one's offset, in order; panics on any failure.
pub async fn produce_acked(
    cfg: strata_client::ClientConfig,
    topic: &str,
    partition: u32,
    values: &[String],
) -> Vec<i64> {
    let producer = strata_client::Producer::new(cfg, strata_client::ProducerConfig::default())
        .await
        .expect("producer");
    let mut acks = Vec::new();
    for v in values {
        let rec = strata_client::ProducerRecord::new(topic, v.clone()).partition(partition);
        acks.push(producer.send(rec).await.expect("send"));
    }
    producer.flush().await.expect("flush");
    let mut offsets = Vec::new();
    for a in acks {
        offsets.push(a.await.expect("acknowledged").offset);
    }
    producer.close().await.expect("close producer");
    offsets
}

/// The first `n` records of `topic`-`partition` from its earliest offset,
/// as (offset, value), read with a [`strata_client::Consumer`]; panics when
/// no record arrives for 20 s.
pub async fn consume_earliest(
    cfg: strata_client::ClientConfig,
    topic: &str,
    partition: u32,
    n: usize,
) -> Vec<(i64, String)> {
    use futures::StreamExt;
    let mut consumer = strata_client::Consumer::new(cfg, strata_client::ConsumerConfig::default())
        .expect("consumer");
    consumer
        .assign(topic, partition, strata_client::StartOffset::Earliest)
        .await
        .expect("assign");
    let mut got = Vec::new();
    let mut stream = consumer.records();
    while got.len() < n {
        let r = tokio::time::timeout(Duration::from_secs(20), stream.next())
            .await
            .unwrap_or_else(|_| panic!("consumer stalled after {} records", got.len()))
            .expect("stream open")
            .expect("record");
        let v = String::from_utf8_lossy(r.value.as_deref().unwrap_or_default()).into_owned();
        got.push((r.offset, v));
    }
    got
}
pub use segments::{BatchSummary, read_partition_batches, summarize};

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use prost::Message as _;
use strata_proto::v1::admin_client::AdminClient;
use strata_proto::v1::broker_client::BrokerClient;
use strata_proto::v1::groups_client::GroupsClient;
use strata_proto::v1::{DescribeTopicRequest, ErrorInfo, ListTopicsRequest, TopicDescription};
use tonic::transport::{Channel, Endpoint};

/// Directory holding the workspace binaries (next to `deps/`).
pub fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let mut dir = exe.parent().expect("exe dir").to_path_buf();
    if dir.ends_with("deps") {
        dir.pop();
    }
    dir
}

pub fn bin(name: &str) -> PathBuf {
    let p = bin_dir().join(name);
    assert!(
        p.exists(),
        "{} is missing: build the workspace binaries first (cargo build --bins)",
        p.display()
    );
    p
}

/// A free port on 127.0.0.1 for a broker to listen on.
///
/// Ports come from below the kernel's ephemeral range: a port taken from
/// that range (`bind(0)`) is released before the broker binds it, and in
/// between any outgoing connection on this machine may be given it as its
/// local port. Below the range only explicit binds compete; each test
/// process walks its own stride of the range (seeded by its pid) and checks
/// that the port binds before handing it out.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let (lo, hi) = harness_port_range();
    let span = u32::from(hi - lo);
    let seed = std::process::id().wrapping_mul(7919);
    for _ in 0..span {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = lo + (seed.wrapping_add(n) % span) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    // Every port of the range is taken: fall back to the ephemeral range.
    TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// The ports [`free_port`] hands out: from 12000 up to the start of the
/// kernel's ephemeral range (32768 unless configured otherwise).
fn harness_port_range() -> (u16, u16) {
    let ephemeral_lo = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    if ephemeral_lo > 14000 {
        (12000, ephemeral_lo)
    } else {
        (49152, 65535)
    }
}

/// `GET path` over plain HTTP/1.0 from `addr` (an HTTP listener):
/// (status, body), or `None` when it cannot be reached in 5 s.
pub async fn http_get(addr: &str, path: &str) -> Option<(u16, String)> {
    http_get_with_head(addr, path)
        .await
        .map(|(status, _, body)| (status, body))
}

/// As [`http_get`], with the status line and headers.
pub async fn http_get_with_head(addr: &str, path: &str) -> Option<(u16, String, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let exchange = async {
        let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
        s.write_all(format!("GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").as_bytes())
            .await
            .ok()?;
        let mut out = String::new();
        s.read_to_string(&mut out).await.ok()?;
        Some(out)
    };
    let out = tokio::time::timeout(Duration::from_secs(5), exchange)
        .await
        .ok()??;
    let (head, body) = out.split_once("\r\n\r\n")?;
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, head.to_owned(), body.to_owned()))
}

/// The Compose command of this machine: the `docker compose` plugin, else
/// the standalone `docker-compose`; `None` when there is neither (or no
/// Docker engine).
pub fn compose_command() -> Option<Command> {
    let engine = Command::new("docker").arg("info").output();
    if !engine.is_ok_and(|o| o.status.success()) {
        return None;
    }
    let works = |c: &mut Command| c.arg("version").output().is_ok_and(|o| o.status.success());
    if works(Command::new("docker").arg("compose")) {
        let mut c = Command::new("docker");
        c.arg("compose");
        return Some(c);
    }
    works(&mut Command::new("docker-compose")).then(|| Command::new("docker-compose"))
}

/// Prefix of the lines the harness writes into a broker's log.
const HARNESS_LINE: &str = "=== harness:";

/// A `stratad` process with its data directory. Its client address, peer
/// address and flags stay the same across restarts.
pub struct BrokerProc {
    child: Option<Child>,
    pub addr: SocketAddr,
    /// The `--peer-listen` address the broker binds.
    pub peer_addr: SocketAddr,
    pub data_dir: PathBuf,
    pub log_path: PathBuf,
    /// Flags after `--data-dir` and `--listen`.
    extra: Vec<String>,
    /// TLS of the harness's own connections (`None`: plaintext).
    tls: Option<tonic::transport::ClientTlsConfig>,
}

/// The value following `flag` in `args`, if present.
fn flag_value<'a>(args: &'a [String], flag: &str) -> Option<&'a str> {
    args.iter()
        .position(|a| a == flag)
        .and_then(|i| args.get(i + 1))
        .map(String::as_str)
}

impl BrokerProc {
    /// Starts a broker on a fresh port with `data_dir` and extra flags, and
    /// waits until it serves. Unless `extra` names one, the broker also gets
    /// a fresh `--peer-listen` port so that parallel tests never collide.
    pub async fn start(data_dir: &Path, extra: &[&str]) -> Self {
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
        let mut flags: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        if flag_value(&flags, "--peer-listen").is_none() {
            flags.push("--peer-listen".into());
            flags.push(format!("127.0.0.1:{}", free_port()));
        }
        let mut b = Self::with_addr(addr, data_dir, flags);
        b.spawn();
        b.wait_ready().await;
        b
    }

    /// A broker that will listen for clients on `addr` with `data_dir` and
    /// `flags` (everything but `--data-dir` and `--listen`). Not started:
    /// call [`spawn`](Self::spawn) and [`wait_ready`](Self::wait_ready).
    /// `flags` should contain `--peer-listen`.
    pub fn with_addr(addr: SocketAddr, data_dir: &Path, flags: Vec<String>) -> Self {
        let peer_addr = flag_value(&flags, "--peer-listen")
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| "127.0.0.1:9293".parse().expect("addr"));
        Self {
            child: None,
            tls: None,
            addr,
            peer_addr,
            data_dir: data_dir.to_path_buf(),
            log_path: data_dir.with_extension("log"),
            extra: flags,
        }
    }

    /// The full `stratad` argument list this broker runs with.
    pub fn args(&self) -> Vec<String> {
        let mut args = vec![
            "--data-dir".to_string(),
            self.data_dir.display().to_string(),
            "--listen".to_string(),
            self.addr.to_string(),
        ];
        args.extend(self.extra.iter().cloned());
        if flag_value(&self.extra, "--http-listen").is_none() {
            // Several brokers share this machine: no fixed HTTP port.
            args.extend(["--http-listen".to_string(), "127.0.0.1:0".to_string()]);
        }
        if flag_value(&self.extra, "--kafka-listen").is_none() {
            // Nor a fixed Kafka port: tests of the Kafka listener name one.
            args.extend(["--kafka-listen".to_string(), "off".to_string()]);
        }
        args
    }

    /// The `--kafka-listen` address, if the broker has a Kafka listener.
    pub fn kafka_addr(&self) -> Option<String> {
        flag_value(&self.extra, "--kafka-listen")
            .filter(|a| *a != "off")
            .map(str::to_owned)
    }

    /// The flags after `--data-dir` and `--listen`.
    pub fn flags(&self) -> &[String] {
        &self.extra
    }

    /// Replaces the flags used by the next (re)start.
    pub fn set_flags(&mut self, flags: Vec<String>) {
        self.extra = flags;
    }

    /// Launches the process without waiting for it to serve.
    pub fn spawn(&mut self) {
        assert!(self.child.is_none(), "broker is already running");
        let mut log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .expect("open broker log");
        {
            use std::io::Write;
            let _ = writeln!(log, "{HARNESS_LINE} stratad {}", self.args().join(" "));
        }
        let child = Command::new(bin("stratad"))
            .args(self.args())
            .env("STRATA_LOG_LEVEL", "info")
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .expect("spawn stratad");
        self.child = Some(child);
    }

    /// Whether the harness started the process and has not stopped it
    /// (it may still have exited by itself: see [`exited`](Self::exited)).
    pub fn is_started(&self) -> bool {
        self.child.is_some()
    }

    /// The exit status if the started process has exited by itself.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    /// Waits up to `timeout` for the process to exit by itself (for brokers
    /// expected to refuse to run); `None` if it still runs.
    pub async fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.exited() {
                self.child = None;
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Whether the started process is gone or a zombie, without reaping it
    /// (so it works through `&self`; Linux `/proc`).
    pub fn has_died(&self) -> bool {
        let Some(pid) = self.pid() else {
            return false;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            return true;
        };
        // "pid (comm) S ...": the state follows the last ')'.
        let state = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.trim_start().chars().next());
        matches!(state, Some('Z' | 'X') | None)
    }

    /// The first panic the log reports (its line and the message line
    /// after it), if any.
    pub fn panic_line(&self) -> Option<String> {
        let log = self.log();
        let mut lines = log.lines();
        let at = lines.find(|l| l.contains("panicked at"))?;
        Some(match lines.next() {
            Some(msg) => format!("{at} {msg}"),
            None => at.to_string(),
        })
    }

    /// Process id of the running process.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn endpoint(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    /// Makes the harness's own connections to this broker use TLS.
    pub fn set_client_tls(&mut self, tls: Option<tonic::transport::ClientTlsConfig>) {
        self.tls = tls;
    }

    fn endpoint_with_tls(&self) -> Endpoint {
        let ep = Endpoint::from_shared(self.endpoint()).expect("endpoint");
        match &self.tls {
            Some(t) => ep.tls_config(t.clone()).expect("client TLS"),
            None => ep,
        }
    }

    /// The broker's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// What the process printed (the log without the harness's own lines).
    pub fn output(&self) -> String {
        self.log()
            .lines()
            .filter(|l| !l.starts_with(HARNESS_LINE))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// The last `lines` lines of the broker's log.
    pub fn log_tail(&self, lines: usize) -> String {
        let log = self.log();
        let all: Vec<&str> = log.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// Waits until the broker answers an admin call.
    pub async fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(c) = self.child.as_mut()
                && let Ok(Some(status)) = c.try_wait()
            {
                panic!("stratad exited early with {status}:\n{}", self.log());
            }
            let request = ListTopicsRequest {
                include_internal: false,
            };
            if let Ok(mut a) = self.try_admin().await
                && let Ok(Ok(_)) =
                    tokio::time::timeout(Duration::from_secs(5), a.list_topics(request)).await
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "stratad did not become ready:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGKILL, no chance to flush anything.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGSTOP: the process keeps its sockets but answers nothing.
    pub fn pause(&self) {
        self.signal(libc::SIGSTOP);
    }

    /// SIGCONT after [`pause`](Self::pause).
    pub fn resume(&self) {
        self.signal(libc::SIGCONT);
    }

    fn signal(&self, sig: libc::c_int) {
        let c = self.child.as_ref().expect("broker is running");
        let pid = libc::pid_t::try_from(c.id()).expect("pid fits pid_t");
        // SAFETY: kill(2) on the pid of our own, not yet reaped child.
        let rc = unsafe { libc::kill(pid, sig) };
        assert_eq!(rc, 0, "signal {sig} to pid {pid}");
    }

    /// Sends SIGKILL without waiting; [`kill`](Self::kill) reaps it.
    pub fn signal_kill(&mut self) {
        if let Some(c) = self.child.as_mut() {
            let _ = c.kill();
        }
    }

    /// SIGTERM and wait for the exit status.
    pub fn terminate(&mut self) -> ExitStatus {
        self.signal(libc::SIGTERM);
        let mut c = self.child.take().expect("broker is running");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(s)) = c.try_wait() {
                return s;
            }
            if Instant::now() > deadline {
                let _ = c.kill();
                panic!("stratad ignored SIGTERM:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts the broker again on the same ports, flags and data directory
    /// (SIGKILLs it first if it runs).
    pub async fn restart(&mut self) {
        self.kill();
        self.spawn();
        self.wait_ready().await;
    }

    pub async fn admin(&self) -> AdminClient<Channel> {
        AdminClient::new(self.endpoint_with_tls().connect().await.expect("connect"))
            .max_decoding_message_size(64 << 20)
    }

    pub async fn data(&self) -> BrokerClient<Channel> {
        BrokerClient::new(self.endpoint_with_tls().connect().await.expect("connect"))
            .max_decoding_message_size(64 << 20)
            .max_encoding_message_size(64 << 20)
    }

    /// An admin client whose connect fails within 1 s and whose calls fail
    /// within 10 s (for brokers that may be down or partitioned).
    pub async fn try_admin(&self) -> Result<AdminClient<Channel>, tonic::transport::Error> {
        Ok(AdminClient::new(self.channel().await?).max_decoding_message_size(64 << 20))
    }

    /// A data-path client with the same timeouts as [`try_admin`](Self::try_admin).
    pub async fn try_data(&self) -> Result<BrokerClient<Channel>, tonic::transport::Error> {
        Ok(BrokerClient::new(self.channel().await?)
            .max_decoding_message_size(64 << 20)
            .max_encoding_message_size(64 << 20))
    }

    async fn channel(&self) -> Result<Channel, tonic::transport::Error> {
        self.endpoint_with_tls()
            .connect_timeout(Duration::from_secs(1))
            .timeout(Duration::from_secs(10))
            .connect()
            .await
    }

    /// DescribeTopic answered by this broker.
    pub async fn describe(&self, topic: &str) -> Result<TopicDescription, tonic::Status> {
        let mut admin = self
            .try_admin()
            .await
            .map_err(|e| tonic::Status::unavailable(format!("connect {}: {e}", self.addr)))?;
        admin
            .describe_topic(DescribeTopicRequest { name: topic.into() })
            .await
            .map(tonic::Response::into_inner)
    }

    pub async fn groups(&self) -> GroupsClient<Channel> {
        GroupsClient::new(self.endpoint_with_tls().connect().await.expect("connect"))
    }

    /// Runs the `strata` CLI against this broker.
    pub fn cli(&self, args: &[&str], stdin: Option<&[u8]>) -> Output {
        run_cli(&self.addr.to_string(), args, stdin)
    }
}

impl Drop for BrokerProc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Runs `strata --brokers ADDR args...` feeding `stdin`.
pub fn run_cli(brokers: &str, args: &[&str], stdin: Option<&[u8]>) -> Output {
    let args = [&["--brokers", brokers][..], args].concat();
    tools::run_with_input(bin("strata"), &args, stdin)
}

/// Stable error code name carried by a failed RPC.
pub fn error_code(st: &tonic::Status) -> String {
    st.metadata()
        .get(strata_proto::ERROR_CODE_METADATA)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string()
}

/// The `ErrorInfo` in a failed RPC's status details, if any.
pub fn error_info(st: &tonic::Status) -> Option<ErrorInfo> {
    if st.details().is_empty() {
        return None;
    }
    ErrorInfo::decode(st.details()).ok()
}

/// A status as one line: code name (or gRPC code) and message.
pub fn describe_status(st: &tonic::Status) -> String {
    let code = error_code(st);
    let code = if code.is_empty() {
        format!("{:?}", st.code())
    } else {
        code
    };
    format!("{code}: {}", st.message())
}

/// Every file under `dir` (recursively), sorted.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// Every file under `dir` with its bytes (to prove nothing changed).
pub fn snapshot_files(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    files_under(dir)
        .into_iter()
        .filter_map(|p| std::fs::read(&p).ok().map(|b| (p, b)))
        .collect()
}
