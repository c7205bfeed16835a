//! Broker configuration: defaults, then a TOML file (`--config`), then
//! `STRATA_*` environment variables, then flags — each later source wins.
//! Everything is validated at start; a bad value stops the broker with one
//! clear line naming the setting.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Parser;
use serde::Deserialize;

use crate::log::{FsyncPolicy, LogConfig};

/// `stratad` command line. Every flag can also be set in the config file
/// (same name with `_` instead of `-`) or as `STRATA_<NAME>`.
#[derive(Parser, Debug, Default)]
#[command(name = "stratad", version, about = "strata broker daemon")]
pub struct Args {
    /// TOML configuration file.
    #[arg(long, env = "STRATA_CONFIG")]
    pub config: Option<PathBuf>,
    /// This broker's id (>= 1).
    #[arg(long, env = "STRATA_NODE_ID")]
    pub node_id: Option<u64>,
    /// Where partition logs and metadata live.
    #[arg(long, env = "STRATA_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Client gRPC listener.
    #[arg(long, env = "STRATA_LISTEN")]
    pub listen: Option<String>,
    /// Address clients are told to use for this broker (defaults to --listen).
    #[arg(long, env = "STRATA_ADVERTISE")]
    pub advertise: Option<String>,
    /// Default fsync policy of topics: always | interval:<ms> | never.
    #[arg(long, env = "STRATA_FSYNC")]
    pub fsync: Option<String>,
    /// Default segment size in bytes.
    #[arg(long, env = "STRATA_SEGMENT_BYTES")]
    pub segment_bytes: Option<u64>,
    /// Default retention in milliseconds (-1 = forever).
    #[arg(long, env = "STRATA_RETENTION_MS", allow_hyphen_values = true)]
    pub retention_ms: Option<i64>,
    /// Default retention in bytes per partition (-1 = unlimited).
    #[arg(long, env = "STRATA_RETENTION_BYTES", allow_hyphen_values = true)]
    pub retention_bytes: Option<i64>,
    /// Default largest accepted batch in bytes.
    #[arg(long, env = "STRATA_MAX_MESSAGE_BYTES")]
    pub max_message_bytes: Option<u32>,
    /// How often retention and time-based rolling run, e.g. 30s or 500ms.
    #[arg(long, env = "STRATA_RETENTION_CHECK_INTERVAL")]
    pub retention_check_interval: Option<String>,
    /// Partitions of the internal consumer-offsets topic (fixed at first start).
    #[arg(long, env = "STRATA_OFFSETS_PARTITIONS")]
    pub offsets_partitions: Option<u32>,
    /// Log format: text | json.
    #[arg(long, env = "STRATA_LOG_FORMAT")]
    pub log_format: Option<String>,
    /// Log filter, e.g. info or strata_broker=debug.
    #[arg(long, env = "STRATA_LOG_LEVEL")]
    pub log_level: Option<String>,
    /// Listener for other brokers (Raft and internal RPCs).
    #[arg(long, env = "STRATA_PEER_LISTEN")]
    pub peer_listen: Option<String>,
    /// HTTP listener for /health and /ready (`off` to disable).
    #[arg(long, env = "STRATA_HTTP_LISTEN")]
    pub http_listen: Option<String>,
    /// Initial cluster members: `1=HOST:PORT,2=HOST:PORT,...` (peer addresses).
    #[arg(long, env = "STRATA_INITIAL_CLUSTER")]
    pub initial_cluster: Option<String>,
    /// How many of the initial brokers vote in the controller group.
    #[arg(long, env = "STRATA_CONTROLLER_VOTERS")]
    pub controller_voters: Option<usize>,
    /// Certificate chain (PEM) of this broker: turns TLS on for every
    /// listener and mutual TLS between brokers.
    #[arg(long, env = "STRATA_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// Private key (PEM) of `--tls-cert`.
    #[arg(long, env = "STRATA_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// CA certificates (PEM) that sign brokers and client certificates.
    #[arg(long, env = "STRATA_TLS_CA")]
    pub tls_ca: Option<PathBuf>,
    /// Client certificates on the client listener: required | optional | none.
    #[arg(long, env = "STRATA_TLS_CLIENT_AUTH")]
    pub tls_client_auth: Option<String>,
    /// Which part of a client certificate is the principal: cn | san.
    #[arg(long, env = "STRATA_TLS_PRINCIPAL")]
    pub tls_principal: Option<String>,
    /// Token file: `principal:sha256-hex-of-token` per line.
    #[arg(long, env = "STRATA_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
    /// ACL enforcement: auto (once any ACL exists) | on | off.
    #[arg(long, env = "STRATA_AUTHORIZATION")]
    pub authorization: Option<String>,
    /// Principals that bypass ACLs (comma-separated).
    #[arg(long, env = "STRATA_SUPERUSERS", value_delimiter = ',')]
    pub superusers: Option<Vec<String>>,
    /// Object storage of tiered topics: file:///DIR or s3://BUCKET[/PREFIX]
    /// (default: file://DATA_DIR/objects).
    #[arg(long, env = "STRATA_OBJECT_STORE")]
    pub object_store: Option<String>,
    /// S3 endpoint URL (S3-compatible stores); default AWS_ENDPOINT or AWS.
    #[arg(long, env = "STRATA_S3_ENDPOINT")]
    pub s3_endpoint: Option<String>,
    /// S3 region; default AWS_REGION.
    #[arg(long, env = "STRATA_S3_REGION")]
    pub s3_region: Option<String>,
    /// S3 access key id; default AWS_ACCESS_KEY_ID.
    #[arg(long, env = "STRATA_S3_ACCESS_KEY_ID")]
    pub s3_access_key_id: Option<String>,
    /// S3 secret access key; default AWS_SECRET_ACCESS_KEY.
    #[arg(long, env = "STRATA_S3_SECRET_ACCESS_KEY", hide_env_values = true)]
    pub s3_secret_access_key: Option<String>,
    /// Path-style S3 requests (default true with --s3-endpoint).
    #[arg(long, env = "STRATA_S3_PATH_STYLE")]
    pub s3_path_style: Option<bool>,
    /// Sign S3 request bodies with SHA-256 (default: UNSIGNED-PAYLOAD; the
    /// data carries CRCs checked on every read).
    #[arg(long, env = "STRATA_S3_SIGNED_PAYLOAD")]
    pub s3_signed_payload: Option<bool>,
    /// Allow plain-HTTP S3 endpoints (default true for http:// endpoints).
    #[arg(long, env = "STRATA_S3_ALLOW_HTTP")]
    pub s3_allow_http: Option<bool>,
    /// Memory for cached chunks of remote segments, in bytes.
    #[arg(long, env = "STRATA_TIER_CACHE_BYTES")]
    pub tier_cache_bytes: Option<u64>,
    /// Bytes per ranged GET of remote data (64 KiB to 64 MiB).
    #[arg(long, env = "STRATA_TIER_CHUNK_BYTES")]
    pub tier_chunk_bytes: Option<u64>,
    /// Average upload rate cap per broker in bytes/s (0 = unlimited).
    #[arg(long, env = "STRATA_TIER_UPLOAD_BYTES_PER_SEC")]
    pub tier_upload_bytes_per_sec: Option<u64>,
    /// Segment uploads in flight per broker.
    #[arg(long, env = "STRATA_TIER_MAX_UPLOADS")]
    pub tier_max_uploads: Option<usize>,
    /// How often leaders look for sealed segments to upload, e.g. 1s.
    #[arg(long, env = "STRATA_TIER_UPLOAD_INTERVAL")]
    pub tier_upload_interval: Option<String>,
}

