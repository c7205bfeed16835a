//! A real S3-protocol server for the tiered-storage tests: `s3s` over a
//! local directory (`s3s-fs`), served by hyper on 127.0.0.1 inside the
//! test process, with signature checking on. It can be stopped (every
//! connection dropped) and started again on the same port to simulate an
//! outage. Objects are plain files: `ROOT/BUCKET/KEY`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder as ConnBuilder;
use s3s::auth::SimpleAuth;
use s3s::service::S3ServiceBuilder;
use tokio::task::JoinHandle;

pub const ACCESS_KEY: &str = "strata-test-key";
pub const SECRET_KEY: &str = "strata-test-secret";

pub struct S3Server {
    pub addr: SocketAddr,
    pub root: PathBuf,
    task: Option<JoinHandle<()>>,
}

impl S3Server {
    /// Serves `root` on a free port, with bucket `bucket` created.
    pub async fn start(root: &Path, bucket: &str) -> Self {
        let addr: SocketAddr = format!("127.0.0.1:{}", crate::free_port())
            .parse()
            .expect("addr");
        Self::start_on(root, bucket, addr).await
    }

    /// Serves `root` on `addr`, with bucket `bucket` created.
    pub async fn start_on(root: &Path, bucket: &str, addr: SocketAddr) -> Self {
        std::fs::create_dir_all(root.join(bucket)).expect("bucket dir");
        let mut s = Self {
            addr,
            root: root.to_owned(),
            task: None,
        };
        s.resume().await;
        s
    }

    /// Starts serving again on the same address.
    pub async fn resume(&mut self) {
        assert!(self.task.is_none(), "the S3 server is running");
        let fs = s3s_fs::FileSystem::new(&self.root).expect("s3s-fs root");
        let mut b = S3ServiceBuilder::new(fs);
        b.set_auth(SimpleAuth::from_single(ACCESS_KEY, SECRET_KEY));
        let service = b.build();
        let listener = {
            // The port was just released by `stop`: retry briefly.
            let mut tries = 0;
            loop {
                match tokio::net::TcpListener::bind(self.addr).await {
                    Ok(l) => break l,
                    Err(e) if tries < 50 => {
                        tries += 1;
                        let _ = e;
                        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    }
                    Err(e) => panic!("S3 server cannot bind {}: {e}", self.addr),
                }
            }
        };
        self.task = Some(tokio::spawn(async move {
            let http = ConnBuilder::new(TokioExecutor::new());
            let mut conns = tokio::task::JoinSet::new();
            loop {
                let Ok((socket, _)) = listener.accept().await else {
                    continue;
                };
                // Responses go out in 4 KiB pieces: without this, Nagle and
                // the client's delayed ACK hold the last one for ~40 ms.
                let _ = socket.set_nodelay(true);
                let conn = http
                    .serve_connection(TokioIo::new(socket), service.clone())
                    .into_owned();
                conns.spawn(async move {
                    let _ = conn.await;
                });
                while conns.try_join_next().is_some() {}
            }
        }));
    }

    /// Stops serving: the listener closes and open connections drop.
    pub async fn stop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
            let _ = t.await;
        }
    }

    /// The `stratad` flags that use bucket `bucket` under `prefix`.
    pub fn broker_flags(&self, bucket: &str, prefix: &str) -> Vec<String> {
        vec![
            "--object-store".into(),
            format!("s3://{bucket}/{prefix}"),
            "--s3-endpoint".into(),
            format!("http://{}", self.addr),
            "--s3-region".into(),
            "us-east-1".into(),
            "--s3-access-key-id".into(),
            ACCESS_KEY.into(),
            "--s3-secret-access-key".into(),
            SECRET_KEY.into(),
        ]
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}
