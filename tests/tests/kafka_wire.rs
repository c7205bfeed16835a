//! The Kafka listener at the wire, for what the outside clients of the
//! other suites do not reach on demand: OffsetForLeaderEpoch across a
//! leader change (epochs are Raft terms), ListOffsets' max timestamp and
//! leader epochs, Produce v13 and Fetch v13–18 by topic id next to Fetch by
//! name (every served version), and Fetch answers of many large batches (written around shared
//! stored bytes) read back byte for byte. Requests are encoded with the
//! `kafka-protocol` codec and sent to a real `stratad`.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreateTopicsRequest};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchRequest, FetchTopic};
use kafka_protocol::messages::list_offsets_request::{
    ListOffsetsPartition, ListOffsetsRequest, ListOffsetsTopic,
};
use kafka_protocol::messages::metadata_request::{MetadataRequest, MetadataRequestTopic};
use kafka_protocol::messages::offset_for_leader_epoch_request::{
    OffsetForLeaderEpochRequest, OffsetForLeaderPartition, OffsetForLeaderTopic,
};
use kafka_protocol::messages::produce_request::{
    PartitionProduceData, ProduceRequest, TopicProduceData,
};
use kafka_protocol::messages::{RequestHeader, ResponseHeader, TopicName};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};
use strata_proto::batch::{self, BatchBuilder, kafka as kbatch};
use strata_tests::{BrokerProc, free_port};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One connection speaking the Kafka protocol.
struct Wire {
    s: TcpStream,
    correlation: i32,
}

impl Wire {
    async fn connect(addr: &str) -> Self {
        Self {
            s: TcpStream::connect(addr).await.expect("connect"),
            correlation: 0,
        }
    }

    async fn call<R: Request>(&mut self, version: i16, req: &R) -> R::Response {
        self.correlation += 1;
        let mut body = BytesMut::new();
        RequestHeader::default()
            .with_request_api_key(R::KEY)
            .with_request_api_version(version)
            .with_correlation_id(self.correlation)
            .with_client_id(Some(StrBytes::from_static_str("wire-test")))
            .encode(&mut body, R::header_version(version))
            .expect("header encodes");
        req.encode(&mut body, version).expect("request encodes");
        let mut frame = BytesMut::with_capacity(body.len() + 4);
        frame.put_i32(body.len() as i32);
        frame.extend_from_slice(&body);
        self.s.write_all(&frame).await.expect("send");
        let n = self.s.read_i32().await.expect("answer size") as usize;
        let mut answer = vec![0u8; n];
        self.s.read_exact(&mut answer).await.expect("answer");
        let mut answer = Bytes::from(answer);
        let head = ResponseHeader::decode(
            &mut answer,
            <R::Response as HeaderVersion>::header_version(version),
        )
        .expect("header decodes");
        assert_eq!(head.correlation_id, self.correlation);
        let r = R::Response::decode(&mut answer, version).expect("answer decodes");
        assert!(!answer.has_remaining(), "trailing bytes in the answer");
        r
    }
}

fn name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_owned()))
}

/// A Kafka record batch of `n` records with values `tag-i`, record i at
/// timestamp `ts[i]`.
fn kafka_batch(tag: &str, ts: &[i64], value_len: usize) -> Bytes {
    let mut b = BatchBuilder::new(ts[0]);
    for (i, t) in ts.iter().enumerate() {
        let mut v = format!("{tag}-{i}-").into_bytes();
        v.resize(value_len.max(v.len()), b'v');
        b.push(*t, Some(format!("k{i}").as_bytes()), Some(&v), &[]);
    }
    kbatch::to_kafka_bytes(&b.finish()).expect("kafka form")
}

/// The (offset, value) of every record in Kafka batches.
fn values(records: &Bytes) -> Vec<(i64, Bytes)> {
    let stored = kbatch::from_kafka(records).expect("kafka batches");
    let mut out = Vec::new();
    for b in batch::BatchIter::new(stored) {
        let (_, bytes) = b.expect("batch");
        for r in batch::records(&bytes).expect("records") {
            let r = r.expect("record");
            out.push((r.offset, r.value.unwrap_or_default()));
        }
    }
    out
}