/// The config file: the same settings as the flags.
#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    node_id: Option<u64>,
    data_dir: Option<PathBuf>,
    listen: Option<String>,
    advertise: Option<String>,
    fsync: Option<String>,
    segment_bytes: Option<u64>,
    retention_ms: Option<i64>,
    retention_bytes: Option<i64>,
    max_message_bytes: Option<u32>,
    retention_check_interval: Option<String>,
    offsets_partitions: Option<u32>,
    log_format: Option<String>,
    log_level: Option<String>,
    peer_listen: Option<String>,
    http_listen: Option<String>,
    initial_cluster: Option<String>,
    controller_voters: Option<usize>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    tls_ca: Option<PathBuf>,
    tls_client_auth: Option<String>,
    tls_principal: Option<String>,
    token_file: Option<PathBuf>,
    authorization: Option<String>,
    superusers: Option<Vec<String>>,
    object_store: Option<String>,
    s3_endpoint: Option<String>,
    s3_region: Option<String>,
    s3_access_key_id: Option<String>,
    s3_secret_access_key: Option<String>,
    s3_path_style: Option<bool>,
    s3_allow_http: Option<bool>,
    s3_signed_payload: Option<bool>,
    tier_cache_bytes: Option<u64>,
    tier_max_uploads: Option<usize>,
    tier_upload_interval: Option<String>,
    tier_chunk_bytes: Option<u64>,
    tier_upload_bytes_per_sec: Option<u64>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// The validated configuration.
