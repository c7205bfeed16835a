//! Topic configuration: validation of `key=value` overrides (Kafka names)
//! and their merge with the broker's defaults into a `LogConfig`.

use std::collections::BTreeMap;

use crate::error::BrokerError;
use crate::log::{CleanupPolicy, FsyncPolicy, LogConfig};

/// Upper bound of `max.message.bytes` (requests and responses stay below
/// the gRPC message limit).
pub const MAX_MESSAGE_BYTES: u32 = 32 << 20;

/// Every key a topic accepts.
pub const KEYS: &[&str] = &[
    "cleanup.policy",
    "retention.ms",
    "retention.bytes",
    "segment.bytes",
    "segment.ms",
    "fsync",
    "max.message.bytes",
    "index.interval.bytes",
    "segment.index.bytes",
    "remote.storage.enable",
    "retention.local.ms",
    "retention.local.bytes",
    "min.cleanable.dirty.ratio",
    "min.compaction.lag.ms",
    "max.compaction.lag.ms",
    "delete.retention.ms",
];

fn int(key: &str, v: &str, min: i64, max: i64) -> Result<i64, BrokerError> {
    let n: i64 = v
        .trim()
        .parse()
        .map_err(|_| BrokerError::InvalidConfig(format!("{key}={v}: expected an integer")))?;
    if n < min || n > max {
        return Err(BrokerError::InvalidConfig(format!(
            "{key}={v}: must be between {min} and {max}"
        )));
    }
    Ok(n)
}

/// Applies one override to `cfg`, validating it.
fn apply(cfg: &mut LogConfig, key: &str, v: &str) -> Result<(), BrokerError> {
    match key {
        "cleanup.policy" => {
            cfg.cleanup = v
                .parse::<CleanupPolicy>()
                .map_err(BrokerError::InvalidConfig)?
        }
        "min.cleanable.dirty.ratio" => {
            let r: f64 = v
                .trim()
                .parse()
                .map_err(|_| BrokerError::InvalidConfig(format!("{key}={v}: expected a number")))?;
            if !(0.0..=1.0).contains(&r) {
                return Err(BrokerError::InvalidConfig(format!(
                    "{key}={v}: must be between 0 and 1"
                )));
            }
            cfg.compaction.min_dirty_ratio = r;
        }
        "min.compaction.lag.ms" => cfg.compaction.min_lag_ms = int(key, v, 0, i64::MAX)?,
        "max.compaction.lag.ms" => cfg.compaction.max_lag_ms = int(key, v, 1, i64::MAX)?,
        "delete.retention.ms" => cfg.compaction.delete_retention_ms = int(key, v, 0, i64::MAX)?,
        "retention.ms" => {
            let n = int(key, v, -1, i64::MAX)?;
            cfg.retention_ms = (n >= 0).then_some(n);
        }
        "retention.bytes" => {
            let n = int(key, v, -1, i64::MAX)?;
            cfg.retention_bytes = (n >= 0).then_some(n as u64);
        }
        "segment.bytes" => cfg.segment_bytes = int(key, v, 1024, i64::from(i32::MAX))? as u64,
        "segment.ms" => cfg.segment_ms = Some(int(key, v, 1, i64::MAX)?),
        "fsync" => {
            cfg.fsync = v
                .parse::<FsyncPolicy>()
                .map_err(BrokerError::InvalidConfig)?
        }
        "max.message.bytes" => {
            cfg.max_message_bytes = int(key, v, 128, i64::from(MAX_MESSAGE_BYTES))? as u32
        }
        "index.interval.bytes" => {
            cfg.index_interval_bytes = int(key, v, 1, i64::from(i32::MAX))? as u32
        }
        "segment.index.bytes" => {
            cfg.index_max_bytes = int(key, v, 4096, i64::from(i32::MAX))? as u32
        }
        "remote.storage.enable" => {
            cfg.remote_storage = match v {
                "true" => true,
                "false" => false,
                _ => {
                    return Err(BrokerError::InvalidConfig(format!(
                        "{key}={v}: expected true or false"
                    )));
                }
            }
        }
        "retention.local.ms" => cfg.local_retention_ms = int(key, v, -2, i64::MAX)?,
        "retention.local.bytes" => cfg.local_retention_bytes = int(key, v, -2, i64::MAX)?,
        _ => {
            return Err(BrokerError::InvalidConfig(format!(
                "unknown topic config '{key}'"
            )));
        }
    }
    Ok(())
}

