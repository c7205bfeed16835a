//! The guard against the crate: every (api, version) of the table, encoded by
//! the crate and by the table itself, must pass and be consumed exactly; and
//! hostile, truncated and mutated frames must be refused or be harmless to
//! the crate's decoders.

use std::sync::OnceLock;

use bytes::{Buf, Bytes};
use kafka_protocol::messages::consumer_group_heartbeat_request::TopicPartitions;
use kafka_protocol::messages::create_topics_request::{
    CreatableReplicaAssignment, CreatableTopic, CreatableTopicConfig,
};
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::fetch_request::{
    FetchPartition, FetchTopic, ForgottenTopic, ReplicaState,
};
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::{
    OffsetFetchRequestGroup, OffsetFetchRequestTopic, OffsetFetchRequestTopics,
};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Encodable, Message, StrBytes};
use proptest::prelude::*;

use super::schema::{APIS, Api, Struct, Ty};
use super::*;

// ---- the crate's request types, by api key ----

/// Something done with the crate's request type of an api key.
trait Visit {
    type Out;
    fn visit<T: Decodable + Encodable + Default + Message>(self) -> Self::Out;
}

/// Runs `visitor` on the request type of `api_key` (`None`: not in the table).
fn with_request_type<V: Visit>(api_key: i16, visitor: V) -> Option<V::Out> {
    macro_rules! dispatch {
        ($($key:literal => $ty:ty,)*) => {
            match api_key {
                $($key => Some(visitor.visit::<$ty>()),)*
                _ => None,
            }
        };
    }
    dispatch! {
        0 => ProduceRequest,
        1 => FetchRequest,
        2 => ListOffsetsRequest,
        3 => MetadataRequest,
        8 => OffsetCommitRequest,
        9 => OffsetFetchRequest,
        10 => FindCoordinatorRequest,
        11 => JoinGroupRequest,
        12 => HeartbeatRequest,
        13 => LeaveGroupRequest,
        14 => SyncGroupRequest,
        15 => DescribeGroupsRequest,
        16 => ListGroupsRequest,
        17 => SaslHandshakeRequest,
        18 => ApiVersionsRequest,
        19 => CreateTopicsRequest,
        20 => DeleteTopicsRequest,
        21 => DeleteRecordsRequest,
        22 => InitProducerIdRequest,
        23 => OffsetForLeaderEpochRequest,
        24 => AddPartitionsToTxnRequest,
        25 => AddOffsetsToTxnRequest,
        26 => EndTxnRequest,
        28 => TxnOffsetCommitRequest,
        29 => DescribeAclsRequest,
        30 => CreateAclsRequest,
        31 => DeleteAclsRequest,
        32 => DescribeConfigsRequest,
        33 => AlterConfigsRequest,
        36 => SaslAuthenticateRequest,
        37 => CreatePartitionsRequest,
        42 => DeleteGroupsRequest,
        44 => IncrementalAlterConfigsRequest,
        47 => OffsetDeleteRequest,
        50 => DescribeUserScramCredentialsRequest,
        51 => AlterUserScramCredentialsRequest,
        60 => DescribeClusterRequest,
        68 => ConsumerGroupHeartbeatRequest,
        69 => ConsumerGroupDescribeRequest,
    }
}

/// The type's own version range.
struct Versions;

impl Visit for Versions {
    type Out = (i16, i16);
    fn visit<T: Decodable + Encodable + Default + Message>(self) -> (i16, i16) {
        (T::VERSIONS.min, T::VERSIONS.max)
    }
}

/// Decodes a body from `buf`, leaving the rest there.
struct DecodeBody<'a> {
    buf: &'a mut Bytes,
    version: i16,
}

impl Visit for DecodeBody<'_> {
    type Out = anyhow::Result<()>;
    fn visit<T: Decodable + Encodable + Default + Message>(self) -> anyhow::Result<()> {
        T::decode(self.buf, self.version).map(drop)
    }
}

/// Decodes a whole body and encodes it again.
struct RoundTrip<'a> {
    body: &'a [u8],
    version: i16,
}

impl Visit for RoundTrip<'_> {
    type Out = anyhow::Result<Vec<u8>>;
    fn visit<T: Decodable + Encodable + Default + Message>(self) -> anyhow::Result<Vec<u8>> {
        let mut buf = Bytes::copy_from_slice(self.body);
        let request = T::decode(&mut buf, self.version)?;
        anyhow::ensure!(!buf.has_remaining(), "{} bytes left", buf.remaining());
        let mut out = Vec::new();
        request.encode(&mut out, self.version)?;
        Ok(out)
    }
}

/// Encodes the default request.
struct EncodeDefault {
    version: i16,
}

impl Visit for EncodeDefault {
    type Out = anyhow::Result<Vec<u8>>;
    fn visit<T: Decodable + Encodable + Default + Message>(self) -> anyhow::Result<Vec<u8>> {
        let mut out = Vec::new();
        T::default().encode(&mut out, self.version)?;
        Ok(out)
    }
}

fn encode(request: &impl Encodable, version: i16) -> Vec<u8> {
    let mut out = Vec::new();
    request.encode(&mut out, version).unwrap();
    out
}

/// A frame: the crate's request header for (`api_key`, `version`), then `body`.
fn frame(
    api_key: i16,
    version: i16,
    correlation_id: i32,
    body: &[u8],
    header_tag: bool,
) -> Vec<u8> {
    let header_version = ApiKey::try_from(api_key)
        .unwrap()
        .request_header_version(version);
    let mut header = RequestHeader::default()
        .with_request_api_key(api_key)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(StrBytes::from_static_str("strata-guard-test")));
    if header_tag && header_version >= 2 {
        header = header.with_unknown_tagged_field(7, Bytes::from_static(b"hdr"));
    }
    let mut out = encode_header(&header, header_version);
    out.extend_from_slice(body);
    out
}

fn encode_header(header: &RequestHeader, header_version: i16) -> Vec<u8> {
    let mut out = Vec::new();
    header.encode(&mut out, header_version).unwrap();
    out
}