#[derive(Clone, Debug)]
pub struct BrokerConfig {
    pub node_id: u64,
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    pub advertise: String,
    pub log_defaults: LogConfig,
    pub retention_check_interval: Duration,
    pub offsets_partitions: u32,
    pub log_format: LogFormat,
    pub log_level: String,
    pub peer_listen: SocketAddr,
    /// HTTP listener (`None`: off).
    pub http_listen: Option<SocketAddr>,
    /// Initial members in the given order: (node id, peer address).
    pub initial_cluster: Vec<(u64, String)>,
    pub controller_voters: usize,
    /// TLS on every listener and link (`None`: plaintext).
    pub tls: Option<crate::security::tls::TlsSettings>,
    /// Principals and ACL enforcement.
    pub auth: crate::security::auth::Authorizer,
    pub tier: crate::tier::TierSettings,
}

impl BrokerConfig {
    /// Ids of the initial cluster, sorted: what every member must agree on.
    pub fn cluster_fingerprint(&self) -> String {
        let mut ids: Vec<u64> = self.initial_cluster.iter().map(|(i, _)| *i).collect();
        ids.sort_unstable();
        let ids: Vec<String> = ids.iter().map(u64::to_string).collect();
        format!("{}/{}", ids.join(","), self.controller_voters)
    }
}

/// Principal mapping, tokens, enforcement and superusers. The principal of
/// this broker's own certificate is a superuser: brokers forward requests
/// (group calls) with it, after checking the original caller.
fn authorizer(
    principal: Option<String>,
    token_file: Option<PathBuf>,
    mode: Option<String>,
    superusers: Option<Vec<String>>,
    tls: Option<&crate::security::tls::TlsSettings>,
) -> Result<crate::security::auth::Authorizer, ConfigError> {
    use crate::security::auth::{Authorizer, AuthzMode, PrincipalFrom};
    let from = match principal.as_deref() {
        None | Some("cn") => PrincipalFrom::CommonName,
        Some("san") => PrincipalFrom::SubjectAltName,
        Some(o) => return err(format!("tls-principal '{o}': expected cn or san")),
    };
    let mode = match mode.as_deref() {
        None | Some("auto") => AuthzMode::Auto,
        Some("on") => AuthzMode::On,
        Some("off") => AuthzMode::Off,
        Some(o) => return err(format!("authorization '{o}': expected auto, on or off")),
    };
    let mut supers: std::collections::HashSet<String> = superusers
        .unwrap_or_default()
        .into_iter()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .collect();
    let mut a = Authorizer::new(mode, Default::default(), from);
    if let Some(t) = tls {
        let certs =
            crate::security::tls::load_certs(&t.cert).map_err(|e| ConfigError(e.to_string()))?;
        if let Some(me) = certs.first().and_then(|c| a.cert_principal(c.as_ref())) {
            supers.insert(me);
        }
    }
    a.superusers = supers;
    if let Some(path) = token_file {
        a.load_tokens(&path).map_err(ConfigError)?;
    }
    Ok(a)
}