/// The effective log configuration of a topic.
pub fn effective(
    defaults: &LogConfig,
    overrides: &BTreeMap<String, String>,
) -> Result<LogConfig, BrokerError> {
    let mut cfg = defaults.clone();
    for (k, v) in overrides {
        apply(&mut cfg, k, v)?;
    }
    if cfg.compaction.min_lag_ms > cfg.compaction.max_lag_ms {
        return Err(BrokerError::InvalidConfig(format!(
            "min.compaction.lag.ms={} exceeds max.compaction.lag.ms={}",
            cfg.compaction.min_lag_ms, cfg.compaction.max_lag_ms
        )));
    }
    // Local retention keeps a tail of what the whole log retains.
    let (local_ms, local_bytes) = cfg.local_limits();
    let (total_ms, total_bytes) = cfg.total_limits();
    if cfg.remote_storage {
        if let (Some(l), Some(t)) = (local_ms, total_ms)
            && l > t
        {
            return Err(BrokerError::InvalidConfig(format!(
                "retention.local.ms={l} exceeds retention.ms={t}"
            )));
        }
        if let (Some(l), Some(t)) = (local_bytes, total_bytes)
            && l > t
        {
            return Err(BrokerError::InvalidConfig(format!(
                "retention.local.bytes={l} exceeds retention.bytes={t}"
            )));
        }
    }
    Ok(cfg)
}

/// The effective configuration as `key=value` pairs (for describe).
pub fn render(cfg: &LogConfig) -> BTreeMap<String, String> {
    let opt = |v: Option<i64>| v.map_or("-1".to_string(), |n| n.to_string());
    let mut m = BTreeMap::new();
    m.insert("cleanup.policy".into(), cfg.cleanup.to_string());
    m.insert(
        "min.cleanable.dirty.ratio".into(),
        cfg.compaction.min_dirty_ratio.to_string(),
    );
    m.insert(
        "min.compaction.lag.ms".into(),
        cfg.compaction.min_lag_ms.to_string(),
    );
    m.insert(
        "max.compaction.lag.ms".into(),
        cfg.compaction.max_lag_ms.to_string(),
    );
    m.insert(
        "delete.retention.ms".into(),
        cfg.compaction.delete_retention_ms.to_string(),
    );
    m.insert("retention.ms".into(), opt(cfg.retention_ms));
    m.insert(
        "retention.bytes".into(),
        opt(cfg.retention_bytes.map(|b| b as i64)),
    );
    m.insert("segment.bytes".into(), cfg.segment_bytes.to_string());
    m.insert("segment.ms".into(), opt(cfg.segment_ms));
    m.insert("fsync".into(), cfg.fsync.to_string());
    m.insert(
        "max.message.bytes".into(),
        cfg.max_message_bytes.to_string(),
    );
    m.insert(
        "index.interval.bytes".into(),
        cfg.index_interval_bytes.to_string(),
    );
    m.insert(
        "segment.index.bytes".into(),
        cfg.index_max_bytes.to_string(),
    );
    m.insert(
        "remote.storage.enable".into(),
        cfg.remote_storage.to_string(),
    );
    m.insert(
        "retention.local.ms".into(),
        cfg.local_retention_ms.to_string(),
    );
    m.insert(
        "retention.local.bytes".into(),
        cfg.local_retention_bytes.to_string(),
    );
    m
}

