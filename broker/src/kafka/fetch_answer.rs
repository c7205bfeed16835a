//! The Fetch answer (key 1, versions 4–18), encoded by the listener itself
//! so that stored record bodies are shared into the frame, not copied:
//! each batch goes out as its rewritten Kafka prefix followed by a slice of
//! the segment. Byte for byte what the codec writes for the same answer
//! (the tests hold the two side by side for every version).
//!
//! Fields the listener never sets are written as their defaults: no
//! aborted transactions (an empty list), no preferred read replica (-1),
//! and no tagged fields (diverging epoch, current leader, snapshot id,
//! node endpoints).

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::TopicName;
use kafka_protocol::messages::fetch_response::FetchResponse;
use kafka_protocol::protocol::HeaderVersion;
use strata_proto::batch::kafka::KAFKA_PREFIX_LEN;

use super::frame::FrameWriter;

/// Versions this encoder writes.
pub const VERSIONS: std::ops::RangeInclusive<i16> = 4..=18;

/// A Fetch answer: per topic, per partition, the batches as (Kafka prefix,
/// stored body).
#[derive(Debug, Clone, Default)]
pub struct FetchAnswer {
    pub topics: Vec<TopicAnswer>,
}

#[derive(Debug, Clone, Default)]
pub struct TopicAnswer {
    /// Named in versions up to 12.
    pub name: TopicName,
    /// Identified in versions 13 and later.
    pub id: uuid::Uuid,
    pub partitions: Vec<PartitionAnswer>,
}

#[derive(Debug, Clone, Default)]
pub struct PartitionAnswer {
    pub index: i32,
    pub error_code: i16,
    pub high_watermark: i64,
    pub last_stable_offset: i64,
    pub log_start_offset: i64,
    pub batches: Vec<([u8; KAFKA_PREFIX_LEN], Bytes)>,
}

impl PartitionAnswer {
    fn records_len(&self) -> usize {
        self.batches.iter().map(|(p, b)| p.len() + b.len()).sum()
    }
}

/// Kafka's unsigned varint.
fn put_uvarint(buf: &mut BytesMut, mut v: u64) {
    while v >= 0x80 {
        buf.put_u8((v as u8) | 0x80);
        v >>= 7;
    }
    buf.put_u8(v as u8);
}

/// An array's length: compact (n + 1, varint) in flexible versions.
fn put_len(buf: &mut BytesMut, flexible: bool, n: usize) {
    if flexible {
        put_uvarint(buf, n as u64 + 1);
    } else {
        buf.put_i32(i32::try_from(n).unwrap_or(i32::MAX));
    }
}

impl FetchAnswer {
    /// The response header's version for `version`.
    pub fn header_version(version: i16) -> i16 {
        FetchResponse::header_version(version)
    }

