//! Broker configuration: defaults, then a TOML file (`--config`), then
//! `STRATA_*` environment variables, then flags — each later source wins.
//! Everything is validated at start; a bad value stops the broker with one
//! clear line naming the setting.
//!
//! What can be set, and from where, is in `options` ([`Args`], and the
//! config file with the same settings); merging the sources into a
//! [`BrokerConfig`] and validating every value is in `validate`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::log::LogConfig;

mod options;
mod validate;

pub use options::Args;

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
    pub offsets_segment_bytes: u64,
    pub metadata_snapshot_entries: u64,
    pub log_format: LogFormat,
    pub log_level: String,
    pub peer_listen: SocketAddr,
    /// HTTP listener (`None`: off).
    pub http_listen: Option<SocketAddr>,
    /// The Kafka-protocol listener and Kafka's topic defaults.
    pub kafka: KafkaSettings,
    /// Initial members in the given order: (node id, peer address).
    pub initial_cluster: Vec<(u64, String)>,
    pub controller_voters: usize,
    /// TLS on every listener and link (`None`: plaintext).
    pub tls: Option<crate::security::tls::TlsSettings>,
    /// Principals and ACL enforcement.
    pub auth: crate::security::auth::Authorizer,
    pub tier: crate::tier::TierSettings,
    pub cleaner: CleanerSettings,
}

/// The log cleaner's pool (compaction of compacted topics).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CleanerSettings {
    /// 0: compaction is off.
    pub threads: usize,
    /// Combined read and write rate of the pool (`None`: unlimited).
    pub io_bytes_per_sec: Option<u64>,
    /// Memory of the key maps, split between the threads.
    pub dedupe_buffer_bytes: u64,
    /// Wait of an idle cleaner before it looks for work again.
    pub backoff: Duration,
}

impl CleanerSettings {
    /// One thread's share of the key-map memory (what one pass, local or
    /// remote, maps keys in); `None` when compaction is off.
    pub fn map_bytes_per_pass(&self) -> Option<usize> {
        let share = self.dedupe_buffer_bytes / self.threads.max(1) as u64;
        (self.threads > 0).then(|| usize::try_from(share).unwrap_or(usize::MAX))
    }
}

/// The Kafka-protocol listener and the broker settings Kafka clients
/// expect (auto topic creation and its defaults).
#[derive(Clone, Debug)]
pub struct KafkaSettings {
    /// `None`: off.
    pub listen: Option<SocketAddr>,
    /// What Metadata tells clients (`None`: the bound address).
    pub advertise: Option<String>,
    pub auto_create_topics: bool,
    pub num_partitions: u32,
    /// Capped at the number of brokers.
    pub default_replication_factor: u32,
    pub sasl: SaslMode,
}

/// SASL on the Kafka listener.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SaslMode {
    /// No SASL: principals from TLS certificates, else anonymous.
    Off,
    /// Clients may authenticate; those that do not are anonymous (or their
    /// certificate's principal).
    Optional,
    /// Every client authenticates before anything else.
    Required,
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

#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {0}")]
pub struct ConfigError(pub String);
