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

/// Storage settings of one partition log.
#[derive(Clone, Debug, PartialEq)]
pub struct LogConfig {
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
    /// The retention that applies to local segments: the local one under
    /// tiered storage (segments then go only once they are remote).
    pub fn local_limits(&self) -> (Option<i64>, Option<u64>) {
        if !self.remote_storage {
            return (self.retention_ms, self.retention_bytes);
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
}