/// Decodes a frame the guard accepted with the crate, header then body, and
/// returns the body bytes the crate consumed. Panics if the crate's header
/// disagrees with the guard's.
fn crate_decode(mut buf: Bytes, head: &RequestHead) -> anyhow::Result<usize> {
    let len = buf.remaining();
    let header = RequestHeader::decode(&mut buf, head.header_version)?;
    assert_eq!(header.request_api_key, head.api_key);
    assert_eq!(header.request_api_version, head.api_version);
    assert_eq!(header.correlation_id, head.correlation_id);
    assert_eq!(header.client_id.as_deref(), head.client_id.as_deref());
    assert_eq!(len - buf.remaining(), head.header_len);
    let version = head.api_version;
    with_request_type(
        head.api_key,
        DecodeBody {
            buf: &mut buf,
            version,
        },
    )
    .unwrap()?;
    Ok(len - head.header_len - buf.remaining())
}

// ---- the largest allocation of a decode ----

mod alloc_peak {
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::cell::Cell;

    /// The system allocator, noting the largest request on threads that ask.
    struct Peak;

    thread_local! {
        static TRACKING: Cell<bool> = const { Cell::new(false) };
        static LARGEST: Cell<usize> = const { Cell::new(0) };
    }

    fn note(size: usize) {
        let _ = TRACKING.try_with(|tracking| {
            if tracking.get() {
                let _ = LARGEST.try_with(|largest| largest.set(largest.get().max(size)));
            }
        });
    }

    // The wrapper only reads the requested sizes, into const-initialised
    // thread locals (which never allocate).
    // SAFETY: every call goes to `System` unchanged, so its guarantees hold.
    unsafe impl GlobalAlloc for Peak {
        // SAFETY: forwards to `System.alloc` with the caller's layout.
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            note(layout.size());
            // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract.
            unsafe { System.alloc(layout) }
        }

        // SAFETY: forwards to `System.alloc_zeroed` with the caller's layout.
        unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
            note(layout.size());
            // SAFETY: the caller upholds `GlobalAlloc::alloc_zeroed`'s contract.
            unsafe { System.alloc_zeroed(layout) }
        }

        // SAFETY: forwards to `System.realloc` with the caller's arguments.
        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            note(new_size);
            // SAFETY: the caller upholds `GlobalAlloc::realloc`'s contract.
            unsafe { System.realloc(ptr, layout, new_size) }
        }

        // SAFETY: forwards to `System.dealloc` with the caller's arguments.
        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            // SAFETY: the caller upholds `GlobalAlloc::dealloc`'s contract.
            unsafe { System.dealloc(ptr, layout) }
        }
    }

    #[global_allocator]
    static PEAK: Peak = Peak;

    /// Runs `f`; returns its result and the largest single allocation it
    /// asked for (on this thread).
    pub(super) fn largest_allocation<R>(f: impl FnOnce() -> R) -> (R, usize) {
        LARGEST.with(|largest| largest.set(0));
        TRACKING.with(|tracking| tracking.set(true));
        let out = f();
        TRACKING.with(|tracking| tracking.set(false));
        (out, LARGEST.with(Cell::get))
    }
}

/// What the crate may allocate at once for a frame the guard accepted: an
/// element count is at most the bytes left, and no request element is more
/// than 64 times its smallest wire size in memory.
fn allocation_bound(frame_len: usize) -> usize {
    64 * frame_len + (64 << 10)
}

// ---- requests built with the crate's types ----

fn s(text: &'static str) -> StrBytes {
    StrBytes::from_static_str(text)
}

fn topic(text: &'static str) -> TopicName {
    TopicName(s(text))
}

fn group(text: &'static str) -> GroupId {
    GroupId(s(text))
}

/// Holds topic id `n`: the tests reach `uuid::Uuid` only through the crate.
fn with_id(n: u8) -> TopicPartitions {
    let mut wire = vec![n; 16];
    wire.extend([1, 0]); // an empty compact array, no tagged fields
    TopicPartitions::decode(&mut Bytes::from(wire), 0).unwrap()
}

trait When: Sized {
    /// `f(self)` if `cond`: sets a field only in the versions that have it.
    fn when(self, cond: bool, f: impl FnOnce(Self) -> Self) -> Self {
        if cond { f(self) } else { self }
    }
}

impl<T> When for T {}

