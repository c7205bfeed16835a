//! TLS on the listeners and the broker-to-broker links (rustls on ring).
//!
//! The client listener asks for client certificates as configured
//! (`--tls-client-auth`); the peer listener always requires one signed by
//! the CA, and a broker presents its own certificate when it connects to
//! another: links between brokers are mutual TLS.
//!
//! Rotation: every accepted connection takes the listener's current
//! `ServerConfig`, and the files behind it are checked for changes (size and
//! modification time) at most once a second: a new certificate, key or CA on
//! disk applies to new connections, while established ones keep their
//! session. A set of files that does not load is reported and the previous
//! one stays in use. Outgoing links read the files when they connect.

use std::fs;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime};

use rustls::RootCertStore;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ServerConfig, WebPkiClientVerifier};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};

/// How long a client may take to finish its handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How often the files are checked for a rotation (on accept).
const RELOAD_CHECK: Duration = Duration::from_secs(1);

/// Client certificates on the client listener.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientAuth {
    /// Every client must present a certificate signed by the CA.
    Required,
    /// A certificate is checked when presented; clients without one are
    /// accepted (as `anonymous` or a token's principal).
    Optional,
    /// Certificates are not asked for.
    None,
}

/// Where the TLS material lives.
#[derive(Clone, Debug)]
pub struct TlsSettings {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca: PathBuf,
    pub client_auth: ClientAuth,
}

/// Why TLS material cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("{path}: {why}")]
    Invalid { path: PathBuf, why: String },
    #[error("TLS configuration: {0}")]
    Config(String),
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_owned(),
        source,
    })
}

fn invalid(path: &Path, why: impl Into<String>) -> TlsError {
    TlsError::Invalid {
        path: path.to_owned(),
        why: why.into(),
    }
}

/// Every certificate in a PEM file (at least one).
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid(path, format!("not a PEM certificate file: {e}")))?;
    if certs.is_empty() {
        return Err(invalid(path, "no certificate in the file"));
    }
    Ok(certs)
}

/// The private key of a PEM file.
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem = read(path)?;
    PrivateKeyDer::from_pem_slice(&pem)
        .map_err(|e| invalid(path, format!("no usable private key: {e}")))
}

fn load_roots(path: &Path) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for c in load_certs(path)? {
        roots
            .add(c)
            .map_err(|e| invalid(path, format!("not a usable CA certificate: {e}")))?;
    }
    Ok(roots)
}

impl TlsSettings {
    /// Loads everything once: the files exist, parse, and the key matches.
    pub fn check(&self) -> Result<(), TlsError> {
        self.server_config(self.client_auth)?;
        self.server_config(ClientAuth::Required)?;
        Ok(())
    }

    /// A rustls server configuration from the files as they are now.
    pub fn server_config(&self, auth: ClientAuth) -> Result<ServerConfig, TlsError> {
        let provider = provider();
        let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| TlsError::Config(e.to_string()))?;
        let builder = match auth {
            ClientAuth::None => builder.with_no_client_auth(),
            ClientAuth::Optional | ClientAuth::Required => {
                let roots = Arc::new(load_roots(&self.ca)?);
                let v = WebPkiClientVerifier::builder_with_provider(roots, provider);
                let v = if auth == ClientAuth::Optional {
                    v.allow_unauthenticated()
                } else {
                    v
                };
                let v = v
                    .build()
                    .map_err(|e| invalid(&self.ca, format!("cannot verify clients: {e}")))?;
                builder.with_client_cert_verifier(v)
            }
        };
        let certs = load_certs(&self.cert)?;
        let key = load_key(&self.key)?;
        let mut cfg = builder
            .with_single_cert(certs, key)
            .map_err(|e| invalid(&self.key, format!("does not fit the certificate: {e}")))?;
        cfg.alpn_protocols = vec![b"h2".to_vec()];
        Ok(cfg)
    }

    /// The TLS side of a link to another broker: its certificate must be
    /// signed by the CA, and this broker presents its own.
    pub fn peer_client(&self) -> Result<ClientTlsConfig, TlsError> {
        Ok(ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(read(&self.ca)?))
            .identity(Identity::from_pem(read(&self.cert)?, read(&self.key)?)))
    }

    fn stamp(&self) -> Vec<Option<(SystemTime, u64)>> {
        [&self.cert, &self.key, &self.ca]
            .iter()
            .map(|p| {
                fs::metadata(p)
                    .ok()
                    .and_then(|m| Some((m.modified().ok()?, m.len())))
            })
            .collect()
    }
}

/// `http://addr` or `https://addr`, with TLS applied, for a link to another
/// broker.
pub fn peer_endpoint(tls: Option<&TlsSettings>, addr: &str) -> Result<Endpoint, String> {
    let scheme = if tls.is_some() { "https" } else { "http" };
    let ep = Endpoint::from_shared(format!("{scheme}://{addr}"))
        .map_err(|e| format!("bad peer address '{addr}': {e}"))?;
    match tls {
        None => Ok(ep),
        Some(t) => {
            let cfg = t.peer_client().map_err(|e| e.to_string())?;
            ep.tls_config(cfg).map_err(|e| format!("peer TLS: {e}"))
        }
    }
}