/// (topic id, partition 0 leader epoch) from Metadata v12.
async fn metadata(w: &mut Wire, topic: &str) -> (uuid::Uuid, i32) {
    let m = w
        .call(
            12,
            &MetadataRequest::default().with_topics(Some(vec![
                MetadataRequestTopic::default().with_name(Some(name(topic))),
            ])),
        )
        .await;
    let t = &m.topics[0];
    assert_eq!(t.error_code, 0, "metadata of {topic}");
    (t.topic_id, t.partitions[0].leader_epoch)
}

async fn produce_by_id(w: &mut Wire, id: uuid::Uuid, records: Bytes) -> i64 {
    let r = w
        .call(
            13,
            &ProduceRequest::default()
                .with_acks(-1)
                .with_timeout_ms(10_000)
                .with_topic_data(vec![
                    TopicProduceData::default()
                        .with_topic_id(id)
                        .with_partition_data(vec![
                            PartitionProduceData::default()
                                .with_index(0)
                                .with_records(Some(records)),
                        ]),
                ]),
        )
        .await;
    let p = &r.responses[0].partition_responses[0];
    assert_eq!(p.error_code, 0, "produce: {:?}", p.error_message);
    assert_eq!(r.responses[0].topic_id, id);
    p.base_offset
}

/// Fetches partition 0 from `offset` in `version` (by id from v13).
async fn fetch(
    w: &mut Wire,
    version: i16,
    topic: &str,
    id: uuid::Uuid,
    offset: i64,
    max_bytes: i32,
) -> (i16, Bytes) {
    let t = if version >= 13 {
        FetchTopic::default().with_topic_id(id)
    } else {
        FetchTopic::default().with_topic(name(topic))
    };
    let r = w
        .call(
            version,
            &FetchRequest::default()
                .with_replica_id((-1).into())
                .with_max_wait_ms(100)
                .with_max_bytes(max_bytes)
                .with_topics(vec![t.with_partitions(vec![
                    FetchPartition::default()
                        .with_partition(0)
                        .with_fetch_offset(offset)
                        .with_partition_max_bytes(max_bytes),
                ])]),
        )
        .await;
    let t = &r.responses[0];
    if version >= 13 {
        assert_eq!(t.topic_id, id);
    } else {
        assert_eq!(t.topic.0.as_str(), topic);
    }
    let p = &t.partitions[0];
    (p.error_code, p.records.clone().unwrap_or_default())
}

/// Every record batch from `from` to `to`, fetched in `version` (an answer
/// holds batches of one segment at most).
async fn fetch_range(w: &mut Wire, version: i16, id: uuid::Uuid, from: i64, to: i64) -> Bytes {
    let mut all = BytesMut::new();
    let mut at = from;
    while at < to {
        let (code, got) = fetch(w, version, "ep", id, at, 1 << 20).await;
        assert_eq!(code, 0, "v{version} at {at}");
        let vs = values(&got);
        assert!(!vs.is_empty(), "v{version}: nothing at {at}");
        at = vs.last().map_or(at, |(o, _)| o + 1);
        all.extend_from_slice(&got);
    }
    all.freeze()
}

async fn epoch_end(w: &mut Wire, topic: &str, epoch: i32, current: i32) -> (i16, i32, i64) {
    epoch_end_in(w, 4, topic, epoch, current).await
}

async fn epoch_end_in(
    w: &mut Wire,
    version: i16,
    topic: &str,
    epoch: i32,
    current: i32,
) -> (i16, i32, i64) {
    let r = w
        .call(
            version,
            &OffsetForLeaderEpochRequest::default()
                .with_replica_id((-1).into())
                .with_topics(vec![
                    OffsetForLeaderTopic::default()
                        .with_topic(name(topic))
                        .with_partitions(vec![
                            OffsetForLeaderPartition::default()
                                .with_partition(0)
                                .with_current_leader_epoch(current)
                                .with_leader_epoch(epoch),
                        ]),
                ]),
        )
        .await;
    let p = &r.topics[0].partitions[0];
    (p.error_code, p.leader_epoch, p.end_offset)
}