/// The request of `api_key` at `version` with every field the version has
/// set, arrays of two (nested ones too), strings and bytes non-empty; `None`
/// for the apis left to `Default` (and to the synthetic frames below).
fn populated(api_key: i16, v: i16) -> Option<Vec<u8>> {
    let body = match api_key {
        0 => {
            let partition = |index| {
                PartitionProduceData::default()
                    .with_index(index)
                    .with_records(Some(Bytes::from_static(b"a record batch")))
            };
            let topic_data = |name, id| {
                TopicProduceData::default()
                    .when(v <= 12, |t| t.with_name(topic(name)))
                    .when(v >= 13, |t| t.with_topic_id(with_id(id).topic_id))
                    .with_partition_data(vec![partition(0), partition(1)])
            };
            let request = ProduceRequest::default()
                .with_transactional_id(Some(TransactionalId(s("txn-1"))))
                .with_acks(-1)
                .with_timeout_ms(30_000)
                .with_topic_data(vec![topic_data("t1", 1), topic_data("t2", 2)]);
            encode(&request, v)
        }
        1 => {
            let partition = |p| {
                FetchPartition::default()
                    .with_partition(p)
                    .when(v >= 9, |x| x.with_current_leader_epoch(5))
                    .with_fetch_offset(100)
                    .when(v >= 12, |x| x.with_last_fetched_epoch(4))
                    .when(v >= 5, |x| x.with_log_start_offset(10))
                    .with_partition_max_bytes(1 << 20)
                    .when(v >= 17, |x| {
                        x.with_replica_directory_id(with_id(9).topic_id)
                    })
                    .when(v >= 18, |x| x.with_high_watermark(1234))
            };
            let fetch_topic = |name, id| {
                FetchTopic::default()
                    .when(v <= 12, |t| t.with_topic(topic(name)))
                    .when(v >= 13, |t| t.with_topic_id(with_id(id).topic_id))
                    .with_partitions(vec![partition(0), partition(1)])
            };
            let forgotten = |name, id| {
                ForgottenTopic::default()
                    .when(v <= 12, |t| t.with_topic(topic(name)))
                    .when(v >= 13, |t| t.with_topic_id(with_id(id).topic_id))
                    .with_partitions(vec![3, 4])
            };
            let request = FetchRequest::default()
                .when(v >= 12, |r| r.with_cluster_id(Some(s("cluster-a"))))
                .when(v <= 14, |r| r.with_replica_id(BrokerId(-1)))
                .when(v >= 15, |r| {
                    r.with_replica_state(
                        ReplicaState::default()
                            .with_replica_id(BrokerId(3))
                            .with_replica_epoch(7),
                    )
                })
                .with_max_wait_ms(500)
                .with_min_bytes(1)
                .with_max_bytes(1 << 24)
                .with_isolation_level(1)
                .when(v >= 7, |r| r.with_session_id(11).with_session_epoch(2))
                .with_topics(vec![fetch_topic("t1", 1), fetch_topic("t2", 2)])
                .when(v >= 7, |r| {
                    r.with_forgotten_topics_data(vec![forgotten("t3", 3), forgotten("t4", 4)])
                })
                .when(v >= 11, |r| r.with_rack_id(s("rack-a")));
            encode(&request, v)
        }
        2 => {
            let partition = |p| {
                ListOffsetsPartition::default()
                    .with_partition_index(p)
                    .when(v >= 4, |x| x.with_current_leader_epoch(2))
                    .with_timestamp(-1)
            };
            let list_topic = |name| {
                ListOffsetsTopic::default()
                    .with_name(topic(name))
                    .with_partitions(vec![partition(0), partition(1)])
            };
            let request = ListOffsetsRequest::default()
                .with_replica_id(BrokerId(-1))
                .when(v >= 2, |r| r.with_isolation_level(1))
                .with_topics(vec![list_topic("t1"), list_topic("t2")])
                .when(v >= 10, |r| r.with_timeout_ms(1000));
            encode(&request, v)
        }
        3 => {
            let metadata_topic = |name, id| {
                MetadataRequestTopic::default()
                    .when(v >= 10, |t| t.with_topic_id(with_id(id).topic_id))
                    .with_name(Some(topic(name)))
            };
            let request = MetadataRequest::default()
                .with_topics(Some(vec![metadata_topic("t1", 1), metadata_topic("t2", 2)]))
                .when(v >= 4, |r| r.with_allow_auto_topic_creation(false))
                .when((8..=10).contains(&v), |r| {
                    r.with_include_cluster_authorized_operations(true)
                })
                .when(v >= 8, |r| r.with_include_topic_authorized_operations(true));
            encode(&request, v)
        }
        8 => {
            let partition = |p| {
                OffsetCommitRequestPartition::default()
                    .with_partition_index(p)
                    .with_committed_offset(42)
                    .when(v >= 6, |x| x.with_committed_leader_epoch(3))
                    .with_committed_metadata(Some(s("meta")))
            };
            let commit_topic = |name| {
                OffsetCommitRequestTopic::default()
                    .with_name(topic(name))
                    .with_partitions(vec![partition(0), partition(1)])
            };
            let request = OffsetCommitRequest::default()
                .with_group_id(group("g1"))
                .with_generation_id_or_member_epoch(5)
                .with_member_id(s("member-1"))
                .when(v >= 7, |r| r.with_group_instance_id(Some(s("instance-1"))))
                .when(v <= 4, |r| r.with_retention_time_ms(60_000))
                .with_topics(vec![commit_topic("t1"), commit_topic("t2")]);
            encode(&request, v)
        }
        9 => {
            let request = if v <= 7 {
                let fetch_topic = |name| {
                    OffsetFetchRequestTopic::default()
                        .with_name(topic(name))
                        .with_partition_indexes(vec![0, 1])
                };
                OffsetFetchRequest::default()
                    .with_group_id(group("g1"))
                    .with_topics(Some(vec![fetch_topic("t1"), fetch_topic("t2")]))
            } else {
                let fetch_topics = |name| {
                    OffsetFetchRequestTopics::default()
                        .with_name(topic(name))
                        .with_partition_indexes(vec![0, 1])
                };
                let fetch_group = |id| {
                    OffsetFetchRequestGroup::default()
                        .with_group_id(group(id))
                        .when(v >= 9, |g| {
                            g.with_member_id(Some(s("member-1"))).with_member_epoch(3)
                        })
                        .with_topics(Some(vec![fetch_topics("t1"), fetch_topics("t2")]))
                };
                OffsetFetchRequest::default()
                    .with_groups(vec![fetch_group("g1"), fetch_group("g2")])
            };
            encode(&request.when(v >= 7, |r| r.with_require_stable(true)), v)
        }
        11 => {
            let protocol = |name| {
                JoinGroupRequestProtocol::default()
                    .with_name(s(name))
                    .with_metadata(Bytes::from_static(b"subscription"))
            };
            let request = JoinGroupRequest::default()
                .with_group_id(group("g1"))
                .with_session_timeout_ms(10_000)
                .when(v >= 1, |r| r.with_rebalance_timeout_ms(30_000))
                .with_member_id(s("member-1"))
                .when(v >= 5, |r| r.with_group_instance_id(Some(s("instance-1"))))
                .with_protocol_type(s("consumer"))
                .with_protocols(vec![protocol("range"), protocol("roundrobin")])
                .when(v >= 8, |r| r.with_reason(Some(s("joining"))));
            encode(&request, v)
        }
        14 => {
            let assignment = |member| {
                SyncGroupRequestAssignment::default()
                    .with_member_id(s(member))
                    .with_assignment(Bytes::from_static(b"assignment"))
            };
            let request = SyncGroupRequest::default()
                .with_group_id(group("g1"))
                .with_generation_id(3)
                .with_member_id(s("member-1"))
                .when(v >= 3, |r| r.with_group_instance_id(Some(s("instance-1"))))
                .when(v >= 5, |r| {
                    r.with_protocol_type(Some(s("consumer")))
                        .with_protocol_name(Some(s("range")))
                })
                .with_assignments(vec![assignment("member-1"), assignment("member-2")]);
            encode(&request, v)
        }
        19 => {
            let assignment = |p| {
                CreatableReplicaAssignment::default()
                    .with_partition_index(p)
                    .with_broker_ids(vec![BrokerId(1), BrokerId(2)])
            };
            let config = |name| {
                CreatableTopicConfig::default()
                    .with_name(s(name))
                    .with_value(Some(s("value")))
            };
            let creatable = |name| {
                CreatableTopic::default()
                    .with_name(topic(name))
                    .with_num_partitions(-1)
                    .with_replication_factor(-1)
                    .with_assignments(vec![assignment(0), assignment(1)])
                    .with_configs(vec![config("retention.ms"), config("cleanup.policy")])
            };
            let request = CreateTopicsRequest::default()
                .with_topics(vec![creatable("t1"), creatable("t2")])
                .with_timeout_ms(5000)
                .with_validate_only(true);
            encode(&request, v)
        }
        32 => {
            let resource = |name| {
                DescribeConfigsResource::default()
                    .with_resource_type(2)
                    .with_resource_name(s(name))
                    .with_configuration_keys(Some(vec![s("retention.ms"), s("segment.bytes")]))
            };
            let request = DescribeConfigsRequest::default()
                .with_resources(vec![resource("t1"), resource("t2")])
                .with_include_synonyms(true)
                .when(v >= 3, |r| r.with_include_documentation(true));
            encode(&request, v)
        }
        68 => {
            let assigned = |id| {
                TopicPartitions::default()
                    .with_topic_id(with_id(id).topic_id)
                    .with_partitions(vec![0, 1])
            };
            let request = ConsumerGroupHeartbeatRequest::default()
                .with_group_id(group("g1"))
                .with_member_id(s("member-1"))
                .with_member_epoch(4)
                .with_instance_id(Some(s("instance-1")))
                .with_rack_id(Some(s("rack-a")))
                .with_rebalance_timeout_ms(30_000)
                .with_subscribed_topic_names(Some(vec![topic("t1"), topic("t2")]))
                .when(v >= 1, |r| r.with_subscribed_topic_regex(Some(s("t.*"))))
                .with_server_assignor(Some(s("uniform")))
                .with_topic_partitions(Some(vec![assigned(1), assigned(2)]));
            encode(&request, v)
        }
        _ => return None,
    };
    Some(body)
}

