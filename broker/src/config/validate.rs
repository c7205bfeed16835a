//! From options to a [`BrokerConfig`]: each setting taken from its flag
//! (or environment variable), else the config file, else its default, and
//! checked; the TLS files and the token file are loaded here, so that a bad
//! one stops the start.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::options::{FileConfig, read_file};
use super::{Args, BrokerConfig, CleanerSettings, ConfigError, KafkaSettings, LogFormat, SaslMode};
use crate::log::{FsyncPolicy, LogConfig};

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

fn err<T>(msg: impl Into<String>) -> Result<T, ConfigError> {
    Err(ConfigError(msg.into()))
}

impl BrokerConfig {
    /// Merges the sources and validates the result.
    pub fn load(mut args: Args) -> Result<Self, ConfigError> {
        let mut file = match &args.config {
            Some(p) => read_file(p)?,
            None => FileConfig::default(),
        };
        let kafka = kafka_settings(&mut args, &mut file)?;
        let cleaner = cleaner_settings(&mut args, &mut file)?;
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
        let offsets_segment_bytes = args
            .offsets_segment_bytes
            .or(file.offsets_segment_bytes)
            .unwrap_or(16 << 20);
        if !(16384..=(1u64 << 30)).contains(&offsets_segment_bytes) {
            return err("offsets-segment-bytes must be between 16384 and 1073741824");
        }
        let metadata_snapshot_entries = args
            .metadata_snapshot_entries
            .or(file.metadata_snapshot_entries)
            .unwrap_or(20_000);
        if !(100..=100_000_000).contains(&metadata_snapshot_entries) {
            return err("metadata-snapshot-entries must be between 100 and 100000000");
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
            cleaner,
            tier,
            auth,
            tls,
            node_id,
            data_dir,
            listen,
            advertise,
            peer_listen,
            http_listen,
            kafka,
            initial_cluster,
            controller_voters,
            log_defaults: log,
            retention_check_interval,
            offsets_partitions,
            offsets_segment_bytes,
            metadata_snapshot_entries,
            log_format,
            log_level,
        })
    }
}

/// The log cleaner's pool.
fn cleaner_settings(
    args: &mut Args,
    file: &mut FileConfig,
) -> Result<CleanerSettings, ConfigError> {
    let threads = args
        .log_cleaner_threads
        .or(file.log_cleaner_threads)
        .unwrap_or(1);
    if threads > 16 {
        return err("log-cleaner-threads must be between 0 and 16");
    }
    let io = args
        .log_cleaner_io_bytes_per_sec
        .or(file.log_cleaner_io_bytes_per_sec)
        .unwrap_or(DEFAULT_CLEANER_IO_BYTES_PER_SEC);
    let dedupe = args
        .log_cleaner_dedupe_buffer_bytes
        .or(file.log_cleaner_dedupe_buffer_bytes)
        .unwrap_or(128 << 20);
    if !((1 << 20)..=(64 << 30)).contains(&dedupe) {
        return err("log-cleaner-dedupe-buffer-bytes must be between 1 MiB and 64 GiB");
    }
    let backoff_s = args
        .log_cleaner_backoff
        .take()
        .or(file.log_cleaner_backoff.take())
        .unwrap_or_else(|| "5s".into());
    let backoff = humantime::parse_duration(&backoff_s)
        .map_err(|e| ConfigError(format!("log-cleaner-backoff '{backoff_s}': {e}")))?;
    if backoff < Duration::from_millis(10) {
        return err("log-cleaner-backoff must be at least 10ms");
    }
    Ok(CleanerSettings {
        threads,
        io_bytes_per_sec: (io > 0).then_some(io),
        dedupe_buffer_bytes: dedupe,
        backoff,
    })
}

/// Default I/O cap of the cleaner pool: cleaning stays in the background
/// of produce and fetch traffic.
const DEFAULT_CLEANER_IO_BYTES_PER_SEC: u64 = 64 << 20;

/// The Kafka listener's settings.
fn kafka_settings(args: &mut Args, file: &mut FileConfig) -> Result<KafkaSettings, ConfigError> {
    let listen_s = args
        .kafka_listen
        .take()
        .or(file.kafka_listen.take())
        .unwrap_or_else(|| "127.0.0.1:9092".into());
    let listen = if listen_s == "off" {
        None
    } else {
        Some(listen_s.parse::<SocketAddr>().map_err(|_| {
            ConfigError(format!(
                "kafka-listen '{listen_s}': expected HOST:PORT with an IP address, or off"
            ))
        })?)
    };
    let advertise = args.kafka_advertise.take().or(file.kafka_advertise.take());
    if let Some(a) = &advertise
        && a.rsplit_once(':')
            .is_none_or(|(h, p)| h.is_empty() || p.parse::<u16>().is_err())
    {
        return Err(ConfigError(format!(
            "kafka-advertise '{a}': expected HOST:PORT"
        )));
    }
    let num_partitions = args.num_partitions.or(file.num_partitions).unwrap_or(1);
    if num_partitions == 0 {
        return Err(ConfigError("num-partitions must be at least 1".into()));
    }
    let default_replication_factor = args
        .default_replication_factor
        .or(file.default_replication_factor)
        .unwrap_or(3);
    if default_replication_factor == 0 {
        return Err(ConfigError(
            "default-replication-factor must be at least 1".into(),
        ));
    }
    let sasl = match args.kafka_sasl.take().or(file.kafka_sasl.take()).as_deref() {
        None | Some("off") => SaslMode::Off,
        Some("optional") => SaslMode::Optional,
        Some("required") => SaslMode::Required,
        Some(o) => {
            return Err(ConfigError(format!(
                "kafka-sasl '{o}': expected off, optional or required"
            )));
        }
    };
    Ok(KafkaSettings {
        sasl,
        listen,
        advertise,
        auto_create_topics: args
            .auto_create_topics
            .or(file.auto_create_topics)
            .unwrap_or(true),
        num_partitions,
        default_replication_factor,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kafka_settings() {
        let c = BrokerConfig::load(Args::default()).unwrap();
        assert_eq!(
            c.kafka.listen.map(|a| a.to_string()).as_deref(),
            Some("127.0.0.1:9092")
        );
        assert_eq!(c.kafka.sasl, SaslMode::Off);
        assert!(c.kafka.auto_create_topics);
        assert_eq!(
            (c.kafka.num_partitions, c.kafka.default_replication_factor),
            (1, 3)
        );
        let c = BrokerConfig::load(Args {
            kafka_listen: Some("off".into()),
            kafka_sasl: Some("required".into()),
            ..Default::default()
        })
        .unwrap();
        assert!(c.kafka.listen.is_none());
        assert_eq!(c.kafka.sasl, SaslMode::Required);
        for bad in [
            Args {
                kafka_sasl: Some("sometimes".into()),
                ..Default::default()
            },
            Args {
                kafka_listen: Some("localhost".into()),
                ..Default::default()
            },
            Args {
                kafka_advertise: Some("nohost".into()),
                ..Default::default()
            },
            Args {
                num_partitions: Some(0),
                ..Default::default()
            },
        ] {
            assert!(BrokerConfig::load(bad).is_err());
        }
    }

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