async fn list_offset(w: &mut Wire, topic: &str, timestamp: i64) -> (i64, i64, i32) {
    list_offset_in(w, 7, topic, timestamp).await
}

async fn list_offset_in(
    w: &mut Wire,
    version: i16,
    topic: &str,
    timestamp: i64,
) -> (i64, i64, i32) {
    let r = w
        .call(
            version,
            &ListOffsetsRequest::default()
                .with_replica_id((-1).into())
                .with_topics(vec![
                    ListOffsetsTopic::default()
                        .with_name(name(topic))
                        .with_partitions(vec![
                            ListOffsetsPartition::default()
                                .with_partition_index(0)
                                .with_timestamp(timestamp),
                        ]),
                ]),
        )
        .await;
    let p = &r.topics[0].partitions[0];
    assert_eq!(p.error_code, 0, "list offsets {timestamp}");
    (p.offset, p.timestamp, p.leader_epoch)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn epochs_max_timestamps_and_topic_ids_on_the_wire() {
    let tmp = tempfile::tempdir().unwrap();
    let kafka = format!("127.0.0.1:{}", free_port());
    let mut broker = BrokerProc::start(&tmp.path().join("data"), &["--kafka-listen", &kafka]).await;
    let mut w = Wire::connect(&kafka).await;
    let created = w
        .call(
            7,
            &CreateTopicsRequest::default()
                .with_timeout_ms(10_000)
                .with_topics(vec![
                    CreatableTopic::default()
                        .with_name(name("ep"))
                        .with_num_partitions(1)
                        .with_replication_factor(1),
                ]),
        )
        .await;
    assert_eq!(created.topics[0].error_code, 0);
    let (id, first_epoch) = metadata(&mut w, "ep").await;
    assert!(!id.is_nil() && first_epoch > 0, "{id} {first_epoch}");

    // Three batches of ten in the first term; record 4 of the second batch
    // carries the largest timestamp.
    for (i, tag) in ["a", "b", "c"].iter().enumerate() {
        let mut ts: Vec<i64> = (0..10).map(|j| 1_000 + i as i64 * 100 + j).collect();
        if i == 1 {
            ts[4] = 9_000;
        }
        let base = produce_by_id(&mut w, id, kafka_batch(tag, &ts, 20)).await;
        assert_eq!(base, i as i64 * 10);
    }
    assert_eq!(
        list_offset(&mut w, "ep", -3).await,
        (14, 9_000, first_epoch)
    );
    assert_eq!(list_offset(&mut w, "ep", -1).await, (30, -1, first_epoch));
    assert_eq!(list_offset(&mut w, "ep", -2).await, (0, -1, first_epoch));
    assert_eq!(
        list_offset(&mut w, "ep", 1_000).await,
        (0, 1_000, first_epoch)
    );
    assert_eq!(
        list_offset(&mut w, "ep", 1_050).await,
        (10, 1_100, first_epoch)
    );
    // Nothing at or after the time: an unknown offset, as Kafka answers.
    assert_eq!(list_offset(&mut w, "ep", 9_001).await, (-1, -1, -1));

    // A restart makes a new term; two more batches land in it.
    broker.restart().await;
    let mut w = Wire::connect(&kafka).await;
    let (id_again, epoch) = metadata(&mut w, "ep").await;
    assert_eq!(id_again, id, "topic ids are stable");
    assert!(epoch > first_epoch, "{epoch} after {first_epoch}");
    for (i, tag) in ["d", "e"].iter().enumerate() {
        let ts: Vec<i64> = (0..10).map(|j| 2_000 + i as i64 * 100 + j).collect();
        let base = produce_by_id(&mut w, id, kafka_batch(tag, &ts, 20)).await;
        assert_eq!(base, 30 + i as i64 * 10);
    }

    // The first term ends where the new term's batches start; every term in
    // between (no batches) answers with the first term too; the current one
    // ends at the log end.
    assert_eq!(
        epoch_end(&mut w, "ep", first_epoch, -1).await,
        (0, first_epoch, 30)
    );
    for e in first_epoch + 1..epoch {
        assert_eq!(
            epoch_end(&mut w, "ep", e, epoch).await,
            (0, first_epoch, 30)
        );
    }
    assert_eq!(epoch_end(&mut w, "ep", epoch, epoch).await, (0, epoch, 50));
    // Older than every batch: the asked epoch and where the data starts.
    assert_eq!(epoch_end(&mut w, "ep", 0, -1).await, (0, 0, 0));
    // Newer than the leader's: undefined.
    assert_eq!(epoch_end(&mut w, "ep", epoch + 1, -1).await, (0, -1, -1));
    // A client with a stale or future view of the leader is told so.
    assert_eq!(
        epoch_end(&mut w, "ep", first_epoch, first_epoch).await.0,
        74
    );
    assert_eq!(epoch_end(&mut w, "ep", first_epoch, epoch + 3).await.0, 75);
    assert_eq!(epoch_end(&mut w, "nope", 1, -1).await.0, 3);
    assert_eq!(list_offset(&mut w, "ep", -1).await, (50, -1, epoch));
    // Every served version answers (epochs from v4 and v1 of each).
    for v in 1..=10 {
        let want_epoch = if v >= 4 { epoch } else { -1 };
        assert_eq!(
            list_offset_in(&mut w, v, "ep", -1).await,
            (50, -1, want_epoch),
            "v{v}"
        );
        assert_eq!(list_offset_in(&mut w, v, "ep", 9_000).await.0, 14, "v{v}");
    }
    // Kafka 3.x's local and tiered ends: nothing is tiered here.
    assert_eq!(
        list_offset_in(&mut w, 9, "ep", -4).await,
        (0, -1, first_epoch)
    );
    assert_eq!(list_offset_in(&mut w, 9, "ep", -5).await, (-1, -1, -1));
    for v in 2..=4 {
        assert_eq!(
            epoch_end_in(&mut w, v, "ep", first_epoch, epoch).await,
            (0, first_epoch, 30),
            "v{v}"
        );
    }
    assert_eq!(
        list_offset(&mut w, "ep", -3).await,
        (14, 9_000, first_epoch)
    );

    // The same records by name and by id, in every served Fetch version;
    // a fetch from inside a batch starts at the batch.
    let all = fetch_range(&mut w, 4, id, 0, 50).await;
    let want = values(&all);
    assert_eq!(want.len(), 50);
    assert_eq!(want[14].1, Bytes::from("b-4-vvvvvvvvvvvvvvvv"));
    for v in 4..=18 {
        assert_eq!(fetch_range(&mut w, v, id, 0, 50).await, all, "v{v}");
        let (_, inside) = fetch(&mut w, v, "ep", id, 33, 1 << 20).await;
        assert_eq!(values(&inside)[0].0, 30, "v{v}");
    }
    // An id nobody has.
    let (code, _) = fetch(&mut w, 17, "ep", uuid::Uuid::from_u128(42), 0, 1 << 20).await;
    assert_eq!(code, 100, "UNKNOWN_TOPIC_ID");

    // Many large batches in one answer, read back exactly.
    let mut big = Vec::new();
    for i in 0..24 {
        let ts: Vec<i64> = (0..4).map(|j| 3_000 + i * 10 + j).collect();
        let b = kafka_batch(&format!("big{i}"), &ts, 30_000);
        let base = produce_by_id(&mut w, id, b).await;
        assert_eq!(base, 50 + i * 4);
    }
    let mut at = 50;
    while at < 50 + 24 * 4 {
        let (code, got) = fetch(&mut w, 12, "ep", id, at, 1 << 20).await;
        assert_eq!(code, 0);
        let vs = values(&got);
        assert!(!vs.is_empty());
        for (o, v) in &vs {
            let i = (o - 50) / 4;
            let j = (o - 50) % 4;
            assert_eq!(v.len(), 30_000);
            assert!(
                v.starts_with(format!("big{i}-{j}-").as_bytes()),
                "offset {o}"
            );
        }
        big.extend(vs);
        at = big.last().map(|(o, _)| o + 1).unwrap_or(at);
    }
    assert_eq!(big.len(), 96);
    assert!(!broker.has_died());
}

/// The transaction APIs are not advertised; sent anyway, each answers
/// UNSUPPORTED_VERSION in its results and the connection goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transaction_apis_answer_unsupported() {
    use kafka_protocol::messages::add_offsets_to_txn_request::AddOffsetsToTxnRequest;
    use kafka_protocol::messages::add_partitions_to_txn_request::{
        AddPartitionsToTxnRequest, AddPartitionsToTxnTopic, AddPartitionsToTxnTransaction,
    };
    use kafka_protocol::messages::api_versions_request::ApiVersionsRequest;
    use kafka_protocol::messages::end_txn_request::EndTxnRequest;
    use kafka_protocol::messages::txn_offset_commit_request::{
        TxnOffsetCommitRequest, TxnOffsetCommitRequestPartition, TxnOffsetCommitRequestTopic,
    };
    use kafka_protocol::messages::{ApiKey, TransactionalId};

    let tmp = tempfile::tempdir().unwrap();
    let kafka = format!("127.0.0.1:{}", free_port());
    let broker = BrokerProc::start(&tmp.path().join("data"), &["--kafka-listen", &kafka]).await;
    let mut w = Wire::connect(&kafka).await;
    let versions = w.call(3, &ApiVersionsRequest::default()).await;
    for k in [
        ApiKey::AddPartitionsToTxn,
        ApiKey::AddOffsetsToTxn,
        ApiKey::EndTxn,
        ApiKey::TxnOffsetCommit,
    ] {
        assert!(
            !versions.api_keys.iter().any(|a| a.api_key == k as i16),
            "{k:?} is advertised"
        );
    }
    let txn = TransactionalId(StrBytes::from_static_str("tx"));
    let topic = AddPartitionsToTxnTopic::default()
        .with_name(name("t"))
        .with_partitions(vec![0, 1]);
    let old = w
        .call(
            3,
            &AddPartitionsToTxnRequest::default()
                .with_v3_and_below_transactional_id(txn.clone())
                .with_v3_and_below_topics(vec![topic.clone()]),
        )
        .await;
    let codes: Vec<i16> = old.results_by_topic_v3_and_below[0]
        .results_by_partition
        .iter()
        .map(|p| p.partition_error_code)
        .collect();
    assert_eq!(codes, vec![35, 35]);
    let new = w
        .call(
            5,
            &AddPartitionsToTxnRequest::default().with_transactions(vec![
                AddPartitionsToTxnTransaction::default()
                    .with_transactional_id(txn.clone())
                    .with_topics(vec![topic]),
            ]),
        )
        .await;
    assert_eq!(new.error_code, 35);
    let r = w
        .call(
            4,
            &AddOffsetsToTxnRequest::default().with_transactional_id(txn.clone()),
        )
        .await;
    assert_eq!(r.error_code, 35);
    let r = w
        .call(
            5,
            &EndTxnRequest::default().with_transactional_id(txn.clone()),
        )
        .await;
    assert_eq!(r.error_code, 35);
    let r = w
        .call(
            5,
            &TxnOffsetCommitRequest::default()
                .with_transactional_id(txn)
                .with_topics(vec![
                    TxnOffsetCommitRequestTopic::default()
                        .with_name(name("t"))
                        .with_partitions(vec![
                            TxnOffsetCommitRequestPartition::default().with_partition_index(3),
                        ]),
                ]),
        )
        .await;
    assert_eq!(r.topics[0].partitions[0].error_code, 35);
    // The connection still serves.
    let again = w.call(3, &ApiVersionsRequest::default()).await;
    assert_eq!(again.error_code, 0);
    assert!(!broker.has_died());
}