/// The apis `populated` builds.
const POPULATED: &[i16] = &[0, 1, 2, 3, 8, 9, 11, 14, 19, 32, 68];

// ---- requests built from the table ----

/// Writes a body from the table: every array of two, every value distinct
/// from the crate's defaults, and (unless `nulls`) every known tagged field
/// plus one unknown tag per tagged section; with `nulls`, every nullable
/// field null and tagged sections empty. Checks the table against the crate
/// independently of the crate's encoders: the crate must decode it and
/// encode it back byte for byte.
struct Synth {
    out: Vec<u8>,
    next: u32,
    nulls: bool,
}

impl Synth {
    fn body(api: &Api, version: i16, nulls: bool) -> Vec<u8> {
        let mut synth = Synth {
            out: Vec::new(),
            next: 0,
            nulls,
        };
        synth.structure(&api.body, version, version >= api.flexible);
        synth.out
    }

    fn tick(&mut self) -> u32 {
        self.next += 1;
        self.next
    }

    fn uvarint(&mut self, mut n: u32) {
        while n >= 0x80 {
            self.out.push((n as u8) | 0x80);
            n >>= 7;
        }
        self.out.push(n as u8);
    }

    /// A length or count (`None`: null): compact when flexible, else an
    /// i32 if `wide` and an i16 if not.
    fn length(&mut self, n: Option<usize>, wide: bool, flexible: bool) {
        match (n, flexible, wide) {
            (None, true, _) => self.uvarint(0),
            (Some(n), true, _) => self.uvarint(n as u32 + 1),
            (None, false, false) => self.out.extend((-1i16).to_be_bytes()),
            (Some(n), false, false) => self.out.extend((n as i16).to_be_bytes()),
            (None, false, true) => self.out.extend((-1i32).to_be_bytes()),
            (Some(n), false, true) => self.out.extend((n as i32).to_be_bytes()),
        }
    }

    fn structure(&mut self, s: &Struct, version: i16, flexible: bool) {
        for f in s.fields.iter().filter(|f| f.present(version)) {
            self.value(&f.ty, f.nullable, version, flexible);
        }
        if !flexible {
            return;
        }
        if self.nulls {
            self.uvarint(0);
            return;
        }
        let known: Vec<_> = s
            .tagged
            .iter()
            .filter(|t| t.field.present(version))
            .collect();
        self.uvarint(known.len() as u32 + 1);
        for t in known {
            let content = {
                let mut inner = Synth {
                    out: Vec::new(),
                    next: self.next,
                    nulls: false,
                };
                inner.value(&t.field.ty, false, version, true);
                self.next = inner.next;
                inner.out
            };
            self.uvarint(t.tag);
            self.uvarint(content.len() as u32);
            self.out.extend(content);
        }
        self.uvarint(42);
        self.uvarint(2);
        self.out.extend([0xab, 0xcd]);
    }

    fn value(&mut self, ty: &Ty, nullable: bool, version: i16, flexible: bool) {
        let n = self.tick();
        let null = nullable && self.nulls;
        match ty {
            Ty::Bool => self.out.push(1),
            Ty::Int8 => self.out.push((n % 100 + 1) as u8),
            Ty::Int16 => self.out.extend(((n % 1000 + 1) as i16).to_be_bytes()),
            Ty::Int32 => self.out.extend((n as i32 + 1).to_be_bytes()),
            Ty::Int64 => self.out.extend((i64::from(n) + 1).to_be_bytes()),
            Ty::Uuid => self.out.extend([(n as u8) | 1; 16]),
            Ty::Str | Ty::Bytes if null => self.length(None, matches!(ty, Ty::Bytes), flexible),
            Ty::Str | Ty::Bytes => {
                let content = format!("v{n}");
                self.length(Some(content.len()), matches!(ty, Ty::Bytes), flexible);
                self.out.extend(content.as_bytes());
            }
            Ty::Array(_) | Ty::Structs(_) if null => self.length(None, true, flexible),
            Ty::Array(elem) => {
                self.length(Some(2), true, flexible);
                self.value(elem, false, version, flexible);
                self.value(elem, false, version, flexible);
            }
            Ty::Structs(elem) => {
                self.length(Some(2), true, flexible);
                self.structure(elem, version, flexible);
                self.structure(elem, version, flexible);
            }
            Ty::Struct(s) => self.structure(s, version, flexible),
        }
    }
}