struct Loaded {
    config: Arc<ServerConfig>,
    stamp: Vec<Option<(SystemTime, u64)>>,
}

/// The current server configuration of one listener, reloaded when the
/// files change.
pub struct ReloadingConfig {
    settings: TlsSettings,
    auth: ClientAuth,
    /// ALPN protocols offered (h2 for gRPC, http/1.1 for the HTTP listener).
    alpn: Vec<Vec<u8>>,
    loaded: RwLock<Loaded>,
    last_check: Mutex<Instant>,
}

impl ReloadingConfig {
    /// A gRPC listener's configuration (ALPN h2).
    pub fn new(settings: TlsSettings, auth: ClientAuth) -> Result<Arc<Self>, TlsError> {
        Self::with_alpn(settings, auth, vec![b"h2".to_vec()])
    }

    /// A configuration that offers `alpn` (e.g. `http/1.1`).
    pub fn with_alpn(
        settings: TlsSettings,
        auth: ClientAuth,
        alpn: Vec<Vec<u8>>,
    ) -> Result<Arc<Self>, TlsError> {
        let stamp = settings.stamp();
        let mut config = settings.server_config(auth)?;
        config.alpn_protocols = alpn.clone();
        let config = Arc::new(config);
        Ok(Arc::new(Self {
            settings,
            auth,
            alpn,
            loaded: RwLock::new(Loaded { config, stamp }),
            last_check: Mutex::new(Instant::now()),
        }))
    }

    /// The configuration for a new connection.
    pub fn current(&self) -> Arc<ServerConfig> {
        self.reload_if_changed();
        Arc::clone(&self.loaded.read().unwrap_or_else(|e| e.into_inner()).config)
    }

    fn reload_if_changed(&self) {
        {
            let mut last = self.last_check.lock().unwrap_or_else(|e| e.into_inner());
            if last.elapsed() < RELOAD_CHECK {
                return;
            }
            *last = Instant::now();
        }
        let stamp = self.settings.stamp();
        if stamp == self.loaded.read().unwrap_or_else(|e| e.into_inner()).stamp {
            return;
        }
        match self.settings.server_config(self.auth) {
            Ok(mut cfg) => {
                cfg.alpn_protocols = self.alpn.clone();
                let mut l = self.loaded.write().unwrap_or_else(|e| e.into_inner());
                l.config = Arc::new(cfg);
                l.stamp = stamp;
                tracing::info!(cert = %self.settings.cert.display(), "TLS certificate files reloaded");
            }
            Err(e) => {
                // Keep serving with the previous files; retry on the next change.
                self.loaded.write().unwrap_or_else(|e| e.into_inner()).stamp = stamp;
                tracing::warn!(error = %e, "new TLS files do not load; keeping the previous ones");
            }
        }
    }
}

/// Accepts TCP connections on `listener` and yields those that complete a
/// TLS handshake; a failed handshake is logged and dropped. Stops when the
/// returned stream is dropped.
pub fn incoming(
    listener: TcpListener,
    config: Arc<ReloadingConfig>,
    what: &'static str,
) -> ReceiverStream<io::Result<TlsStream<TcpStream>>> {
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    tokio::spawn(async move {
        loop {
            let (tcp, peer) = tokio::select! {
                r = listener.accept() => match r {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::warn!(listener = what, error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                () = tx.closed() => return,
            };
            let _ = tcp.set_nodelay(true);
            let config = Arc::clone(&config);
            let tx = tx.clone();
            tokio::spawn(async move {
                if let Some(stream) = handshake(&config, tcp, peer, what).await {
                    let _ = tx.send(Ok(stream)).await;
                }
            });
        }
    });
    ReceiverStream::new(rx)
}

/// Completes the server side of a TLS handshake with the listener's
/// current configuration (bounded in time); a refusal is logged.
pub async fn handshake(
    config: &ReloadingConfig,
    tcp: TcpStream,
    peer: SocketAddr,
    what: &str,
) -> Option<TlsStream<TcpStream>> {
    let acceptor = TlsAcceptor::from(config.current());
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
        Ok(Ok(stream)) => Some(stream),
        Ok(Err(e)) => {
            refused(what, peer, &e.to_string());
            None
        }
        Err(_) => {
            refused(what, peer, "handshake timed out");
            None
        }
    }
}

fn refused(what: &str, peer: SocketAddr, why: &str) {
    tracing::info!(listener = what, %peer, reason = why, "TLS handshake refused");
}

/// Connects to another broker's listener at `addr` (HOST:PORT); `None` when
/// it cannot be reached within `connect`. Calls on the channel time out
/// after `call`.
pub async fn connect_broker(
    tls: Option<&TlsSettings>,
    addr: &str,
    connect: Duration,
    call: Duration,
) -> Option<tonic::transport::Channel> {
    let ep = peer_endpoint(tls, addr)
        .ok()?
        .connect_timeout(connect)
        .timeout(call);
    // The connect timeout covers TCP only: a listener that is bound but not
    // serving yet would hold a TLS handshake forever.
    tokio::time::timeout(connect * 2, ep.connect())
        .await
        .ok()?
        .ok()
}
