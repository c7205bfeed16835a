//! What the broker can be told: the `stratad` flags (each also a
//! `STRATA_*` environment variable) and the TOML config file, which holds
//! the same settings. Nothing is checked here beyond types (and unknown
//! keys in the file); see `validate`.

use std::path::{Path, PathBuf};

use clap::Parser;
use serde::Deserialize;

use super::ConfigError;

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
    /// Segment size of the (compacted) consumer-offsets topic, at its creation.
    #[arg(long, env = "STRATA_OFFSETS_SEGMENT_BYTES")]
    pub offsets_segment_bytes: Option<u64>,
    /// Metadata entries between snapshots of the metadata state (the log
    /// before a snapshot is dropped).
    #[arg(long, env = "STRATA_METADATA_SNAPSHOT_ENTRIES")]
    pub metadata_snapshot_entries: Option<u64>,
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
    /// Kafka-protocol listener (`off` to disable).
    #[arg(long, env = "STRATA_KAFKA_LISTEN")]
    pub kafka_listen: Option<String>,
    /// Address Kafka clients are told to use for this broker (defaults to
    /// --kafka-listen).
    #[arg(long, env = "STRATA_KAFKA_ADVERTISE")]
    pub kafka_advertise: Option<String>,
    /// Create a topic when a Kafka client produces to or asks for one that
    /// does not exist: true | false.
    #[arg(long, env = "STRATA_AUTO_CREATE_TOPICS")]
    pub auto_create_topics: Option<bool>,
    /// Partitions of a topic created without a count (auto-created or by a
    /// Kafka client that leaves it to the broker).
    #[arg(long, env = "STRATA_NUM_PARTITIONS")]
    pub num_partitions: Option<u32>,
    /// Replication factor of a topic created without one (capped at the
    /// number of brokers).
    #[arg(long, env = "STRATA_DEFAULT_REPLICATION_FACTOR")]
    pub default_replication_factor: Option<u32>,
    /// SASL on the Kafka listener (PLAIN, SCRAM-SHA-256/512): off |
    /// optional | required.
    #[arg(long, env = "STRATA_KAFKA_SASL")]
    pub kafka_sasl: Option<String>,
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
    /// Threads compacting the partitions of compacted topics (0 = off).
    #[arg(long, env = "STRATA_LOG_CLEANER_THREADS")]
    pub log_cleaner_threads: Option<usize>,
    /// The cleaners' combined read and write rate cap in bytes/s (0 = unlimited).
    #[arg(long, env = "STRATA_LOG_CLEANER_IO_BYTES_PER_SEC")]
    pub log_cleaner_io_bytes_per_sec: Option<u64>,
    /// Memory of the cleaners' key maps in bytes, shared by the threads.
    #[arg(long, env = "STRATA_LOG_CLEANER_DEDUPE_BUFFER_BYTES")]
    pub log_cleaner_dedupe_buffer_bytes: Option<u64>,
    /// How long a cleaner with nothing to clean waits before looking again, e.g. 5s.
    #[arg(long, env = "STRATA_LOG_CLEANER_BACKOFF")]
    pub log_cleaner_backoff: Option<String>,
}

/// The config file: the same settings as the flags.
#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct FileConfig {
    pub(super) node_id: Option<u64>,
    pub(super) data_dir: Option<PathBuf>,
    pub(super) listen: Option<String>,
    pub(super) advertise: Option<String>,
    pub(super) fsync: Option<String>,
    pub(super) segment_bytes: Option<u64>,
    pub(super) retention_ms: Option<i64>,
    pub(super) retention_bytes: Option<i64>,
    pub(super) max_message_bytes: Option<u32>,
    pub(super) retention_check_interval: Option<String>,
    pub(super) offsets_partitions: Option<u32>,
    pub(super) offsets_segment_bytes: Option<u64>,
    pub(super) metadata_snapshot_entries: Option<u64>,
    pub(super) log_format: Option<String>,
    pub(super) log_level: Option<String>,
    pub(super) peer_listen: Option<String>,
    pub(super) http_listen: Option<String>,
    pub(super) kafka_listen: Option<String>,
    pub(super) kafka_advertise: Option<String>,
    pub(super) kafka_sasl: Option<String>,
    pub(super) auto_create_topics: Option<bool>,
    pub(super) num_partitions: Option<u32>,
    pub(super) default_replication_factor: Option<u32>,
    pub(super) initial_cluster: Option<String>,
    pub(super) controller_voters: Option<usize>,
    pub(super) tls_cert: Option<PathBuf>,
    pub(super) tls_key: Option<PathBuf>,
    pub(super) tls_ca: Option<PathBuf>,
    pub(super) tls_client_auth: Option<String>,
    pub(super) tls_principal: Option<String>,
    pub(super) token_file: Option<PathBuf>,
    pub(super) authorization: Option<String>,
    pub(super) superusers: Option<Vec<String>>,
    pub(super) object_store: Option<String>,
    pub(super) s3_endpoint: Option<String>,
    pub(super) s3_region: Option<String>,
    pub(super) s3_access_key_id: Option<String>,
    pub(super) s3_secret_access_key: Option<String>,
    pub(super) s3_path_style: Option<bool>,
    pub(super) s3_allow_http: Option<bool>,
    pub(super) s3_signed_payload: Option<bool>,
    pub(super) tier_cache_bytes: Option<u64>,
    pub(super) tier_max_uploads: Option<usize>,
    pub(super) tier_upload_interval: Option<String>,
    pub(super) tier_chunk_bytes: Option<u64>,
    pub(super) tier_upload_bytes_per_sec: Option<u64>,
    pub(super) log_cleaner_threads: Option<usize>,
    pub(super) log_cleaner_io_bytes_per_sec: Option<u64>,
    pub(super) log_cleaner_dedupe_buffer_bytes: Option<u64>,
    pub(super) log_cleaner_backoff: Option<String>,
}

pub(super) fn read_file(p: &Path) -> Result<FileConfig, ConfigError> {
    let text =
        std::fs::read_to_string(p).map_err(|e| ConfigError(format!("{}: {e}", p.display())))?;
    toml::from_str(&text).map_err(|e| {
        let msg = e.message().to_string();
        ConfigError(format!("{}: {msg}", p.display()))
    })
}