// ---- the corpus: one frame per way of building, per (api, version) ----

struct Sample {
    label: String,
    frame: Vec<u8>,
    body_len: usize,
}

fn versions(api: &Api) -> impl Iterator<Item = i16> {
    api.min..=api.max
}

fn corpus() -> &'static [Sample] {
    static CORPUS: OnceLock<Vec<Sample>> = OnceLock::new();
    CORPUS.get_or_init(|| {
        let mut samples = Vec::new();
        for api in APIS {
            for v in versions(api) {
                let built = populated(api.key, v).unwrap_or_else(|| {
                    with_request_type(api.key, EncodeDefault { version: v })
                        .unwrap()
                        .unwrap()
                });
                samples.push(Sample {
                    label: format!("{} v{v} (crate-encoded)", api.name),
                    frame: frame(api.key, v, 1000 + i32::from(v), &built, false),
                    body_len: built.len(),
                });
                for nulls in [false, true] {
                    let body = Synth::body(api, v, nulls);
                    samples.push(Sample {
                        label: format!("{} v{v} (synthetic, nulls: {nulls})", api.name),
                        frame: frame(api.key, v, -7, &body, !nulls),
                        body_len: body.len(),
                    });
                }
            }
        }
        samples
    })
}

/// Asserts the guard accepts a sample whole and the crate agrees.
fn assert_passes(sample: &Sample) {
    let (head, consumed) = check_request_consumed(&sample.frame)
        .unwrap_or_else(|e| panic!("{}: refused: {e}", sample.label));
    assert_eq!(
        consumed, sample.body_len,
        "{}: walked body length",
        sample.label
    );
    assert_eq!(
        head.header_len + sample.body_len,
        sample.frame.len(),
        "{}",
        sample.label
    );
    let decoded = crate_decode(Bytes::copy_from_slice(&sample.frame), &head)
        .unwrap_or_else(|e| panic!("{}: the crate refused it: {e:#}", sample.label));
    assert_eq!(
        decoded, sample.body_len,
        "{}: crate-decoded body length",
        sample.label
    );
}

// ---- the table ----

#[test]
fn table_matches_the_crate() {
    let keys: Vec<i16> = APIS.iter().map(|api| api.key).collect();
    assert_eq!(
        keys,
        [
            0, 1, 2, 3, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26,
            28, 29, 30, 31, 32, 33, 36, 37, 42, 44, 47, 50, 51, 60, 68, 69
        ]
    );
    for api in APIS {
        let key = ApiKey::try_from(api.key).unwrap();
        // The request type's own range is what its decoder accepts.
        assert_eq!(
            with_request_type(api.key, Versions),
            Some((api.min, api.max)),
            "{}",
            api.name
        );
        // `ApiKey::valid_versions` goes one version further for three apis
        // (the response's range): the request decoders refuse those.
        let range = key.valid_versions();
        let beyond = match api.key {
            8 | 9 | 22 => 1,
            _ => 0,
        };
        assert_eq!(
            (range.min, range.max),
            (api.min, api.max + beyond),
            "{}",
            api.name
        );
        assert_eq!(supported_versions(api.key), Some((api.min, api.max)));
        assert_eq!(api_name(api.key), Some(api.name));
        for v in versions(api) {
            let header = key.request_header_version(v);
            assert_eq!(
                header,
                if v >= api.flexible { 2 } else { 1 },
                "{} v{v}",
                api.name
            );
            assert!(is_known(api.key, v));
        }
        assert!(!is_known(api.key, api.min - 1));
        assert!(!is_known(api.key, api.max + 1));
    }
    assert_eq!(supported_apis().count(), APIS.len());
    assert!(!is_known(999, 0));
    assert_eq!(supported_versions(0), Some((3, 13)));
}

/// An element that could take no bytes would let a count as large as the
/// frame allocate that many elements for nothing; the table has none.
#[test]
fn every_array_element_takes_bytes() {
    fn check(s: &Struct, v: i16, flexible: bool, path: &str) {
        let tagged = s.tagged.iter().map(|t| &t.field);
        for f in s.fields.iter().chain(tagged).filter(|f| f.present(v)) {
            let path = format!("{path}.{}", f.name);
            match f.ty {
                Ty::Array(elem) => assert!(min_size(elem, v, flexible) >= 1, "{path} v{v}"),
                Ty::Structs(elem) => {
                    assert!(struct_min_size(elem, v, flexible) >= 1, "{path} v{v}");
                    check(elem, v, flexible, &path);
                }
                Ty::Struct(inner) => check(inner, v, flexible, &path),
                _ => {}
            }
        }
    }
    for api in APIS {
        for v in versions(api) {
            check(&api.body, v, v >= api.flexible, api.name);
        }
    }
}

// ---- valid frames ----

#[test]
fn crate_encoded_requests_pass() {
    for api in APIS {
        for v in versions(api) {
            let populated = populated(api.key, v);
            assert_eq!(
                populated.is_some(),
                POPULATED.contains(&api.key),
                "{} v{v}",
                api.name
            );
            let body = populated.unwrap_or_else(|| {
                with_request_type(api.key, EncodeDefault { version: v })
                    .unwrap()
                    .unwrap()
            });
            let sample = Sample {
                label: format!("{} v{v}", api.name),
                frame: frame(api.key, v, 77, &body, false),
                body_len: body.len(),
            };
            assert_passes(&sample);
            let head = check_request(&sample.frame).unwrap();
            assert_eq!(head.api_key, api.key);
            assert_eq!(head.api_version, v);
            assert_eq!(head.correlation_id, 77);
            assert_eq!(head.client_id.as_deref(), Some("strata-guard-test"));
        }
    }
}