/// Checks the TLS flags belong together and the files load.
fn tls_settings(
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    ca: Option<PathBuf>,
    client_auth: Option<String>,
) -> Result<Option<crate::security::tls::TlsSettings>, ConfigError> {
    use crate::security::tls::ClientAuth;
    let (cert, key) = match (cert, key) {
        (None, None) => {
            if ca.is_some() || client_auth.is_some() {
                return err("tls-ca and tls-client-auth need tls-cert and tls-key");
            }
            return Ok(None);
        }
        (Some(c), Some(k)) => (c, k),
        (Some(_), None) => return err("tls-cert needs tls-key"),
        (None, Some(_)) => return err("tls-key needs tls-cert"),
    };
    let Some(ca) = ca else {
        return err("tls-ca is required with TLS: brokers verify each other with it");
    };
    let client_auth = match client_auth.as_deref() {
        None | Some("none") => ClientAuth::None,
        Some("optional") => ClientAuth::Optional,
        Some("required") => ClientAuth::Required,
        Some(o) => {
            return err(format!(
                "tls-client-auth '{o}': expected required, optional or none"
            ));
        }
    };
    let s = crate::security::tls::TlsSettings {
        cert,
        key,
        ca,
        client_auth,
    };
    // Fail at start, with the file named, rather than at the first handshake.
    s.check().map_err(|e| ConfigError(e.to_string()))?;
    Ok(Some(s))
}

fn parse_cluster(s: &str) -> Result<Vec<(u64, String)>, ConfigError> {
    let mut out: Vec<(u64, String)> = Vec::new();
    for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let Some((id, addr)) = item.split_once('=') else {
            return err(format!("initial-cluster '{item}': expected ID=HOST:PORT"));
        };
        let id: u64 = id
            .trim()
            .parse()
            .ok()
            .filter(|i| *i > 0)
            .ok_or_else(|| ConfigError(format!("initial-cluster '{item}': bad node id")))?;
        let addr = addr.trim();
        if addr
            .rsplit_once(':')
            .is_none_or(|(h, p)| h.is_empty() || p.parse::<u16>().is_err())
        {
            return err(format!("initial-cluster '{item}': expected ID=HOST:PORT"));
        }
        if out.iter().any(|(i, _)| *i == id) {
            return err(format!("initial-cluster: node id {id} appears twice"));
        }
        out.push((id, addr.to_owned()));
    }
    if out.is_empty() {
        return err("initial-cluster is empty");
    }
    Ok(out)
}

#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {0}")]
pub struct ConfigError(pub String);

fn err<T>(msg: impl Into<String>) -> Result<T, ConfigError> {
    Err(ConfigError(msg.into()))
}