/// Validates a topic name (Kafka's rules); names starting with `__` are
/// reserved for internal topics.
pub fn validate_topic_name(name: &str, allow_internal: bool) -> Result<(), BrokerError> {
    let bad = |why: &str| {
        Err(BrokerError::InvalidTopic {
            name: name.to_owned(),
            why: why.to_owned(),
        })
    };
    if name.is_empty() {
        return bad("must not be empty");
    }
    if name.len() > 249 {
        return bad("longer than 249 characters");
    }
    if name == "." || name == ".." {
        return bad("'.' and '..' are not allowed");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
    {
        return bad("only ASCII letters, digits, '.', '_' and '-' are allowed");
    }
    if name.starts_with("__") && !allow_internal {
        return bad("names starting with '__' are reserved for internal topics");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_validate() {
        let d = LogConfig::default();
        let mut o = BTreeMap::new();
        o.insert("retention.ms".to_string(), "1000".to_string());
        o.insert("fsync".to_string(), "always".to_string());
        let c = effective(&d, &o).unwrap();
        assert_eq!(c.retention_ms, Some(1000));
        assert_eq!(c.fsync, FsyncPolicy::Always);
        for (k, v) in [
            ("retention.ms", "soon"),
            ("segment.bytes", "1"),
            ("fsync", "maybe"),
            ("nope", "1"),
            ("cleanup.policy", "shred"),
            ("cleanup.policy", ""),
            ("min.cleanable.dirty.ratio", "1.5"),
            ("min.cleanable.dirty.ratio", "half"),
            ("min.compaction.lag.ms", "-1"),
            ("max.compaction.lag.ms", "0"),
            ("delete.retention.ms", "-5"),
            ("remote.storage.enable", "yes"),
            ("retention.local.ms", "-3"),
        ] {
            let mut o = BTreeMap::new();
            o.insert(k.to_string(), v.to_string());
            assert!(
                matches!(effective(&d, &o), Err(BrokerError::InvalidConfig(_))),
                "{k}={v}"
            );
        }
    }

    #[test]
    fn compaction_settings() {
        let d = LogConfig::default();
        let o = |kv: &[(&str, &str)]| -> BTreeMap<String, String> {
            kv.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let c = effective(
            &d,
            &o(&[
                ("cleanup.policy", "compact"),
                ("min.cleanable.dirty.ratio", "0.1"),
                ("min.compaction.lag.ms", "5"),
                ("delete.retention.ms", "100"),
            ]),
        )
        .unwrap();
        assert!(c.cleanup.compact && !c.cleanup.delete);
        assert_eq!(c.compaction.min_dirty_ratio, 0.1);
        assert_eq!(c.compaction.min_lag_ms, 5);
        assert_eq!(c.compaction.delete_retention_ms, 100);
        // A compacted topic without delete keeps everything: no retention.
        assert_eq!(c.local_limits(), (None, None));
        assert_eq!(render(&c)["cleanup.policy"], "compact");
        let both = effective(&d, &o(&[("cleanup.policy", "compact,delete")])).unwrap();
        assert_eq!(both.local_limits().0, d.retention_ms);
        assert!(matches!(
            effective(
                &d,
                &o(&[
                    ("min.compaction.lag.ms", "10"),
                    ("max.compaction.lag.ms", "5"),
                ])
            ),
            Err(BrokerError::InvalidConfig(_))
        ));
        // Tiered and compacted: the whole log is unlimited, the local part
        // is a tail (any local limit is below an unlimited total).
        let tiered = effective(
            &d,
            &o(&[
                ("cleanup.policy", "compact"),
                ("remote.storage.enable", "true"),
                ("retention.local.bytes", "1"),
                ("retention.ms", "10"),
            ]),
        )
        .unwrap();
        assert_eq!(tiered.total_limits(), (None, None));
        assert_eq!(tiered.local_limits(), (Some(10), Some(1)));
    }

    #[test]
    fn local_retention_under_tiering() {
        let d = LogConfig::default();
        let o = |kv: &[(&str, &str)]| -> BTreeMap<String, String> {
            kv.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        // Without tiering the local limits are the total ones.
        let c = effective(
            &d,
            &o(&[("retention.ms", "500"), ("retention.local.ms", "10")]),
        )
        .unwrap();
        assert_eq!(c.local_limits(), (Some(500), None));
        let c = effective(
            &d,
            &o(&[
                ("remote.storage.enable", "true"),
                ("retention.ms", "500"),
                ("retention.local.ms", "10"),
                ("retention.local.bytes", "4096"),
            ]),
        )
        .unwrap();
        assert_eq!(c.local_limits(), (Some(10), Some(4096)));
        // Unset local limits follow the total ones (-2).
        let c = effective(
            &d,
            &o(&[("remote.storage.enable", "true"), ("retention.bytes", "99")]),
        )
        .unwrap();
        assert_eq!(c.local_limits().1, Some(99));
        assert!(
            effective(
                &d,
                &o(&[
                    ("remote.storage.enable", "true"),
                    ("retention.ms", "5"),
                    ("retention.local.ms", "10")
                ])
            )
            .is_err(),
            "a local tail longer than the whole log"
        );
    }

    #[test]
    fn topic_names() {
        assert!(validate_topic_name("orders.v1_x-2", false).is_ok());
        for n in ["", ".", "..", "a b", "ü", "__x", &"x".repeat(250)] {
            assert!(validate_topic_name(n, false).is_err(), "{n}");
        }
        assert!(validate_topic_name("__consumer_offsets", true).is_ok());
    }
}