#[test]
fn synthetic_requests_round_trip_through_the_crate() {
    for api in APIS {
        for v in versions(api) {
            for nulls in [false, true] {
                let body = Synth::body(api, v, nulls);
                let label = format!("{} v{v} (nulls: {nulls})", api.name);
                assert_passes(&Sample {
                    label: label.clone(),
                    frame: frame(api.key, v, 5, &body, true),
                    body_len: body.len(),
                });
                let again = with_request_type(
                    api.key,
                    RoundTrip {
                        body: &body,
                        version: v,
                    },
                )
                .unwrap()
                .unwrap_or_else(|e| panic!("{label}: {e:#}"));
                assert_eq!(again, body, "{label}: re-encoded by the crate");
            }
        }
    }
}

#[test]
fn trailing_bytes_are_allowed() {
    let sample = &corpus()[0];
    let mut frame = sample.frame.clone();
    frame.extend([0xff; 9]);
    let (_, consumed) = check_request_consumed(&frame).unwrap();
    assert_eq!(consumed, sample.body_len);
}

// ---- hostile frames ----

/// A request header with a null client id (and no tagged fields).
fn header(api_key: i16, version: i16, correlation_id: i32, flexible: bool) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend(api_key.to_be_bytes());
    out.extend(version.to_be_bytes());
    out.extend(correlation_id.to_be_bytes());
    out.extend((-1i16).to_be_bytes());
    if flexible {
        out.push(0);
    }
    out
}

fn with(mut head: Vec<u8>, parts: &[&[u8]]) -> Vec<u8> {
    for part in parts {
        head.extend_from_slice(part);
    }
    head
}

/// The refusal's `(field, what)`, for a frame that must be malformed.
fn malformed(frame: &[u8]) -> (&'static str, &'static str, usize) {
    match check_request(frame) {
        Err(GuardError::Malformed {
            field, what, at, ..
        }) => (field, what, at),
        other => panic!("expected Malformed, got {other:?}"),
    }
}

#[test]
fn short_frames_are_refused() {
    let full = header(3, 1, 9, false);
    for len in 0..8 {
        assert_eq!(
            check_request(&full[..len]),
            Err(GuardError::FrameTooShort { len })
        );
    }
    assert_eq!(GuardError::FrameTooShort { len: 3 }.correlation_id(), None);
    // 8 bytes: the header's client id is missing.
    assert_eq!(malformed(&full[..8]).0, "client_id");
    assert_eq!(malformed(&full[..9]).0, "client_id");
}

#[test]
fn unknown_apis_and_versions_are_refused_with_their_correlation_id() {
    assert_eq!(
        check_request(&header(999, 0, 41, false)),
        Err(GuardError::UnknownApi {
            api_key: 999,
            correlation_id: 41
        })
    );
    assert_eq!(
        check_request(&header(-1, 0, 41, false))
            .unwrap_err()
            .correlation_id(),
        Some(41)
    );
    for (key, version) in [(3, 99), (18, 99), (18, 5), (18, -1), (0, 0), (0, 2), (1, 3)] {
        assert_eq!(
            check_request(&header(key, version, 42, false)),
            Err(GuardError::UnsupportedVersion {
                api_key: key,
                api_version: version,
                correlation_id: 42
            }),
            "api {key} v{version}"
        );
    }
    let err = check_request(&header(18, 99, 42, false)).unwrap_err();
    assert_eq!(err.correlation_id(), Some(42));
    assert_eq!(
        err.to_string(),
        "ApiVersions (api key 18) version 99 is not supported"
    );
}

#[test]
fn huge_counts_are_refused() {
    let huge = 0x7fff_ffffi32.to_be_bytes();
    // Metadata v1: topics count 2^31-1, in a 20-byte frame.
    let frame = with(header(3, 1, 1, false), &[&huge, &[0; 6]]);
    assert_eq!(frame.len(), 20);
    assert_eq!(
        malformed(&frame),
        ("topics", "array count exceeds the bytes left", 10)
    );
    // Produce v3: null transactional id, acks, timeout, then topic_data.
    let frame = with(
        header(0, 3, 1, false),
        &[&[0xff, 0xff, 0, 1, 0, 0, 0, 10], &huge],
    );
    assert_eq!(
        malformed(&frame),
        ("topic_data", "array count exceeds the bytes left", 18)
    );
    // Metadata v9 (flexible): compact count varint 0xffffffff.
    let frame = with(
        header(3, 9, 1, true),
        &[&[0xff, 0xff, 0xff, 0xff, 0x0f], &[0; 8]],
    );
    assert_eq!(
        malformed(&frame),
        ("topics", "array count exceeds the bytes left", 11)
    );
    // A count just one element too many: 2 names claimed, 1 present.
    let frame = with(
        header(15, 0, 1, false),
        &[&2i32.to_be_bytes(), &[0, 1, b'g']],
    );
    assert_eq!(malformed(&frame).0, "groups");
    // A count whose elements need more bytes than are left (an Int32 array).
    let frame = with(
        header(47, 0, 1, false),
        &[
            &[0, 1, b'g'],
            &1i32.to_be_bytes(),
            &[0, 1, b't'],
            &3i32.to_be_bytes(),
            &[0; 11],
        ],
    );
    assert_eq!(malformed(&frame).0, "partitions");
    // A huge string and bytes length.
    let frame = with(
        header(17, 0, 1, false),
        &[&0x7fffi16.to_be_bytes(), b"PLAIN"],
    );
    assert_eq!(
        malformed(&frame),
        ("mechanism", "length exceeds the bytes left", 10)
    );
    let frame = with(header(36, 0, 1, false), &[&huge, b"x"]);
    assert_eq!(
        malformed(&frame),
        ("auth_bytes", "length exceeds the bytes left", 10)
    );
    let frame = with(
        header(36, 2, 1, true),
        &[&[0xfe, 0xff, 0xff, 0xff, 0x0f], b"x"],
    );
    assert_eq!(malformed(&frame).0, "auth_bytes");
}