    /// Writes the answer's body (after the header) in `version`.
    pub fn encode_frame(&self, w: &mut FrameWriter, version: i16) -> anyhow::Result<()> {
        anyhow::ensure!(
            VERSIONS.contains(&version),
            "fetch v{version} is not written"
        );
        let flexible = version >= 12;
        let buf = w.buf();
        buf.put_i32(0); // throttle_time_ms
        if version >= 7 {
            buf.put_i16(0); // error_code
            buf.put_i32(0); // session_id
        }
        put_len(buf, flexible, self.topics.len());
        for t in &self.topics {
            let buf = w.buf();
            if version >= 13 {
                buf.put_slice(t.id.as_bytes());
            } else {
                let name = t.name.0.as_bytes();
                if flexible {
                    put_uvarint(buf, name.len() as u64 + 1);
                } else {
                    let n = i16::try_from(name.len())
                        .map_err(|_| anyhow::anyhow!("topic name too long"))?;
                    buf.put_i16(n);
                }
                buf.put_slice(name);
            }
            put_len(buf, flexible, t.partitions.len());
            for p in &t.partitions {
                let buf = w.buf();
                buf.put_i32(p.index);
                buf.put_i16(p.error_code);
                buf.put_i64(p.high_watermark);
                buf.put_i64(p.last_stable_offset);
                if version >= 5 {
                    buf.put_i64(p.log_start_offset);
                }
                put_len(buf, flexible, 0); // aborted_transactions
                if version >= 11 {
                    buf.put_i32(-1); // preferred_read_replica
                }
                let len = p.records_len();
                if flexible {
                    put_uvarint(buf, len as u64 + 1);
                } else {
                    buf.put_i32(
                        i32::try_from(len).map_err(|_| anyhow::anyhow!("records too long"))?,
                    );
                }
                for (prefix, body) in &p.batches {
                    w.buf().put_slice(prefix);
                    w.put_shared(body);
                }
                if flexible {
                    put_uvarint(w.buf(), 0); // partition tagged fields
                }
            }
            if flexible {
                put_uvarint(w.buf(), 0); // topic tagged fields
            }
        }
        if flexible {
            put_uvarint(w.buf(), 0); // response tagged fields
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
    use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

    fn batch(seed: u8, body_len: usize) -> ([u8; KAFKA_PREFIX_LEN], Bytes) {
        let prefix: [u8; KAFKA_PREFIX_LEN] = std::array::from_fn(|i| seed.wrapping_add(i as u8));
        let body: Vec<u8> = (0..body_len).map(|i| seed ^ (i as u8)).collect();
        (prefix, body.into())
    }

    fn answer() -> FetchAnswer {
        FetchAnswer {
            topics: vec![
                TopicAnswer {
                    name: TopicName(StrBytes::from_static_str("orders")),
                    id: uuid::Uuid::from_u128(0x0123_4567_89ab_cdef_0011_2233_4455_6677),
                    partitions: vec![
                        PartitionAnswer {
                            index: 0,
                            error_code: 0,
                            high_watermark: 1000,
                            last_stable_offset: 1000,
                            log_start_offset: 3,
                            batches: vec![batch(1, 40), batch(2, 9000), batch(3, 100)],
                        },
                        PartitionAnswer {
                            index: 1,
                            error_code: 6,
                            high_watermark: -1,
                            last_stable_offset: -1,
                            log_start_offset: -1,
                            batches: vec![],
                        },
                    ],
                },
                TopicAnswer {
                    name: TopicName(StrBytes::from_static_str("e")),
                    id: uuid::Uuid::from_u128(7),
                    partitions: vec![],
                },
            ],
        }
    }

    /// The same answer built with the codec's types.
    fn codec_form(a: &FetchAnswer) -> FetchResponse {
        let responses = a
            .topics
            .iter()
            .map(|t| {
                FetchableTopicResponse::default()
                    .with_topic(t.name.clone())
                    .with_topic_id(t.id)
                    .with_partitions(
                        t.partitions
                            .iter()
                            .map(|p| {
                                let mut records = BytesMut::new();
                                for (x, y) in &p.batches {
                                    records.extend_from_slice(x);
                                    records.extend_from_slice(y);
                                }
                                PartitionData::default()
                                    .with_partition_index(p.index)
                                    .with_error_code(p.error_code)
                                    .with_high_watermark(p.high_watermark)
                                    .with_last_stable_offset(p.last_stable_offset)
                                    .with_log_start_offset(p.log_start_offset)
                                    .with_records(Some(records.freeze()))
                            })
                            .collect(),
                    )
            })
            .collect();
        FetchResponse::default().with_responses(responses)
    }

    #[test]
    fn writes_what_the_codec_writes_in_every_version() {
        let a = answer();
        for v in VERSIONS {
            let mut w = FrameWriter::new();
            a.encode_frame(&mut w, v).expect("encodes");
            let frame = w.finish();
            assert!(frame.chunks().len() > 1, "v{v}: the large body is shared");
            let ours = frame.to_bytes();

            let mut want = BytesMut::new();
            let mut resp = codec_form(&a);
            if v >= 13 {
                for t in &mut resp.responses {
                    t.topic = TopicName::default();
                }
            } else {
                for t in &mut resp.responses {
                    t.topic_id = uuid::Uuid::nil();
                }
            }
            resp.encode(&mut want, v).expect("codec encodes");
            assert!(ours[4..] == want[..], "v{v}: differs from the codec");
            assert_eq!(
                i32::from_be_bytes([ours[0], ours[1], ours[2], ours[3]]) as usize,
                ours.len() - 4
            );
            let mut body = ours.slice(4..);
            let back = FetchResponse::decode(&mut body, v).expect("decodes");
            let mut again = BytesMut::new();
            back.encode(&mut again, v).expect("codec encodes");
            assert!(again == want, "v{v}: does not decode to the same answer");
        }
    }

    #[test]
    fn refuses_versions_it_does_not_write() {
        for v in [0, 3, 19] {
            assert!(answer().encode_frame(&mut FrameWriter::new(), v).is_err());
        }
    }
}