impl BrokerConfig {
    /// Merges the sources and validates the result.
    pub fn load(args: Args) -> Result<Self, ConfigError> {
        let file = match &args.config {
            Some(p) => read_file(p)?,
            None => FileConfig::default(),
        };
        let node_id = args.node_id.or(file.node_id).unwrap_or(1);
        if node_id == 0 {
            return err("node-id must be >= 1");
        }
        let data_dir = args
            .data_dir
            .or(file.data_dir)
            .unwrap_or_else(|| PathBuf::from("./strata-data"));
        let listen_s = args
            .listen
            .or(file.listen)
            .unwrap_or_else(|| "127.0.0.1:9292".into());
        let listen: SocketAddr = listen_s.parse().map_err(|_| {
            ConfigError(format!(
                "listen '{listen_s}': expected HOST:PORT with an IP address"
            ))
        })?;
        let advertise = args
            .advertise
            .or(file.advertise)
            .unwrap_or_else(|| listen.to_string());
        if advertise
            .rsplit_once(':')
            .is_none_or(|(_, p)| p.parse::<u16>().is_err())
        {
            return err(format!("advertise '{advertise}': expected HOST:PORT"));
        }
        let mut log = LogConfig::default();
        if let Some(f) = args.fsync.or(file.fsync) {
            log.fsync = f
                .parse::<FsyncPolicy>()
                .map_err(|e| ConfigError(format!("fsync: {e}")))?;
        }
        if let Some(b) = args.segment_bytes.or(file.segment_bytes) {
            if !(1024..=i32::MAX as u64).contains(&b) {
                return err(format!(
                    "segment-bytes {b}: must be between 1024 and {}",
                    i32::MAX
                ));
            }
            log.segment_bytes = b;
        }
        if let Some(ms) = args.retention_ms.or(file.retention_ms) {
            if ms < -1 {
                return err(format!("retention-ms {ms}: must be -1 (forever) or >= 0"));
            }
            log.retention_ms = (ms >= 0).then_some(ms);
        }
        if let Some(b) = args.retention_bytes.or(file.retention_bytes) {
            if b < -1 {
                return err(format!(
                    "retention-bytes {b}: must be -1 (unlimited) or >= 0"
                ));
            }
            log.retention_bytes = (b >= 0).then_some(b as u64);
        }
        if let Some(m) = args.max_message_bytes.or(file.max_message_bytes) {
            if !(128..=crate::cluster::topic_config::MAX_MESSAGE_BYTES).contains(&m) {
                return err(format!(
                    "max-message-bytes {m}: must be between 128 and {}",
                    crate::cluster::topic_config::MAX_MESSAGE_BYTES
                ));
            }
            log.max_message_bytes = m;
        }
        let rci = args
            .retention_check_interval
            .or(file.retention_check_interval)
            .unwrap_or_else(|| "30s".into());
        let retention_check_interval = humantime::parse_duration(&rci)
            .map_err(|e| ConfigError(format!("retention-check-interval '{rci}': {e}")))?;
        if retention_check_interval < Duration::from_millis(10) {
            return err("retention-check-interval must be at least 10ms");
        }
        let offsets_partitions = args
            .offsets_partitions
            .or(file.offsets_partitions)
            .unwrap_or(8);
        if !(1..=1000).contains(&offsets_partitions) {
            return err("offsets-partitions must be between 1 and 1000");
        }
        let log_format = match args.log_format.or(file.log_format).as_deref() {
            None | Some("text") => LogFormat::Text,
            Some("json") => LogFormat::Json,
            Some(o) => return err(format!("log-format '{o}': expected text or json")),
        };
        let log_level = args
            .log_level
            .or(file.log_level)
            .unwrap_or_else(|| "info".into());
        let peer_s = args
            .peer_listen
            .or(file.peer_listen)
            .unwrap_or_else(|| "127.0.0.1:9293".into());
        let peer_listen: SocketAddr = peer_s.parse().map_err(|_| {
            ConfigError(format!(
                "peer-listen '{peer_s}': expected HOST:PORT with an IP address"
            ))
        })?;
        let http_s = args
            .http_listen
            .or(file.http_listen)
            .unwrap_or_else(|| "127.0.0.1:9294".into());
        let http_listen = if http_s == "off" {
            None
        } else {
            Some(http_s.parse::<SocketAddr>().map_err(|_| {
                ConfigError(format!(
                    "http-listen '{http_s}': expected HOST:PORT with an IP address, or off"
                ))
            })?)
        };
        let initial_cluster = match args.initial_cluster.or(file.initial_cluster) {
            Some(s) => parse_cluster(&s)?,
            None => vec![(node_id, peer_listen.to_string())],
        };
        let controller_voters = args
            .controller_voters
            .or(file.controller_voters)
            .unwrap_or(3);
        if controller_voters == 0 {
            return err("controller-voters must be at least 1");
        }
        let controller_voters = controller_voters.min(initial_cluster.len());
        let tls = tls_settings(
            args.tls_cert.or(file.tls_cert),
            args.tls_key.or(file.tls_key),
            args.tls_ca.or(file.tls_ca),
            args.tls_client_auth.or(file.tls_client_auth),
        )?;
        let auth = authorizer(
            args.tls_principal.or(file.tls_principal),
            args.token_file.or(file.token_file),
            args.authorization.or(file.authorization),
            args.superusers.or(file.superusers),
            tls.as_ref(),
        )?;
        let default_store = || {
            let dir = std::path::absolute(&data_dir).unwrap_or_else(|_| data_dir.clone());
            format!("file://{}", dir.join("objects").display())
        };
        let upload_every = args
            .tier_upload_interval
            .or(file.tier_upload_interval)
            .unwrap_or_else(|| "1s".into());
        let upload_interval = humantime::parse_duration(&upload_every)
            .map_err(|e| ConfigError(format!("tier-upload-interval '{upload_every}': {e}")))?;
        if upload_interval < Duration::from_millis(10) {
            return err("tier-upload-interval must be at least 10ms");
        }
        let max_uploads = args.tier_max_uploads.or(file.tier_max_uploads).unwrap_or(4);
        if !(1..=256).contains(&max_uploads) {
            return err("tier-max-uploads must be between 1 and 256");
        }
        let chunk_bytes = args
            .tier_chunk_bytes
            .or(file.tier_chunk_bytes)
            .unwrap_or(256 << 10);
        if !((64 << 10)..=(64 << 20)).contains(&chunk_bytes) {
            return err("tier-chunk-bytes must be between 65536 and 67108864");
        }
        let tier = crate::tier::TierSettings {
            chunk_bytes,
            url: args
                .object_store
                .or(file.object_store)
                .unwrap_or_else(default_store),
            endpoint: args.s3_endpoint.or(file.s3_endpoint),
            region: args.s3_region.or(file.s3_region),
            access_key_id: args.s3_access_key_id.or(file.s3_access_key_id),
            secret_access_key: args.s3_secret_access_key.or(file.s3_secret_access_key),
            path_style: args.s3_path_style.or(file.s3_path_style),
            signed_payload: args
                .s3_signed_payload
                .or(file.s3_signed_payload)
                .unwrap_or(false),
            allow_http: args.s3_allow_http.or(file.s3_allow_http),
            cache_bytes: args
                .tier_cache_bytes
                .or(file.tier_cache_bytes)
                .unwrap_or(256 << 20),
            max_uploads,
            upload_bytes_per_sec: args
                .tier_upload_bytes_per_sec
                .or(file.tier_upload_bytes_per_sec)
                .unwrap_or(0),
            upload_interval,
        };
        if !(tier.url.starts_with("file:///") || tier.url.starts_with("s3://")) {
            return err(format!(
                "object-store '{}': expected file:///DIR or s3://BUCKET[/PREFIX]",
                tier.url
            ));
        }
        Ok(Self {
            tier,
            auth,
            tls,
            node_id,
            data_dir,
            listen,
            advertise,
            peer_listen,
            http_listen,
            initial_cluster,
            controller_voters,
            log_defaults: log,
            retention_check_interval,
            offsets_partitions,
            log_format,
            log_level,
        })
    }
}

