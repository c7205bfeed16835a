//! A cluster of real `stratad` processes, each in its own Linux network
//! namespace, for fault injection at the network and process level.
//!
//! Layout (per test process, `PID` = its process id):
//!
//! - one bridge `stbPID` in the root namespace holding `10.250.X.1/24`,
//!   where `X` is derived from the pid (the next free `/24` if that one is
//!   taken), so parallel test processes never collide;
//! - one namespace `strata-PID-i` per broker `i`, with `lo` up and one end
//!   of a veth pair (`stpPID-i`, address `10.250.X.(10+i)/24`); the other
//!   end (`stvPID-i`) is a port of the bridge;
//! - a root `FORWARD` rule accepting traffic from the bridge to itself
//!   (with `br_netfilter` loaded, bridged frames traverse the root
//!   `FORWARD` chain, whose policy may be `DROP`);
//! - an iptables chain `STRATA-FAULT` in every namespace, jumped to first
//!   from `INPUT` and `OUTPUT`, where the peer-isolation rules go.
//!
//! Brokers run as `ip netns exec NS stratad ...` (`ip` execs, so the child's
//! pid is stratad's), listen on their namespace address (client 9292, peer
//! 9293, HTTP 9294), advertise it, and run with `--fsync always`. The test
//! itself stays in the root namespace and reaches every broker over the
//! bridge. No other address is ever contacted: the namespaces have no
//! default route.
//!
//! Faults: SIGKILL and restart, SIGSTOP/SIGCONT, cutting a broker off from
//! its peers while clients still reach it (iptables inside its namespace),
//! and taking its link down (the root-side veth end: cut from everyone).
//!
//! Everything created is removed on drop, also when the test panics (then
//! the data directories and logs are kept and the log tails printed).
//! Leftovers of an earlier process with the same pid are removed first.
//! [`netns_or_skip`] decides whether the machine can run these tests: it
//! needs root and a working `ip netns`; without them a test prints
//! `SKIPPED: <reason>`, or fails when `STRATA_REQUIRE_NETNS=1`.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use strata_proto::batch::{self, BatchIter};
use strata_proto::v1::admin_client::AdminClient;
use strata_proto::v1::broker_client::BrokerClient;
use strata_proto::v1::{
    CreateTopicRequest, DescribeTopicRequest, FetchPartition, FetchRequest, ListTopicsRequest,
    TopicDescription, TransferLeaderRequest,
};
use tonic::Status;
use tonic::transport::{Channel, Endpoint};

use crate::{bin, describe_status, error_code, read_partition_batches, summarize};

/// The `ip` tool of the machine.
pub const IP: &str = "/usr/sbin/ip";
/// The `iptables` tool of the machine.
pub const IPTABLES: &str = "/usr/sbin/iptables";
/// Loads several rules in one transaction.
pub const IPTABLES_RESTORE: &str = "/usr/sbin/iptables-restore";
/// Client port of every broker (on its own namespace address).
pub const CLIENT_PORT: u16 = 9292;
/// Peer (Raft) port of every broker.
pub const PEER_PORT: u16 = 9293;
/// HTTP port of every broker.
pub const HTTP_PORT: u16 = 9294;
/// The iptables chain (in each namespace) holding the isolation rules.
const FAULT_CHAIN: &str = "STRATA-FAULT";
/// Prefix of the lines the harness writes into a broker's log.
const HARNESS_LINE: &str = "=== harness:";

// ------------------------------------------------------------ commands

/// Runs `f`, which blocks on a child process, without stalling the other
/// tasks of a multi-threaded tokio runtime.
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}

