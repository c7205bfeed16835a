//! Harness for integration tests: spawns real `stratad` processes on
//! ephemeral 127.0.0.1 ports, kills them (SIGKILL) or stops them (SIGTERM),
//! restarts them on the same data directory, and runs the `strata` CLI.
//!
//! Binaries are taken from the cargo target directory of the running test
//! (`cargo test --workspace` builds them first).

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use strata_proto::v1::ListTopicsRequest;
use strata_proto::v1::admin_client::AdminClient;
use strata_proto::v1::broker_client::BrokerClient;
use strata_proto::v1::groups_client::GroupsClient;
use tonic::transport::Channel;

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

/// A free port on 127.0.0.1 (bound and released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// A `stratad` process with its data directory.
pub struct BrokerProc {
    child: Option<Child>,
    pub addr: SocketAddr,
    pub data_dir: PathBuf,
    pub log_path: PathBuf,
    extra: Vec<String>,
}

impl BrokerProc {
    /// Starts a broker on a fresh port with `data_dir` and extra flags, and
    /// waits until it serves.
    pub async fn start(data_dir: &Path, extra: &[&str]) -> Self {
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
        let mut b = Self {
            child: None,
            addr,
            data_dir: data_dir.to_path_buf(),
            log_path: data_dir.with_extension("log"),
            extra: extra.iter().map(|s| s.to_string()).collect(),
        };
        b.spawn();
        b.wait_ready().await;
        b
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .expect("open broker log");
        let child = Command::new(bin("stratad"))
            .arg("--data-dir")
            .arg(&self.data_dir)
            .arg("--listen")
            .arg(self.addr.to_string())
            .args(&self.extra)
            .env("STRATA_LOG_LEVEL", "info")
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .expect("spawn stratad");
        self.child = Some(child);
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The broker's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
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
            if let Ok(mut a) = AdminClient::connect(self.endpoint()).await
                && a.list_topics(request).await.is_ok()
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

    /// SIGTERM and wait for the exit status.
    pub fn terminate(&mut self) -> ExitStatus {
        let mut c = self.child.take().expect("broker is running");
        // SAFETY: sending a signal to our own child process by pid.
        unsafe {
            libc::kill(c.id() as i32, libc::SIGTERM);
        }
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

    /// Starts the broker again on the same port and data directory.
    pub async fn restart(&mut self) {
        self.kill();
        self.spawn();
        self.wait_ready().await;
    }

    pub async fn admin(&self) -> AdminClient<Channel> {
        AdminClient::connect(self.endpoint())
            .await
            .expect("connect")
            .max_decoding_message_size(64 << 20)
    }

    pub async fn data(&self) -> BrokerClient<Channel> {
        BrokerClient::connect(self.endpoint())
            .await
            .expect("connect")
            .max_decoding_message_size(64 << 20)
            .max_encoding_message_size(64 << 20)
    }

    pub async fn groups(&self) -> GroupsClient<Channel> {
        GroupsClient::connect(self.endpoint())
            .await
            .expect("connect")
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
    use std::io::Write;
    let mut child = Command::new(bin("strata"))
        .arg("--brokers")
        .arg(brokers)
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn strata");
    if let Some(input) = stdin {
        let mut s = child.stdin.take().expect("stdin");
        let data = input.to_vec();
        std::thread::spawn(move || {
            let _ = s.write_all(&data);
        });
    }
    child.wait_with_output().expect("strata output")
}

/// Stable error code name carried by a failed RPC.
pub fn error_code(st: &tonic::Status) -> String {
    st.metadata()
        .get(strata_proto::ERROR_CODE_METADATA)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string()
}

/// Every file under `dir` with its bytes (to prove nothing changed).
pub fn snapshot_files(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
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
            } else if let Ok(b) = std::fs::read(&p) {
                out.push((p, b));
            }
        }
    }
    out.sort();
    out
}
