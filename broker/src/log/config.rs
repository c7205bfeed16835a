//! Per-log settings (the storage subset of a topic's configuration).

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// When appended data is forced to disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FsyncPolicy {
    /// fsync before acknowledging; one fsync covers every batch appended
    /// meanwhile (group commit).
    Always,
    /// fsync in the background at this interval.
    Interval(Duration),
    /// Leave it to the page cache (and to replication).
    Never,
}

impl FromStr for FsyncPolicy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "always" => Ok(Self::Always),
            "never" => Ok(Self::Never),
            _ => {
                let ms = s.strip_prefix("interval:").ok_or_else(|| {
                    format!("invalid fsync policy '{s}': expected always, never or interval:<ms>")
                })?;
                let ms: u64 = ms
                    .trim_end_matches("ms")
                    .parse()
                    .map_err(|_| format!("invalid fsync interval '{ms}': expected milliseconds"))?;
                if ms == 0 {
                    return Err("fsync interval must be at least 1 ms".into());
                }
                Ok(Self::Interval(Duration::from_millis(ms)))
            }
        }
    }
}

impl fmt::Display for FsyncPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Always => f.write_str("always"),
            Self::Never => f.write_str("never"),
            Self::Interval(d) => write!(f, "interval:{}", d.as_millis()),
        }
    }
}

/// What happens to old data (`cleanup.policy`): segments past retention
/// are deleted, and/or the log is compacted to the latest record per key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CleanupPolicy {
    pub delete: bool,
    pub compact: bool,
}

impl CleanupPolicy {
    pub const DELETE: Self = Self {
        delete: true,
        compact: false,
    };
}

impl FromStr for CleanupPolicy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let mut p = Self {
            delete: false,
            compact: false,
        };
        for part in s.split(',').map(str::trim) {
            match part {
                "delete" if !p.delete => p.delete = true,
                "compact" if !p.compact => p.compact = true,
                _ => {
                    return Err(format!(
                        "invalid cleanup.policy '{s}': expected delete, compact or compact,delete"
                    ));
                }
            }
        }
        Ok(p)
    }
}

impl fmt::Display for CleanupPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.compact, self.delete) {
            (true, true) => f.write_str("compact,delete"),
            (true, false) => f.write_str("compact"),
            _ => f.write_str("delete"),
        }
    }
}

/// When a compacted log is cleaned and what a pass may remove.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CompactionConfig {
    /// `min.cleanable.dirty.ratio`: clean once this share of the cleanable
    /// bytes has not been cleaned yet.
    pub min_dirty_ratio: f64,
    /// `min.compaction.lag.ms`: records younger than this stay as written.
    pub min_lag_ms: i64,
    /// `max.compaction.lag.ms`: a record older than this is cleaned
    /// whatever the dirty ratio.
    pub max_lag_ms: i64,
    /// `delete.retention.ms`: how long a tombstone (a null value) is kept
    /// once written, so that readers see the delete.
    pub delete_retention_ms: i64,
}

impl Default for CompactionConfig {
    fn default() -> Self {
        Self {
            min_dirty_ratio: 0.5,
            min_lag_ms: 0,
            max_lag_ms: i64::MAX,
            delete_retention_ms: 24 * 3600 * 1000,
        }
    }
}

/// Storage settings of one partition log.
#[derive(Clone, Debug, PartialEq)]
pub struct LogConfig {
    pub cleanup: CleanupPolicy,
    pub compaction: CompactionConfig,
    pub segment_bytes: u64,
    /// Roll a non-empty active segment this old.
    pub segment_ms: Option<i64>,
    /// Delete sealed segments whose newest record is older; None = forever.
    pub retention_ms: Option<i64>,
    /// Delete the oldest sealed segments while the log is larger.
    pub retention_bytes: Option<u64>,
    pub index_interval_bytes: u32,
    pub index_max_bytes: u32,
    pub max_message_bytes: u32,
    pub fsync: FsyncPolicy,
    /// Tiered storage: sealed segments are uploaded to object storage.
    pub remote_storage: bool,
    /// `retention.local.ms`: -2 = as `retention_ms`, -1 = forever.
    pub local_retention_ms: i64,
    /// `retention.local.bytes`: -2 = as `retention_bytes`, -1 = unlimited.
    pub local_retention_bytes: i64,
}

impl LogConfig {
    /// The retention of the whole log (local and remote): none without
    /// `delete` in the cleanup policy.
    pub fn total_limits(&self) -> (Option<i64>, Option<u64>) {
        if !self.cleanup.delete {
            return (None, None);
        }
        (self.retention_ms, self.retention_bytes)
    }

    /// The retention that applies to local segments: the local one under
    /// tiered storage (segments then go only once they are remote, so a
    /// compacted tiered topic keeps only a local tail too). Without tiered
    /// storage it is the whole log's.
    pub fn local_limits(&self) -> (Option<i64>, Option<u64>) {
        if !self.remote_storage {
            return self.total_limits();
        }
        let ms = match self.local_retention_ms {
            -2 => self.retention_ms,
            n => (n >= 0).then_some(n),
        };
        let bytes = match self.local_retention_bytes {
            -2 => self.retention_bytes,
            n => (n >= 0).then_some(n as u64),
        };
        (ms, bytes)
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            cleanup: CleanupPolicy::DELETE,
            compaction: CompactionConfig::default(),
            segment_bytes: 1 << 30,
            segment_ms: Some(7 * 24 * 3600 * 1000),
            retention_ms: Some(7 * 24 * 3600 * 1000),
            retention_bytes: None,
            index_interval_bytes: 4096,
            index_max_bytes: 10 << 20,
            max_message_bytes: 8 << 20,
            fsync: FsyncPolicy::Never,
            remote_storage: false,
            local_retention_ms: -2,
            local_retention_bytes: -2,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fsync_parse() {
        assert_eq!(
            "always".parse::<FsyncPolicy>().unwrap(),
            FsyncPolicy::Always
        );
        assert_eq!(
            "interval:250".parse::<FsyncPolicy>().unwrap(),
            FsyncPolicy::Interval(Duration::from_millis(250))
        );
        assert!("interval:0".parse::<FsyncPolicy>().is_err());
        assert!("sometimes".parse::<FsyncPolicy>().is_err());
        assert_eq!(
            FsyncPolicy::Interval(Duration::from_millis(5)).to_string(),
            "interval:5"
        );
    }

    #[test]
    fn cleanup_policy_parse() {
        for (s, delete, compact, shown) in [
            ("delete", true, false, "delete"),
            ("compact", false, true, "compact"),
            ("compact,delete", true, true, "compact,delete"),
            ("delete, compact", true, true, "compact,delete"),
        ] {
            let p: CleanupPolicy = s.parse().unwrap();
            assert_eq!((p.delete, p.compact), (delete, compact), "{s}");
            assert_eq!(p.to_string(), shown);
        }
        for bad in ["", "compact,", "shred", "delete,delete"] {
            assert!(bad.parse::<CleanupPolicy>().is_err(), "{bad}");
        }
    }
}