fn read_file(p: &Path) -> Result<FileConfig, ConfigError> {
    let text =
        std::fs::read_to_string(p).map_err(|e| ConfigError(format!("{}: {e}", p.display())))?;
    toml::from_str(&text).map_err(|e| {
        let msg = e.message().to_string();
        ConfigError(format!("{}: {msg}", p.display()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_overrides() {
        let c = BrokerConfig::load(Args::default()).unwrap();
        assert_eq!(c.listen.to_string(), "127.0.0.1:9292");
        assert_eq!(c.data_dir, PathBuf::from("./strata-data"));
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("s.toml");
        std::fs::write(
            &f,
            "node_id = 3\nfsync = \"always\"\nlisten = \"127.0.0.1:7000\"\n",
        )
        .unwrap();
        let c = BrokerConfig::load(Args {
            config: Some(f.clone()),
            listen: Some("127.0.0.1:7001".into()),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(c.node_id, 3);
        assert_eq!(c.log_defaults.fsync, FsyncPolicy::Always);
        assert_eq!(c.listen.port(), 7001, "flags win over the file");
        std::fs::write(&f, "nodeid = 3\n").unwrap();
        let e = BrokerConfig::load(Args {
            config: Some(f),
            ..Default::default()
        })
        .unwrap_err();
        assert!(e.to_string().contains("nodeid"), "{e}");
        for a in [
            Args {
                fsync: Some("sometimes".into()),
                ..Default::default()
            },
            Args {
                listen: Some("nowhere".into()),
                ..Default::default()
            },
            Args {
                node_id: Some(0),
                ..Default::default()
            },
            Args {
                segment_bytes: Some(10),
                ..Default::default()
            },
            Args {
                retention_check_interval: Some("soon".into()),
                ..Default::default()
            },
        ] {
            assert!(BrokerConfig::load(a).is_err());
        }
    }
}