/// Runs `program args...` and returns its output; `Err` when it cannot be
/// started or exits non-zero (with its stderr).
fn run(program: &str, args: &[&str]) -> Result<Output, String> {
    let out = blocking(|| {
        Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .output()
    })
    .map_err(|e| format!("`{program} {}`: cannot run: {e}", args.join(" ")))?;
    if out.status.success() {
        Ok(out)
    } else {
        Err(format!(
            "`{program} {}` failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Runs `program args...` with `input` on its stdin, panicking with its
/// stderr when it fails.
fn must_with_input(program: &str, args: &[&str], input: &str) -> Output {
    let what = || format!("`{program} {}`", args.join(" "));
    let out = blocking(|| {
        use std::io::Write;
        let mut child = Command::new(program)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        let mut stdin = child.stdin.take().expect("piped stdin");
        stdin.write_all(input.as_bytes())?;
        drop(stdin);
        child.wait_with_output()
    })
    .unwrap_or_else(|e| panic!("netns harness: {}: {e}", what()));
    assert!(
        out.status.success(),
        "netns harness: {} failed ({}): {}",
        what(),
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    );
    out
}

/// Runs `program args...`, panicking with its stderr when it fails.
fn must(program: &str, args: &[&str]) -> Output {
    run(program, args).unwrap_or_else(|e| panic!("netns harness: {e}"))
}

/// `args` prefixed with `netns exec NS` (for [`IP`]).
fn in_ns<'a>(ns: &'a str, program: &'a str, args: &[&'a str]) -> Vec<&'a str> {
    let mut v = vec!["netns", "exec", ns, program];
    v.extend_from_slice(args);
    v
}

/// Stdout of a command as text (empty when it fails).
fn stdout_of(program: &str, args: &[&str]) -> String {
    run(program, args)
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

/// The time of day in UTC, `HH:MM:SS.mmmZ` (as the brokers' log lines
/// show it), to line the harness's actions up with the brokers' logs.
pub fn wall_clock() -> String {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    let day_ms = ms % 86_400_000;
    format!(
        "{:02}:{:02}:{:02}.{:03}Z",
        day_ms / 3_600_000,
        day_ms / 60_000 % 60,
        day_ms / 1000 % 60,
        day_ms % 1000
    )
}

// ------------------------------------------------------------ availability

/// Why this machine cannot run namespace tests (`None`: it can): not
/// root, no `ip`/`iptables`, or `ip netns`, veth pairs, bridges or iptables
/// inside a namespace do not work. Creates and removes a probe namespace,
/// bridge and veth pair.
pub fn netns_unavailable() -> Option<String> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    if euid != 0 {
        return Some(format!("network namespaces need root (euid is {euid})"));
    }
    for tool in [IP, IPTABLES, IPTABLES_RESTORE] {
        if !Path::new(tool).exists() {
            return Some(format!("{tool} is missing"));
        }
    }
    if let Err(e) = run(IP, &["netns", "list"]) {
        return Some(format!("ip netns is unavailable: {e}"));
    }
    let pid = std::process::id();
    let ns = format!("strata-{pid}-probe");
    let veth = format!("stv{pid}-p");
    let peer = format!("stp{pid}-p");
    let bridge = format!("stb{pid}");
    // Leftovers of an interrupted probe of a process with this pid.
    let _ = run(IP, &["netns", "del", &ns]);
    let _ = run(IP, &["link", "del", &veth]);
    let _ = run(IP, &["link", "del", &bridge]);
    let probe = || -> Result<(), String> {
        run(IP, &["netns", "add", &ns])?;
        run(IP, &in_ns(&ns, IP, &["link", "set", "lo", "up"]))?;
        run(IP, &in_ns(&ns, IPTABLES, &["-w", "-S"]))?;
        run(IP, &["link", "add", &bridge, "type", "bridge"])?;
        run(
            IP,
            &["link", "add", &veth, "type", "veth", "peer", "name", &peer],
        )?;
        run(IP, &["link", "set", &peer, "netns", &ns])?;
        run(IP, &["link", "set", &veth, "master", &bridge])?;
        Ok(())
    };
    let result = probe();
    let _ = run(IP, &["link", "del", &veth]);
    let _ = run(IP, &["link", "del", &bridge]);
    let _ = run(IP, &["netns", "del", &ns]);
    result
        .err()
        .map(|e| format!("network namespaces do not work here: {e}"))
}

/// Whether `STRATA_REQUIRE_NETNS=1`: namespace tests must run, not skip.
pub fn netns_required() -> bool {
    std::env::var("STRATA_REQUIRE_NETNS").is_ok_and(|v| v == "1")
}

/// True when namespace tests can run. Otherwise prints `SKIPPED: <reason>`
/// and returns false, or panics when [`netns_required`].
pub fn netns_or_skip() -> bool {
    match netns_unavailable() {
        None => true,
        Some(reason) if netns_required() => {
            panic!("STRATA_REQUIRE_NETNS=1 but namespace tests cannot run: {reason}")
        }
        Some(reason) => {
            eprintln!("SKIPPED: {reason}");
            false
        }
    }
}

// ------------------------------------------------------------ network

/// The bridge, namespaces, veth pairs and root rule of one test process;
/// [`teardown`](Network::teardown) (also on drop) removes them.
struct Network {
    pid: u32,
    /// The third octet of `10.250.X.0/24`.
    subnet: u8,
    bridge: Option<String>,
    forward_rule: Option<Vec<String>>,
    namespaces: Vec<String>,
    /// Root-side veth ends.
    veths: Vec<String>,
}

fn ns_name(pid: u32, i: u64) -> String {
    format!("strata-{pid}-{i}")
}

fn bridge_name(pid: u32) -> String {
    // "stb" + at most 7 digits (pid_max is 2^22): within IFNAMSIZ - 1 = 15.
    format!("stb{pid}")
}

fn veth_root(pid: u32, i: u64) -> String {
    format!("stv{pid}-{i}")
}

fn veth_ns(pid: u32, i: u64) -> String {
    format!("stp{pid}-{i}")
}

/// The root `FORWARD` rule letting the bridge forward to itself.
fn forward_rule(pid: u32, bridge: &str) -> Vec<String> {
    [
        "FORWARD",
        "-i",
        bridge,
        "-o",
        bridge,
        "-m",
        "comment",
        "--comment",
        &format!("strata-{pid}-fwd"),
        "-j",
        "ACCEPT",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// Interface names in the root namespace.
fn root_links() -> Vec<String> {
    stdout_of(IP, &["-o", "link", "show"])
        .lines()
        .filter_map(|l| {
            let name = l.split_whitespace().nth(1)?.trim_end_matches(':');
            Some(name.split('@').next().unwrap_or(name).to_string())
        })
        .collect()
}

impl Network {
    /// Removes what an earlier test process with this pid left behind
    /// (namespaces `strata-PID-*`, links `stbPID` / `stvPID-*`, the root
    /// rule).
    fn remove_stale(pid: u32) {
        let ns_prefix = format!("strata-{pid}-");
        for line in stdout_of(IP, &["netns", "list"]).lines() {
            if let Some(ns) = line.split_whitespace().next()
                && ns.starts_with(&ns_prefix)
            {
                eprintln!("netns harness: removing stale namespace {ns}");
                let _ = run(IP, &["netns", "del", ns]);
            }
        }
        let bridge = bridge_name(pid);
        let veth_prefix = format!("stv{pid}-");
        for link in root_links() {
            if link == bridge || link.starts_with(&veth_prefix) {
                eprintln!("netns harness: removing stale link {link}");
                let _ = run(IP, &["link", "del", &link]);
            }
        }
        let comment = format!("strata-{pid}-fwd");
        for line in stdout_of(IPTABLES, &["-w", "-S", "FORWARD"]).lines() {
            let words: Vec<&str> = line.split_whitespace().collect();
            if words.first() == Some(&"-A") && words.contains(&comment.as_str()) {
                eprintln!("netns harness: removing stale rule {line}");
                let mut del = vec!["-w", "-D"];
                del.extend_from_slice(&words[1..]);
                let _ = run(IPTABLES, &del);
            }
        }
    }

    /// A `/24` under 10.250.0.0/16 derived from `pid` that no address or
    /// route of the root namespace uses yet.
    fn pick_subnet(pid: u32) -> u8 {
        let used = format!(
            "{}\n{}",
            stdout_of(IP, &["-4", "-o", "addr", "show"]),
            stdout_of(IP, &["-4", "route", "show"])
        );
        let taken = |x: u8| {
            let prefix = format!("10.250.{x}.");
            used.split_whitespace().any(|w| w.starts_with(&prefix))
        };
        let base = (pid % 256) as u8;
        (0..=255u8)
            .map(|k| base.wrapping_add(k))
            .find(|&x| !taken(x))
            .expect("every /24 of 10.250.0.0/16 is in use on this machine")
    }

    /// Creates the bridge and `n` namespaces (brokers `1..=n`). Panics
    /// (after removing what it made, on drop) when a step fails.
    fn create(n: u64) -> Network {
        let pid = std::process::id();
        Self::remove_stale(pid);
        let subnet = Self::pick_subnet(pid);
        let mut net = Network {
            pid,
            subnet,
            bridge: None,
            forward_rule: None,
            namespaces: Vec::new(),
            veths: Vec::new(),
        };
        let bridge = bridge_name(pid);
        must(IP, &["link", "add", &bridge, "type", "bridge"]);
        net.bridge = Some(bridge.clone());
        let cidr = format!("{}/24", net.bridge_addr());
        must(IP, &["addr", "add", &cidr, "dev", &bridge]);
        must(IP, &["link", "set", &bridge, "up"]);
        let rule = forward_rule(pid, &bridge);
        let mut add: Vec<&str> = vec!["-w", "-I"];
        add.push(&rule[0]);
        add.push("1");
        add.extend(rule[1..].iter().map(String::as_str));
        must(IPTABLES, &add);
        net.forward_rule = Some(rule);

        for i in 1..=n {
            let ns = ns_name(pid, i);
            must(IP, &["netns", "add", &ns]);
            net.namespaces.push(ns.clone());
            must(IP, &in_ns(&ns, IP, &["link", "set", "lo", "up"]));
            let (root_end, ns_end) = (veth_root(pid, i), veth_ns(pid, i));
            must(
                IP,
                &[
                    "link", "add", &root_end, "type", "veth", "peer", "name", &ns_end,
                ],
            );
            net.veths.push(root_end.clone());
            must(IP, &["link", "set", &ns_end, "netns", &ns]);
            must(IP, &["link", "set", &root_end, "master", &bridge]);
            must(IP, &["link", "set", &root_end, "up"]);
            let addr = format!("{}/24", net.broker_ip(i));
            must(IP, &in_ns(&ns, IP, &["addr", "add", &addr, "dev", &ns_end]));
            must(IP, &in_ns(&ns, IP, &["link", "set", &ns_end, "up"]));
            must(IP, &in_ns(&ns, IPTABLES, &["-w", "-N", FAULT_CHAIN]));
            for hook in ["INPUT", "OUTPUT"] {
                must(
                    IP,
                    &in_ns(&ns, IPTABLES, &["-w", "-I", hook, "1", "-j", FAULT_CHAIN]),
                );
            }
        }
        net
    }

    fn bridge_addr(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, 250, self.subnet, 1)
    }

    fn broker_ip(&self, i: u64) -> Ipv4Addr {
        let host = u8::try_from(10 + i).expect("at most 245 brokers");
        Ipv4Addr::new(10, 250, self.subnet, host)
    }

    /// Removes everything created; returns what could not be removed.
    fn teardown(&mut self) -> Vec<String> {
        let mut errors = Vec::new();
        // Deleting a namespace destroys its veth end and with it the pair.
        for ns in self.namespaces.drain(..) {
            if let Err(e) = run(IP, &["netns", "del", &ns]) {
                errors.push(e);
            }
        }
        let links = root_links();
        for veth in self.veths.drain(..) {
            if links.contains(&veth)
                && let Err(e) = run(IP, &["link", "del", &veth])
            {
                errors.push(e);
            }
        }
        if let Some(b) = self.bridge.take()
            && let Err(e) = run(IP, &["link", "del", &b])
        {
            errors.push(e);
        }
        if let Some(rule) = self.forward_rule.take() {
            let mut del: Vec<&str> = vec!["-w", "-D"];
            del.extend(rule.iter().map(String::as_str));
            if let Err(e) = run(IPTABLES, &del) {
                errors.push(e);
            }
        }
        errors
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        for e in self.teardown() {
            eprintln!("netns harness cleanup (pid {}): {e}", self.pid);
        }
    }
}

// ------------------------------------------------------------ brokers

/// One `stratad` in its namespace. Address, flags and data directory stay
/// the same across restarts.
pub struct NsBroker {
    pub id: u64,
    pub netns: String,
    pub ip: Ipv4Addr,
    pub data_dir: PathBuf,
    pub log_path: PathBuf,
    args: Vec<String>,
    child: Option<Child>,
    paused: bool,
    isolated: bool,
    link_down: bool,
}

impl NsBroker {
    /// The client address (advertised to clients).
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from((self.ip, CLIENT_PORT))
    }

    pub fn peer_addr(&self) -> SocketAddr {
        SocketAddr::from((self.ip, PEER_PORT))
    }

    pub fn http_addr(&self) -> SocketAddr {
        SocketAddr::from((self.ip, HTTP_PORT))
    }

    /// The `stratad` arguments.
    pub fn args(&self) -> &[String] {
        &self.args
    }

    /// Started by the harness and not killed since (it may be paused).
    pub fn is_started(&self) -> bool {
        self.child.is_some()
    }

    pub fn is_paused(&self) -> bool {
        self.paused
    }

    pub fn is_isolated(&self) -> bool {
        self.isolated
    }

    pub fn is_link_down(&self) -> bool {
        self.link_down
    }

    /// Started, not paused and its link up: worth asking something.
    pub fn is_reachable(&self) -> bool {
        self.is_started() && !self.paused && !self.link_down
    }

    /// Process id of stratad (`ip netns exec` execs it).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    fn spawn(&mut self) {
        assert!(
            self.child.is_none(),
            "broker {} is already running",
            self.id
        );
        let mut log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .unwrap_or_else(|e| panic!("open broker log {}: {e}", self.log_path.display()));
        let stratad = bin("stratad");
        {
            use std::io::Write;
            let _ = writeln!(
                log,
                "{HARNESS_LINE} ip netns exec {} {} {}",
                self.netns,
                stratad.display(),
                self.args.join(" ")
            );
        }
        let stderr = log.try_clone().expect("clone broker log handle");
        let child = Command::new(IP)
            .args(["netns", "exec", &self.netns])
            .arg(&stratad)
            .args(&self.args)
            .env("STRATA_LOG_LEVEL", "info")
            // Plain log files (tracing colours its output unless NO_COLOR).
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn stratad in {}: {e}", self.netns));
        self.child = Some(child);
        self.paused = false;
    }

    /// Writes a line into the broker's log (to find the harness's actions
    /// among the broker's lines).
    pub fn note(&self, what: &str) {
        use std::io::Write;
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .append(true)
            .open(&self.log_path)
        {
            let _ = writeln!(f, "{HARNESS_LINE} {} {what}", wall_clock());
        }
    }

    fn signal(&self, sig: libc::c_int) {
        let pid = self
            .pid()
            .unwrap_or_else(|| panic!("broker {} is not running", self.id));
        let pid = libc::pid_t::try_from(pid).expect("pid fits pid_t");
        // SAFETY: kill(2) on the pid of our own, not yet reaped child.
        let rc = unsafe { libc::kill(pid, sig) };
        assert_eq!(
            rc,
            0,
            "signal {sig} to broker {} (pid {pid}): {}",
            self.id,
            std::io::Error::last_os_error()
        );
    }

    /// SIGKILL and reap.
    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = blocking(|| c.wait());
        }
        self.paused = false;
    }

    /// SIGKILL without reaping ([`kill`](Self::kill) reaps).
    fn signal_kill(&mut self) {
        if let Some(c) = self.child.as_mut() {
            let _ = c.kill();
        }
    }

    /// SIGTERM (SIGCONT first when paused) and wait up to 30 s.
    fn terminate(&mut self) -> ExitStatus {
        if self.paused {
            self.signal(libc::SIGCONT);
            self.paused = false;
        }
        self.signal(libc::SIGTERM);
        let mut c = self.child.take().expect("broker is running");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(s)) = c.try_wait() {
                return s;
            }
            if Instant::now() > deadline {
                let _ = c.kill();
                let _ = c.wait();
                panic!(
                    "broker {} ignored SIGTERM for 30 s:\n{}",
                    self.id,
                    self.log_tail(80)
                );
            }
            blocking(|| std::thread::sleep(Duration::from_millis(20)));
        }
    }

    /// Whether the started process is gone or a zombie (Linux `/proc`).
    pub fn has_died(&self) -> bool {
        let Some(pid) = self.pid() else {
            return false;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            return true;
        };
        let state = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.trim_start().chars().next());
        matches!(state, Some('Z' | 'X') | None)
    }

    /// The broker's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// The last `lines` lines of the log.
    pub fn log_tail(&self, lines: usize) -> String {
        let log = self.log();
        let all: Vec<&str> = log.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// The first panic in the log (with the line after it), if any.
    pub fn panic_line(&self) -> Option<String> {
        let log = self.log();
        let mut lines = log.lines();
        let at = lines.find(|l| l.contains("panicked at"))?;
        Some(match lines.next() {
            Some(msg) => format!("{at} {msg}"),
            None => at.to_string(),
        })
    }

    async fn channel(&self) -> Result<Channel, tonic::transport::Error> {
        let ep = Endpoint::from_shared(format!("http://{}", self.addr()))
            .expect("broker endpoint")
            .connect_timeout(Duration::from_secs(1))
            .timeout(Duration::from_secs(5));
        ep.connect().await
    }

    /// An admin client (connect within 1 s, calls within 5 s).
    pub async fn try_admin(&self) -> Result<AdminClient<Channel>, String> {
        match tokio::time::timeout(Duration::from_secs(3), self.channel()).await {
            Ok(Ok(ch)) => Ok(AdminClient::new(ch).max_decoding_message_size(64 << 20)),
            Ok(Err(e)) => Err(format!(
                "connect to broker {} ({}): {e}",
                self.id,
                self.addr()
            )),
            Err(_) => Err(format!(
                "connect to broker {} ({}): timed out",
                self.id,
                self.addr()
            )),
        }
    }

    /// A data-path client with the timeouts of [`try_admin`](Self::try_admin).
    pub async fn try_data(&self) -> Result<BrokerClient<Channel>, String> {
        match tokio::time::timeout(Duration::from_secs(3), self.channel()).await {
            Ok(Ok(ch)) => Ok(BrokerClient::new(ch)
                .max_decoding_message_size(64 << 20)
                .max_encoding_message_size(64 << 20)),
            Ok(Err(e)) => Err(format!(
                "connect to broker {} ({}): {e}",
                self.id,
                self.addr()
            )),
            Err(_) => Err(format!(
                "connect to broker {} ({}): timed out",
                self.id,
                self.addr()
            )),
        }
    }

    /// DescribeTopic answered by this broker (within 5 s).
    pub async fn describe(&self, topic: &str) -> Result<TopicDescription, Status> {
        let mut admin = self.try_admin().await.map_err(Status::unavailable)?;
        let call = admin.describe_topic(DescribeTopicRequest { name: topic.into() });
        match tokio::time::timeout(Duration::from_secs(5), call).await {
            Ok(r) => r.map(tonic::Response::into_inner),
            Err(_) => Err(Status::deadline_exceeded(format!(
                "broker {} did not describe {topic} within 5 s",
                self.id
            ))),
        }
    }

    /// Waits up to 60 s until the broker answers an admin call; panics
    /// with its log when it exits or never answers.
    pub async fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(c) = self.child.as_mut()
                && let Ok(Some(status)) = c.try_wait()
            {
                panic!(
                    "broker {} exited early with {status}:\n{}",
                    self.id,
                    self.log_tail(80)
                );
            }
            if let Ok(mut a) = self.try_admin().await {
                let call = a.list_topics(ListTopicsRequest {
                    include_internal: false,
                });
                if let Ok(Ok(_)) = tokio::time::timeout(Duration::from_secs(5), call).await {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "broker {} did not become ready within 60 s:\n{}",
                self.id,
                self.log_tail(80)
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

// ------------------------------------------------------------ cluster

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
        "NOT_CONTROLLER"
        | "NOT_LEADER"
        | "NOT_READY"
        | "TIMEOUT"
        | "SHUTTING_DOWN"
        | "NOT_ENOUGH_REPLICAS" => true,
        _ => false,
    }
}

/// Brokers `1..=n`, one per network namespace, forming one Raft cluster.
pub struct NetnsCluster {
    brokers: BTreeMap<u64, NsBroker>,
    dir: tempfile::TempDir,
    net: Network,
    /// Keep the data directories and logs after the drop.
    keep: bool,
}

impl NetnsCluster {
    /// Creates the network, starts `n` brokers (with `extra` flags after
    /// the harness's own) and waits until each serves.
    pub async fn start(n: usize, extra: &[&str]) -> NetnsCluster {
        assert!((1..=9).contains(&n), "1 to 9 brokers");
        let net = Network::create(n as u64);
        let dir = tempfile::Builder::new()
            .prefix("strata-netns-")
            .tempdir()
            .expect("create the cluster's temporary directory");
        let ids: Vec<u64> = (1..=n as u64).collect();
        let initial = ids
            .iter()
            .map(|&j| format!("{j}={}", SocketAddr::from((net.broker_ip(j), PEER_PORT))))
            .collect::<Vec<_>>()
            .join(",");
        let mut brokers = BTreeMap::new();
        for &i in &ids {
            let ip = net.broker_ip(i);
            let data_dir = dir.path().join(format!("node{i}"));
            let mut args: Vec<String> = vec![
                "--node-id".into(),
                i.to_string(),
                "--data-dir".into(),
                data_dir.display().to_string(),
                "--listen".into(),
                SocketAddr::from((ip, CLIENT_PORT)).to_string(),
                "--advertise".into(),
                SocketAddr::from((ip, CLIENT_PORT)).to_string(),
                "--peer-listen".into(),
                SocketAddr::from((ip, PEER_PORT)).to_string(),
                "--http-listen".into(),
                SocketAddr::from((ip, HTTP_PORT)).to_string(),
                "--kafka-listen".into(),
                "off".into(),
                "--initial-cluster".into(),
                initial.clone(),
                "--fsync".into(),
                "always".into(),
            ];
            args.extend(extra.iter().map(|s| s.to_string()));
            let b = NsBroker {
                id: i,
                netns: ns_name(net.pid, i),
                ip,
                log_path: dir.path().join(format!("node{i}.log")),
                data_dir,
                args,
                child: None,
                paused: false,
                isolated: false,
                link_down: false,
            };
            brokers.insert(i, b);
        }
        let mut c = NetnsCluster {
            brokers,
            dir,
            net,
            keep: false,
        };
        eprintln!(
            "netns cluster: bridge {} at {}, brokers {}, data in {}",
            c.net.bridge.as_deref().unwrap_or("?"),
            c.net.bridge_addr(),
            c.bootstrap(),
            c.dir.path().display()
        );
        c.restart_all().await;
        c
    }

    /// Node ids, ascending.
    pub fn ids(&self) -> Vec<u64> {
        self.brokers.keys().copied().collect()
    }

    /// Brokers started and not killed (paused or cut off ones included).
    pub fn running(&self) -> Vec<u64> {
        self.brokers
            .values()
            .filter(|b| b.is_started())
            .map(|b| b.id)
            .collect()
    }

    /// Brokers worth asking: started, not paused, link up.
    pub fn reachable(&self) -> Vec<u64> {
        self.brokers
            .values()
            .filter(|b| b.is_reachable())
            .map(|b| b.id)
            .collect()
    }

    pub fn get(&self, id: u64) -> &NsBroker {
        self.brokers
            .get(&id)
            .unwrap_or_else(|| panic!("no broker {id}"))
    }

    fn broker_mut(&mut self, id: u64) -> &mut NsBroker {
        self.brokers
            .get_mut(&id)
            .unwrap_or_else(|| panic!("no broker {id}"))
    }

    /// The temporary directory with data directories and logs.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Keeps the data directories and logs when the cluster is dropped
    /// (they are always kept when the test panics).
    pub fn keep_files(&mut self) {
        self.keep = true;
    }

    /// The root namespace's address on the bridge (where clients live).
    pub fn bridge_addr(&self) -> Ipv4Addr {
        self.net.bridge_addr()
    }

    /// `(id, client address)` of every broker.
    pub fn client_addrs(&self) -> Vec<(u64, SocketAddr)> {
        self.brokers.values().map(|b| (b.id, b.addr())).collect()
    }

    /// Every client address, "addr1,addr2,addr3".
    pub fn bootstrap(&self) -> String {
        self.brokers
            .values()
            .map(|b| b.addr().to_string())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// A client configuration bootstrapping from every broker.
    pub fn client_config(&self) -> strata_client::ClientConfig {
        strata_client::ClientConfig::new(self.brokers.values().map(|b| b.addr().to_string()))
    }

    /// Writes `what` into every broker's log.
    pub fn note(&self, what: &str) {
        for b in self.brokers.values() {
            b.note(what);
        }
    }

    // ------------------------------------------------------------ faults

    /// SIGKILL one broker (also when paused) and reap it.
    pub fn kill(&mut self, id: u64) {
        self.note(&format!("SIGKILL broker {id}"));
        self.broker_mut(id).kill();
    }

    /// SIGKILL every running broker at once, then reap them.
    pub fn kill_all(&mut self) {
        self.note("SIGKILL every broker");
        for b in self.brokers.values_mut() {
            b.signal_kill();
        }
        for b in self.brokers.values_mut() {
            b.kill();
        }
    }

    /// Starts the broker again (SIGKILL first if it runs) on the same
    /// address and data directory and waits until it serves.
    pub async fn restart(&mut self, id: u64) {
        self.note(&format!("restart broker {id}"));
        let b = self.broker_mut(id);
        b.kill();
        b.spawn();
        b.wait_ready().await;
    }

    /// Starts every stopped broker, then waits until all serve (a cluster
    /// broker is ready only once a quorum runs, so they start together).
    pub async fn restart_all(&mut self) {
        self.note("start every stopped broker");
        for b in self.brokers.values_mut() {
            if !b.is_started() {
                b.spawn();
            }
        }
        for b in self.brokers.values_mut() {
            b.wait_ready().await;
        }
    }

    /// SIGSTOP.
    pub fn pause(&mut self, id: u64) {
        self.note(&format!("SIGSTOP broker {id}"));
        let b = self.broker_mut(id);
        b.signal(libc::SIGSTOP);
        b.paused = true;
    }

    /// SIGCONT.
    pub fn resume(&mut self, id: u64) {
        let b = self.broker_mut(id);
        b.signal(libc::SIGCONT);
        b.paused = false;
        self.note(&format!("SIGCONT broker {id}"));
    }

    /// Drops every packet between broker `id` and the other brokers, both
    /// ways, inside `id`'s namespace (`INPUT` and `OUTPUT`); the bridge
    /// address (clients) still gets through. The rules take effect
    /// together (one `iptables-restore` transaction).
    pub fn isolate_from_peers(&mut self, id: u64) {
        self.note(&format!("isolate broker {id} from its peers"));
        let ns = self.get(id).netns.clone();
        let mut rules = String::from("*filter\n");
        for b in self.brokers.values().filter(|b| b.id != id) {
            for dir in ["-s", "-d"] {
                rules.push_str(&format!("-A {FAULT_CHAIN} {dir} {} -j DROP\n", b.ip));
            }
        }
        rules.push_str("COMMIT\n");
        must_with_input(
            IP,
            &in_ns(&ns, IPTABLES_RESTORE, &["-w", "--noflush"]),
            &rules,
        );
        self.broker_mut(id).isolated = true;
    }

    /// Removes the isolation rules of broker `id`.
    pub fn heal_peers(&mut self, id: u64) {
        let ns = self.get(id).netns.clone();
        must(IP, &in_ns(&ns, IPTABLES, &["-w", "-F", FAULT_CHAIN]));
        self.broker_mut(id).isolated = false;
        self.note(&format!("heal broker {id}'s peer traffic"));
    }

    /// Takes the root-side end of broker `id`'s veth down: it is cut off
    /// from the other brokers and from the clients.
    pub fn link_down(&mut self, id: u64) {
        self.note(&format!("link of broker {id} down"));
        let veth = veth_root(self.net.pid, id);
        must(IP, &["link", "set", &veth, "down"]);
        self.broker_mut(id).link_down = true;
    }

    /// Brings the root-side veth end of broker `id` up again.
    pub fn link_up(&mut self, id: u64) {
        let veth = veth_root(self.net.pid, id);
        must(IP, &["link", "set", &veth, "up"]);
        self.broker_mut(id).link_down = false;
        self.note(&format!("link of broker {id} up"));
    }

    /// Ends every fault: resumes paused brokers, heals isolation, brings
    /// links up and starts killed brokers.
    pub async fn heal_all(&mut self) {
        for id in self.ids() {
            let b = self.get(id);
            let (paused, isolated, down) = (b.paused, b.isolated, b.link_down);
            if paused {
                self.resume(id);
            }
            if isolated {
                self.heal_peers(id);
            }
            if down {
                self.link_up(id);
            }
        }
        self.restart_all().await;
    }

    /// SIGTERM every running broker, one after the other; panics unless
    /// each exits 0.
    pub fn terminate_all(&mut self) {
        self.note("SIGTERM every broker");
        for b in self.brokers.values_mut() {
            if b.is_started() {
                let status = b.terminate();
                assert!(
                    status.success(),
                    "broker {} exited with {status} on SIGTERM:\n{}",
                    b.id,
                    b.log_tail(80)
                );
            }
        }
    }

    // ------------------------------------------------------------ queries

    /// Calls `f` with an admin client on each reachable broker in turn
    /// until one answers with anything but a retriable failure; after
    /// `timeout` the last failure.
    pub async fn admin_retry<T, F, Fut>(&self, timeout: Duration, mut f: F) -> Result<T, Status>
    where
        F: FnMut(AdminClient<Channel>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, Status>>,
    {
        let deadline = Instant::now() + timeout;
        let mut last = Status::unavailable("no broker reachable");
        loop {
            for id in self.reachable() {
                let admin = match self.get(id).try_admin().await {
                    Ok(a) => a,
                    Err(e) => {
                        last = Status::unavailable(e);
                        continue;
                    }
                };
                match tokio::time::timeout(Duration::from_secs(10), f(admin)).await {
                    Ok(Ok(r)) => return Ok(r.into_inner()),
                    Ok(Err(st)) if retriable(&st) => last = st,
                    Ok(Err(st)) => return Err(st),
                    Err(_) => last = Status::deadline_exceeded(format!("broker {id}: 10 s")),
                }
            }
            if Instant::now() > deadline {
                return Err(last);
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// CreateTopic with `configs` through [`admin_retry`](Self::admin_retry) (30 s).
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
        let r = self
            .admin_retry(Duration::from_secs(30), |mut a| {
                let req = req.clone();
                async move { a.create_topic(req).await }
            })
            .await?;
        Ok(r.topic.unwrap_or_default())
    }

    /// DescribeTopic from the first reachable broker that answers.
    pub async fn describe(&self, topic: &str) -> Option<TopicDescription> {
        for id in self.reachable() {
            if let Ok(d) = self.get(id).describe(topic).await {
                return Some(d);
            }
        }
        None
    }

    /// The leader of a partition as broker `via` reports it.
    pub async fn leader_via(&self, via: u64, topic: &str, partition: u32) -> Option<u64> {
        let d = self.get(via).describe(topic).await.ok()?;
        let p = d.partitions.iter().find(|p| p.partition == partition)?;
        (p.leader != 0).then_some(p.leader)
    }

    /// The partition's leader: a reachable broker named leader by some
    /// reachable broker that also names itself leader.
    pub async fn leader_of(&self, topic: &str, partition: u32) -> Option<u64> {
        let reachable = self.reachable();
        for &via in &reachable {
            let Some(l) = self.leader_via(via, topic, partition).await else {
                continue;
            };
            if !reachable.contains(&l) {
                continue;
            }
            if l == via || self.leader_via(l, topic, partition).await == Some(l) {
                return Some(l);
            }
        }
        None
    }

    /// Partition → leader, from each reachable broker's claim to lead (a
    /// partition no broker claims is left out).
    pub async fn leaders(&self, topic: &str) -> BTreeMap<u32, u64> {
        let mut out = BTreeMap::new();
        for id in self.reachable() {
            if let Ok(d) = self.get(id).describe(topic).await {
                for p in d.partitions.iter().filter(|p| p.leader == id) {
                    out.insert(p.partition, id);
                }
            }
        }
        out
    }

    /// Waits for [`leader_of`](Self::leader_of); panics with the logs on
    /// timeout.
    pub async fn wait_leader(&self, topic: &str, partition: u32, timeout: Duration) -> u64 {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(l) = self.leader_of(topic, partition).await {
                return l;
            }
            self.assert_not_broken();
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

    /// Why `topic` is not fully in sync as each partition's leader sees it;
    /// `None` when every partition has a reachable leader, isr equals
    /// replicas (all reachable) and the high watermark equals the log end.
    pub async fn not_in_sync(&self, topic: &str) -> Option<String> {
        let Some(d) = self.describe(topic).await else {
            return Some(format!("no broker describes {topic}"));
        };
        if d.partitions.is_empty() {
            return Some(format!("{topic} has no partitions"));
        }
        let reachable = self.reachable();
        for p in &d.partitions {
            let l = p.leader;
            if l == 0 || !reachable.contains(&l) {
                return Some(format!("partition {} has leader {l}", p.partition));
            }
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
                || replicas.iter().any(|r| !reachable.contains(r))
            {
                return Some(format!("partition {} per broker {l}: {lp:?}", p.partition));
            }
        }
        None
    }

    /// Waits until [`not_in_sync`](Self::not_in_sync) is `None`; panics
    /// with the last state and the logs on timeout.
    pub async fn wait_all_in_sync(&self, topic: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let Some(why) = self.not_in_sync(topic).await else {
                return;
            };
            self.assert_not_broken();
            if Instant::now() > deadline {
                panic!(
                    "{topic} not in sync within {timeout:?}: {why}\n{}",
                    self.logs(60)
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Moves the leadership of a partition to `to` (TransferLeader, retried)
    /// and waits until `to` leads it by its own and every reachable
    /// broker's account.
    pub async fn transfer_leader(
        &self,
        topic: &str,
        partition: u32,
        to: u64,
        timeout: Duration,
    ) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        loop {
            let mut agreed = true;
            for id in self.reachable() {
                if self.leader_via(id, topic, partition).await != Some(to) {
                    agreed = false;
                    break;
                }
            }
            if agreed {
                return Ok(());
            }
            let req = TransferLeaderRequest {
                topic: topic.into(),
                partition,
                to,
            };
            let last = match self
                .admin_retry(Duration::from_secs(5), |mut a| {
                    let req = req.clone();
                    async move { a.transfer_leader(req).await }
                })
                .await
            {
                Ok(r) => format!("TransferLeader answered leader {}", r.leader),
                Err(st) => format!("TransferLeader: {}", describe_status(&st)),
            };
            if Instant::now() > deadline {
                return Err(format!(
                    "{topic}-{partition}: broker {to} does not lead within {timeout:?}: {last}"
                ));
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
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

    /// Every record of a partition from offset 0 up to the high watermark,
    /// as (offset, value), fetched from broker `id` (which must lead it).
    /// Transient failures are retried for 60 s; control batches and records
    /// without a UTF-8 value are skipped.
    pub async fn read_partition_from(
        &self,
        id: u64,
        topic: &str,
        partition: u32,
    ) -> Result<Vec<(i64, String)>, String> {
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut out = Vec::new();
        let mut offset = 0i64;
        let mut last_error = String::new();
        loop {
            if Instant::now() > deadline {
                return Err(format!(
                    "could not read {topic}-{partition} from broker {id} past offset {offset}: \
                     {last_error}"
                ));
            }
            let mut api = match self.get(id).try_data().await {
                Ok(a) => a,
                Err(e) => {
                    last_error = e;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
            };
            let req = FetchRequest {
                max_wait_ms: 0,
                min_bytes: 0,
                max_bytes: 4 << 20,
                partitions: vec![FetchPartition {
                    topic: topic.into(),
                    partition,
                    offset,
                    max_bytes: 0,
                }],
            };
            let p = match tokio::time::timeout(Duration::from_secs(10), api.fetch(req)).await {
                Ok(Ok(r)) => r.into_inner().partitions.into_iter().next(),
                Ok(Err(st)) => {
                    last_error = format!("fetch: {}", describe_status(&st));
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
                Err(_) => {
                    last_error = "fetch: no answer within 10 s".into();
                    continue;
                }
            };
            let Some(p) = p else {
                last_error = "fetch: no partition in the response".into();
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            };
            if let Some(e) = p.error.filter(|e| e.code != 0) {
                last_error = format!("fetch: {e:?}");
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
            if p.records.is_empty() {
                if offset >= p.high_watermark {
                    return Ok(out);
                }
                return Err(format!(
                    "{topic}-{partition} on broker {id}: empty fetch at offset {offset} below \
                     the high watermark {}",
                    p.high_watermark
                ));
            }
            let before = offset;
            offset = decode_into(&mut out, p.records, offset)
                .map_err(|e| format!("{topic}-{partition} from broker {id}: {e}"))?;
            if offset <= before {
                return Err(format!(
                    "{topic}-{partition} from broker {id}: fetch at {before} made no progress"
                ));
            }
        }
    }

    /// [`read_partition_from`](Self::read_partition_from) the current
    /// leader (moving on when the leadership moves).
    pub async fn read_partition(&self, topic: &str, partition: u32) -> Vec<(i64, String)> {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let l = self
                .wait_leader(topic, partition, Duration::from_secs(30))
                .await;
            match self.read_partition_from(l, topic, partition).await {
                Ok(v) => return v,
                Err(e) if Instant::now() > deadline => panic!("{e}"),
                Err(e) => eprintln!("retrying the read of {topic}-{partition}: {e}"),
            }
        }
    }

    /// The batches of a partition in broker `id`'s segment files, each as
    /// its bytes, in log order.
    pub fn partition_batches(&self, id: u64, topic: &str, partition: u32) -> Vec<Vec<u8>> {
        read_partition_batches(&self.get(id).data_dir, topic, partition)
    }

    /// Compares the on-disk batches below `hw` of one partition across
    /// `replicas`: the number of batches, or the first difference (or a
    /// replica missing offsets below `hw`).
    pub fn replicas_converged(
        &self,
        topic: &str,
        partition: u32,
        replicas: &[u64],
        hw: i64,
    ) -> Result<usize, String> {
        let below = |id: u64| -> Vec<Vec<u8>> {
            self.partition_batches(id, topic, partition)
                .into_iter()
                .filter(|b| summarize(b).is_some_and(|s| s.base_offset < hw))
                .collect()
        };
        let covers = |id: u64, bs: &[Vec<u8>]| -> Result<(), String> {
            if hw == 0 {
                return Ok(());
            }
            let start = bs.first().and_then(|b| summarize(b)).map(|s| s.base_offset);
            let end = bs
                .last()
                .and_then(|b| summarize(b))
                .map(|s| s.last_offset + 1);
            if start != Some(0) || end.is_none_or(|e| e < hw) {
                return Err(format!(
                    "{topic}-{partition} on broker {id} covers {start:?}..{end:?}, needs 0..{hw}"
                ));
            }
            Ok(())
        };
        let Some((&first, rest)) = replicas.split_first() else {
            return Err("no replicas".into());
        };
        let reference = below(first);
        covers(first, &reference)?;
        for &id in rest {
            let other = below(id);
            covers(id, &other)?;
            if other != reference {
                let i = reference
                    .iter()
                    .zip(&other)
                    .position(|(a, b)| a != b)
                    .unwrap_or(reference.len().min(other.len()));
                return Err(format!(
                    "{topic}-{partition}: brokers {first} and {id} differ at batch #{i} \
                     ({} vs {} batches below hw {hw}): {:?} vs {:?}",
                    reference.len(),
                    other.len(),
                    reference.get(i).and_then(|b| summarize(b)),
                    other.get(i).and_then(|b| summarize(b)),
                ));
            }
        }
        Ok(reference.len())
    }

    /// Why the cluster cannot be healthy any more: a started broker has
    /// exited, or a broker logged a panic.
    pub fn broken(&self) -> Option<String> {
        for b in self.brokers.values() {
            if b.is_started() && b.has_died() {
                return Some(format!("broker {} exited unexpectedly", b.id));
            }
            if let Some(line) = b.panic_line() {
                return Some(format!("broker {} panicked: {line}", b.id));
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

    /// The last `lines` lines of every broker's log, labelled.
    pub fn logs(&self, lines: usize) -> String {
        let mut out = String::new();
        for b in self.brokers.values() {
            out.push_str(&format!(
                "----- broker {} ({}) log tail -----\n{}\n",
                b.id,
                b.log_path.display(),
                b.log_tail(lines)
            ));
        }
        out
    }
}

/// Appends the records of `records` (whole batches) at or after `offset`
/// to `out`; returns the offset after the last batch.
fn decode_into(out: &mut Vec<(i64, String)>, records: Bytes, offset: i64) -> Result<i64, String> {
    let mut next = offset;
    for b in BatchIter::new(records) {
        let (h, bytes) = b.map_err(|e| format!("corrupt batch near offset {next}: {e}"))?;
        if !h.is_control() {
            let records =
                batch::records(&bytes).map_err(|e| format!("undecodable batch at {next}: {e}"))?;
            for r in records {
                let r = r.map_err(|e| format!("undecodable record near {next}: {e}"))?;
                if r.offset < offset {
                    continue;
                }
                if let Some(v) = r.value.and_then(|v| String::from_utf8(v.to_vec()).ok()) {
                    out.push((r.offset, v));
                }
            }
        }
        next = next.max(h.last_offset() + 1);
    }
    Ok(next)
}

impl Drop for NetnsCluster {
    fn drop(&mut self) {
        let panicking = std::thread::panicking();
        if panicking {
            eprintln!("{}", self.logs(60));
        }
        if panicking || self.keep {
            self.dir.disable_cleanup(true);
            eprintln!(
                "kept {} (data directories and full logs)",
                self.dir.path().display()
            );
        }
        for b in self.brokers.values_mut() {
            b.kill();
        }
        for e in self.net.teardown() {
            eprintln!("netns harness cleanup (pid {}): {e}", self.net.pid);
        }
    }
}