#[test]
fn negative_lengths_and_nulls_are_checked() {
    let minus2_16 = (-2i16).to_be_bytes();
    let minus2_32 = (-2i32).to_be_bytes();
    // Strings: nullable or not, -2 is negative.
    let frame = with(header(0, 3, 1, false), &[&minus2_16, &[0; 10]]);
    assert_eq!(
        malformed(&frame),
        ("transactional_id", "negative length", 10)
    );
    let frame = with(header(17, 0, 1, false), &[&minus2_16]);
    assert_eq!(malformed(&frame), ("mechanism", "negative length", 10));
    // Bytes.
    let frame = with(header(36, 0, 1, false), &[&minus2_32]);
    assert_eq!(malformed(&frame), ("auth_bytes", "negative length", 10));
    // Arrays.
    let frame = with(header(3, 1, 1, false), &[&minus2_32]);
    assert_eq!(malformed(&frame), ("topics", "negative length", 10));
    // The header's client id.
    let mut frame = header(3, 1, 1, false);
    frame[8..10].copy_from_slice(&minus2_16);
    assert_eq!(malformed(&frame), ("client_id", "negative length", 8));
    // Null where it is not allowed: -1 (or compact 0).
    let frame = with(header(17, 0, 1, false), &[&(-1i16).to_be_bytes()]);
    assert_eq!(
        malformed(&frame),
        ("mechanism", "null in a non-nullable field", 10)
    );
    let frame = with(header(36, 0, 1, false), &[&(-1i32).to_be_bytes()]);
    assert_eq!(malformed(&frame).1, "null in a non-nullable field");
    let frame = with(header(15, 5, 1, true), &[&[0], &[0; 2]]);
    assert_eq!(
        malformed(&frame),
        ("groups", "null in a non-nullable field", 11)
    );
    // ...and accepted where it is: Metadata's topics, Produce's transactional id.
    let frame = with(header(3, 1, 1, false), &[&(-1i32).to_be_bytes()]);
    let head = check_request(&frame).unwrap();
    assert_eq!(head.client_id, None);
    assert_eq!(crate_decode(Bytes::from(frame), &head).unwrap(), 4);
    let frame = with(header(3, 9, 1, true), &[&[0, 1, 0, 0, 0]]);
    assert!(check_request(&frame).is_ok());
}

#[test]
fn long_varints_are_refused() {
    // Metadata v9 topics: 6 bytes of varint.
    let frame = with(
        header(3, 9, 1, true),
        &[&[0x80, 0x80, 0x80, 0x80, 0x80, 0x01], &[0; 4]],
    );
    assert_eq!(
        malformed(&frame),
        ("topics", "varint longer than 5 bytes", 11)
    );
    // A 5th byte with bits beyond 32.
    let frame = with(
        header(3, 9, 1, true),
        &[&[0x81, 0x80, 0x80, 0x80, 0x10], &[0; 4]],
    );
    assert_eq!(
        malformed(&frame),
        ("topics", "varint overflows 32 bits", 11)
    );
    // The header's tagged-field count.
    let mut frame = header(3, 9, 1, false);
    frame.extend([0xff, 0xff, 0xff, 0xff, 0xff, 0x01, 1, 0, 0, 0]);
    assert_eq!(
        malformed(&frame),
        ("request header", "varint longer than 5 bytes", 10)
    );
    // A varint cut short by the end of the frame.
    let frame = with(header(3, 9, 1, true), &[&[0x80, 0x80]]);
    assert_eq!(malformed(&frame).1, "frame ends inside the field");
}

#[test]
fn tagged_fields_are_bounded() {
    // Metadata v9, empty topic list, then the body's tagged fields.
    let base = with(header(3, 9, 1, true), &[&[1, 1, 0, 0]]);
    let tags = |bytes: &[u8]| with(base.clone(), &[bytes]);
    // A count of 2^32-1.
    assert_eq!(
        malformed(&tags(&[0xff, 0xff, 0xff, 0xff, 0x0f])).1,
        "tagged field count exceeds the bytes left"
    );
    // A size beyond the frame.
    assert_eq!(
        malformed(&tags(&[1, 5, 0xff, 0xff, 0x03, 1])).1,
        "length exceeds the bytes left"
    );
    // A size that fits.
    assert!(check_request(&tags(&[1, 5, 3, 1, 2, 3])).is_ok());
    // The header's tagged fields.
    let mut frame = header(3, 9, 1, false);
    frame.extend([1, 0, 200, 1, 1, 1, 0]);
    assert_eq!(
        malformed(&frame),
        ("request header", "length exceeds the bytes left", 11)
    );
    // A known tag (Fetch v12's cluster_id, tag 0) must fill exactly its size.
    let fetch = |tags: &[u8]| with(header(1, 12, 1, true), &[&FETCH_V12_BODY, tags]);
    assert!(check_request(&fetch(&[1, 0, 3, 3, b'c', b'1'])).is_ok());
    assert!(check_request(&fetch(&[1, 0, 1, 0])).is_ok()); // a null cluster id
    assert_eq!(
        malformed(&fetch(&[1, 0, 4, 3, b'c', b'1', 0])),
        (
            "cluster_id",
            "tagged field size does not match its content",
            40
        )
    );
    assert_eq!(
        malformed(&fetch(&[1, 0, 2, 3, b'c', b'1'])),
        ("cluster_id", "length exceeds the bytes left", 42)
    );
    assert_eq!(
        malformed(&fetch(&[1, 0, 9, 3, b'c', b'1'])),
        ("cluster_id", "tagged field size exceeds the bytes left", 40)
    );
    // Tag 1 (replica_state) exists from v15 only; the crate refuses it before.
    assert_eq!(
        malformed(&fetch(&[1, 1, 0])),
        ("replica_state", "tag is not valid in this version", 40)
    );
    // Unknown tags are skipped by their size.
    assert!(check_request(&fetch(&[2, 5, 4, 1, 2, 3, 4, 6, 0])).is_ok());
}

/// A Fetch v12 body up to its tagged fields: replica id, max wait, min and
/// max bytes, isolation level, session id and epoch, then empty topics,
/// forgotten topics and rack id.
const FETCH_V12_BODY: [u8; 28] = [
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1,
];

#[test]
fn client_ids_are_read() {
    let mut frame = with(header(3, 1, 1, false), &[&[0, 0, 0, 0]]);
    frame[8..10].copy_from_slice(&3i16.to_be_bytes());
    frame.splice(10..10, *b"abc");
    let head = check_request(&frame).unwrap();
    assert_eq!(head.client_id.as_deref(), Some("abc"));
    assert_eq!(head.header_len, 13);
    assert_eq!(head.header_version, 1);
    frame[10] = 0xff;
    assert_eq!(
        malformed(&frame),
        ("client_id", "client id is not UTF-8", 8)
    );
    assert!(check_request(&frame[..12]).is_err());
}

