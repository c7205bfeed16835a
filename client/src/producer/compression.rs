//! The producer's `compression` setting: which of Kafka's codecs compresses
//! the records of each produced batch. Parses from the names Kafka uses for
//! `compression.type`, so a command-line flag can take it as is.

use std::fmt;
use std::str::FromStr;

use strata_proto::batch::Codec;

use crate::error::ClientError;

/// Compression of produced batches. The broker stores batches as sent, and
/// consumers decompress them, so a codec costs producer and consumer CPU
/// and saves network, disk and replication bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum Compression {
    #[default]
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

impl Compression {
    /// Every setting, `None` first.
    pub const ALL: [Compression; 5] = [
        Compression::None,
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ];

    /// The batch codec this setting writes.
    pub fn codec(self) -> Codec {
        match self {
            Compression::None => Codec::None,
            Compression::Gzip => Codec::Gzip,
            Compression::Snappy => Codec::Snappy,
            Compression::Lz4 => Codec::Lz4,
            Compression::Zstd => Codec::Zstd,
        }
    }

    /// The lower-case name (`none`, `gzip`, `snappy`, `lz4`, `zstd`).
    pub fn name(self) -> &'static str {
        self.codec().name()
    }
}

impl From<Compression> for Codec {
    fn from(c: Compression) -> Self {
        c.codec()
    }
}

impl fmt::Display for Compression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Compression {
    type Err = ClientError;

    /// `none`, `gzip`, `snappy`, `lz4` or `zstd`, in any case.
    fn from_str(s: &str) -> Result<Self, ClientError> {
        Self::ALL
            .into_iter()
            .find(|c| c.name().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| {
                ClientError::InvalidArgument(format!(
                    "unknown compression '{s}' (expected none, gzip, snappy, lz4 or zstd)"
                ))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_kafka_names() {
        for c in Compression::ALL {
            assert_eq!(c.to_string().parse::<Compression>().ok(), Some(c));
            assert_eq!(Codec::from(c).name(), c.name());
        }
        assert_eq!("ZSTD".parse::<Compression>().ok(), Some(Compression::Zstd));
        assert_eq!(" lz4 ".parse::<Compression>().ok(), Some(Compression::Lz4));
        let e = "brotli".parse::<Compression>().unwrap_err();
        assert!(e.to_string().contains("brotli"), "{e}");
        assert!("".parse::<Compression>().is_err());
    }
}