#[test]
fn errors_name_the_request() {
    let frame = with(header(3, 1, 1, false), &[&(-2i32).to_be_bytes()]);
    assert_eq!(
        check_request(&frame).unwrap_err().to_string(),
        "malformed Metadata v1 request: negative length (`topics` at byte 10)"
    );
}

#[test]
fn truncated_frames_are_refused() {
    for sample in corpus() {
        for cut in 0..sample.frame.len() {
            let short = &sample.frame[..cut];
            if let Ok(head) = check_request(short) {
                // Run the crate anyway: it must not panic.
                let _ = crate_decode(Bytes::copy_from_slice(short), &head);
                panic!(
                    "{}: accepted a frame cut at {cut} of {}",
                    sample.label,
                    sample.frame.len()
                );
            }
        }
    }
}

// ---- mutated frames ----

#[derive(Debug, Clone)]
enum Mutation {
    Flip {
        at: usize,
        bit: u8,
    },
    Set {
        at: usize,
        byte: u8,
    },
    Insert {
        at: usize,
        byte: u8,
    },
    Delete {
        at: usize,
    },
    /// Overwrites a run with 0xff (lengths of -1, huge counts).
    Ones {
        at: usize,
        len: usize,
    },
}

impl Mutation {
    fn apply(&self, frame: &mut Vec<u8>) {
        let len = frame.len().max(1);
        match *self {
            Mutation::Flip { at, bit } => {
                if let Some(b) = frame.get_mut(at % len) {
                    *b ^= 1 << bit;
                }
            }
            Mutation::Set { at, byte } => {
                if let Some(b) = frame.get_mut(at % len) {
                    *b = byte;
                }
            }
            Mutation::Insert { at, byte } => frame.insert(at % (frame.len() + 1), byte),
            Mutation::Delete { at } => {
                if !frame.is_empty() {
                    frame.remove(at % len);
                }
            }
            Mutation::Ones { at, len: run } => {
                let start = at % len;
                let end = (start + run).min(frame.len());
                frame
                    .get_mut(start..end)
                    .into_iter()
                    .flatten()
                    .for_each(|b| *b = 0xff);
            }
        }
    }
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 0u8..8).prop_map(|(at, bit)| Mutation::Flip { at, bit }),
        (any::<usize>(), any::<u8>()).prop_map(|(at, byte)| Mutation::Set { at, byte }),
        (any::<usize>(), any::<u8>()).prop_map(|(at, byte)| Mutation::Insert { at, byte }),
        any::<usize>().prop_map(|at| Mutation::Delete { at }),
        (any::<usize>(), 1usize..8).prop_map(|(at, len)| Mutation::Ones { at, len }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    /// Whatever a mutated frame passes, the crate decodes without panicking,
    /// without allocating beyond a small multiple of the frame, and, when it
    /// succeeds, consuming exactly what the guard walked.
    #[test]
    fn mutated_frames_are_harmless(pick in any::<usize>(), mutations in proptest::collection::vec(mutation(), 1..4)) {
        let samples = corpus();
        let sample = &samples[pick % samples.len()];
        let mut frame = sample.frame.clone();
        for m in &mutations {
            m.apply(&mut frame);
        }
        if let Ok((head, consumed)) = check_request_consumed(&frame) {
            prop_assert!(head.header_len + consumed <= frame.len());
            let buf = Bytes::copy_from_slice(&frame);
            let (decoded, largest) = alloc_peak::largest_allocation(|| crate_decode(buf, &head));
            prop_assert!(
                largest <= allocation_bound(frame.len()),
                "{}: {largest} bytes at once for a {}-byte frame", sample.label, frame.len()
            );
            if let Ok(decoded) = decoded {
                prop_assert_eq!(decoded, consumed, "{}: the crate and the guard disagree", &sample.label);
            }
        }
    }
}

/// The densest arrays the table allows (elements of one or two bytes,
/// decoded into structs or strings of tens of bytes) stay within the bound.
#[test]
fn dense_arrays_stay_within_the_allocation_bound() {
    const N: u32 = 50_000;
    let compact_count = |out: &mut Vec<u8>, mut n: u32| {
        n += 1;
        while n >= 0x80 {
            out.push((n as u8) | 0x80);
            n >>= 7;
        }
        out.push(n as u8);
    };
    // Metadata v9: topics with a null name and no tagged fields (2 bytes each).
    let mut metadata = header(3, 9, 1, true);
    compact_count(&mut metadata, N);
    for _ in 0..N {
        metadata.extend([0, 0]);
    }
    metadata.extend([1, 0, 0, 0]);
    // DescribeGroups v5: empty group names (1 byte each).
    let mut groups = header(15, 5, 1, true);
    compact_count(&mut groups, N);
    groups.extend(std::iter::repeat_n(1, N as usize));
    groups.extend([0, 0]);
    for frame in [metadata, groups] {
        let (head, consumed) = check_request_consumed(&frame).unwrap();
        assert_eq!(head.header_len + consumed, frame.len());
        let buf = Bytes::copy_from_slice(&frame);
        let (decoded, largest) = alloc_peak::largest_allocation(|| crate_decode(buf, &head));
        assert_eq!(decoded.unwrap(), consumed);
        assert!(largest > frame.len(), "the elements were allocated at once");
        assert!(
            largest <= allocation_bound(frame.len()),
            "{largest} for {}",
            frame.len()
        );
    }
}

#[test]
fn the_peak_allocation_is_measured() {
    let ((), largest) = alloc_peak::largest_allocation(|| drop(Vec::<u8>::with_capacity(12345)));
    assert!(largest >= 12345);
    // The largest decode of the corpus, for scale.
    for sample in corpus() {
        let head = check_request(&sample.frame).unwrap();
        let buf = Bytes::copy_from_slice(&sample.frame);
        let (decoded, largest) = alloc_peak::largest_allocation(|| crate_decode(buf, &head));
        decoded.unwrap();
        assert!(
            largest <= allocation_bound(sample.frame.len()),
            "{}",
            sample.label
        );
    }
}
