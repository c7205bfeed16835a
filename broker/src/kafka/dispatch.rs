//! One place that routes a decoded Kafka request to its handler (one file
//! per API family), and what a handler gives back.

use std::sync::Arc;

use bytes::Bytes;
use futures::future::BoxFuture;
use kafka_protocol::messages::{self as m, ApiKey};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion};

use super::fetch_answer::FetchAnswer;
use super::frame::FrameWriter;
use super::guard::RequestHead;
use super::{
    acls, classic, configs, consumer_protocol, fetch, groups, metadata, offsets, produce,
    producer_id, sasl, topics, transactions, users, versions,
};
use crate::broker::Broker;
use crate::security::auth::Identity;

/// The answers the listener sends, one variant per served API.
macro_rules! responses {
    ($($api:ident($ty:ty)),* $(,)?) => {
        pub enum Response {
            $($api($ty),)*
            /// Fetch is encoded by the listener, sharing stored bytes.
            Fetch(FetchAnswer),
        }

        impl Response {
            /// Writes the body (after the header) in `version`.
            pub fn encode(&self, w: &mut FrameWriter, version: i16) -> anyhow::Result<()> {
                match self {
                    $(Response::$api(r) => r.encode(w.buf(), version),)*
                    Response::Fetch(a) => a.encode_frame(w, version),
                }
            }

            pub fn header_version(&self, version: i16) -> i16 {
                match self {
                    $(Response::$api(_) => <$ty as HeaderVersion>::header_version(version),)*
                    Response::Fetch(_) => FetchAnswer::header_version(version),
                }
            }
        }
    };
}

responses! {
    ApiVersions(m::ApiVersionsResponse),
    Metadata(m::MetadataResponse),
    Produce(m::ProduceResponse),
    ListOffsets(m::ListOffsetsResponse),
    OffsetForLeaderEpoch(m::OffsetForLeaderEpochResponse),
    InitProducerId(m::InitProducerIdResponse),
    CreateTopics(m::CreateTopicsResponse),
    DeleteTopics(m::DeleteTopicsResponse),
    FindCoordinator(m::FindCoordinatorResponse),
    OffsetCommit(m::OffsetCommitResponse),
    OffsetFetch(m::OffsetFetchResponse),
    ListGroups(m::ListGroupsResponse),
    DeleteGroups(m::DeleteGroupsResponse),
    OffsetDelete(m::OffsetDeleteResponse),
    JoinGroup(m::JoinGroupResponse),
    SyncGroup(m::SyncGroupResponse),
    Heartbeat(m::HeartbeatResponse),
    LeaveGroup(m::LeaveGroupResponse),
    DescribeGroups(m::DescribeGroupsResponse),
    DescribeConfigs(m::DescribeConfigsResponse),
    AlterConfigs(m::AlterConfigsResponse),
    IncrementalAlterConfigs(m::IncrementalAlterConfigsResponse),
    DeleteRecords(m::DeleteRecordsResponse),
    CreatePartitions(m::CreatePartitionsResponse),
    DescribeCluster(m::DescribeClusterResponse),
    ConsumerGroupHeartbeat(m::ConsumerGroupHeartbeatResponse),
    ConsumerGroupDescribe(m::ConsumerGroupDescribeResponse),
    SaslHandshake(m::SaslHandshakeResponse),
    SaslAuthenticate(m::SaslAuthenticateResponse),
    DescribeAcls(m::DescribeAclsResponse),
    CreateAcls(m::CreateAclsResponse),
    DeleteAcls(m::DeleteAclsResponse),
    DescribeUserScramCredentials(m::DescribeUserScramCredentialsResponse),
    AlterUserScramCredentials(m::AlterUserScramCredentialsResponse),
    AddPartitionsToTxn(m::AddPartitionsToTxnResponse),
    AddOffsetsToTxn(m::AddOffsetsToTxnResponse),
    EndTxn(m::EndTxnResponse),
    TxnOffsetCommit(m::TxnOffsetCommitResponse),
}

/// What a handler answers.
pub enum Reply {
    /// No answer at all (Produce with acks=0).
    None,
    /// An answer now; `false` if it reports an error.
    Now(Response, bool),
    /// An answer once the future resolves (acks, long polls, rebalances);
    /// it runs concurrently with the connection's next requests.
    Later(BoxFuture<'static, (Option<Response>, bool)>),
    /// The request breaks the protocol: close the connection.
    Close(String),
}

/// A connection's state as the handlers see it.
pub struct Ctx {
    pub broker: Arc<Broker>,
    pub who: Identity,
    pub sasl: sasl::SaslState,
}

impl Ctx {
    pub fn new(broker: Arc<Broker>, who: Identity) -> Self {
        Self {
            broker,
            who,
            sasl: sasl::SaslState::default(),
        }
    }

    /// Whether requests other than the SASL exchange may run: always,
    /// unless the listener requires SASL and it has not completed.
    pub fn may_proceed(&self, key: ApiKey) -> bool {
        matches!(
            key,
            ApiKey::ApiVersions | ApiKey::SaslHandshake | ApiKey::SaslAuthenticate
        ) || self.broker.config().kafka.sasl != crate::config::SaslMode::Required
            || (matches!(self.sasl, sasl::SaslState::Done)
                && self.who.principal != crate::security::auth::ANONYMOUS)
    }
}

/// The metric label of an API.
pub fn api_name(key: ApiKey) -> &'static str {
    match key {
        ApiKey::Produce => "produce",
        ApiKey::Fetch => "fetch",
        ApiKey::ListOffsets => "list_offsets",
        ApiKey::OffsetForLeaderEpoch => "offset_for_leader_epoch",
        ApiKey::Metadata => "metadata",
        ApiKey::OffsetCommit => "offset_commit",
        ApiKey::OffsetFetch => "offset_fetch",
        ApiKey::FindCoordinator => "find_coordinator",
        ApiKey::ListGroups => "list_groups",
        ApiKey::ApiVersions => "api_versions",
        ApiKey::CreateTopics => "create_topics",
        ApiKey::DeleteTopics => "delete_topics",
        ApiKey::InitProducerId => "init_producer_id",
        ApiKey::DeleteGroups => "delete_groups",
        ApiKey::OffsetDelete => "offset_delete",
        ApiKey::JoinGroup => "join_group",
        ApiKey::SyncGroup => "sync_group",
        ApiKey::Heartbeat => "heartbeat",
        ApiKey::LeaveGroup => "leave_group",
        ApiKey::DescribeGroups => "describe_groups",
        ApiKey::DescribeConfigs => "describe_configs",
        ApiKey::AlterConfigs => "alter_configs",
        ApiKey::IncrementalAlterConfigs => "incremental_alter_configs",
        ApiKey::DeleteRecords => "delete_records",
        ApiKey::CreatePartitions => "create_partitions",
        ApiKey::DescribeCluster => "describe_cluster",
        ApiKey::ConsumerGroupHeartbeat => "consumer_group_heartbeat",
        ApiKey::ConsumerGroupDescribe => "consumer_group_describe",
        ApiKey::SaslHandshake => "sasl_handshake",
        ApiKey::SaslAuthenticate => "sasl_authenticate",
        ApiKey::DescribeAcls => "describe_acls",
        ApiKey::CreateAcls => "create_acls",
        ApiKey::DeleteAcls => "delete_acls",
        ApiKey::DescribeUserScramCredentials => "describe_user_scram_credentials",
        ApiKey::AlterUserScramCredentials => "alter_user_scram_credentials",
        ApiKey::AddPartitionsToTxn => "add_partitions_to_txn",
        ApiKey::AddOffsetsToTxn => "add_offsets_to_txn",
        ApiKey::EndTxn => "end_txn",
        ApiKey::TxnOffsetCommit => "txn_offset_commit",
        _ => "other",
    }
}

fn decode<T: Decodable>(body: &mut Bytes, version: i16) -> Result<T, String> {
    T::decode(body, version).map_err(|e| format!("does not decode: {e}"))
}

/// Decodes the body of a request (the guard passed it) and runs its
/// handler.
pub async fn handle(ctx: &mut Ctx, head: &RequestHead, key: ApiKey, mut body: Bytes) -> Reply {
    let v = head.api_version;
    let b = &mut body;
    let outcome = async {
        Ok::<Reply, String>(match key {
            ApiKey::ApiVersions => {
                let _: m::ApiVersionsRequest = decode(b, v)?;
                Reply::Now(
                    Response::ApiVersions(versions::api_versions(super::errors::NONE)),
                    true,
                )
            }
            ApiKey::Metadata => metadata::handle(ctx, decode(b, v)?, v).await,
            ApiKey::Produce => produce::handle(ctx, decode(b, v)?, v).await,
            ApiKey::Fetch => fetch::handle(ctx, decode(b, v)?, v),
            ApiKey::ListOffsets => offsets::list_offsets(ctx, decode(b, v)?, v).await,
            ApiKey::OffsetForLeaderEpoch => offsets::offset_for_leader_epoch(ctx, decode(b, v)?),
            ApiKey::InitProducerId => producer_id::handle(ctx, decode(b, v)?).await,
            ApiKey::CreateTopics => topics::create(ctx, decode(b, v)?, v).await,
            ApiKey::DeleteTopics => topics::delete(ctx, decode(b, v)?, v).await,
            ApiKey::FindCoordinator => groups::find_coordinator(ctx, decode(b, v)?, v),
            ApiKey::OffsetCommit => groups::offset_commit(ctx, decode(b, v)?, v).await,
            ApiKey::OffsetFetch => groups::offset_fetch(ctx, decode(b, v)?, v),
            ApiKey::ListGroups => groups::list_groups(ctx, decode(b, v)?),
            ApiKey::DeleteGroups => groups::delete_groups(ctx, decode(b, v)?).await,
            ApiKey::OffsetDelete => groups::offset_delete(ctx, decode(b, v)?).await,
            ApiKey::JoinGroup => classic::join_group(ctx, head, decode(b, v)?, v),
            ApiKey::SyncGroup => classic::sync_group(ctx, decode(b, v)?),
            ApiKey::Heartbeat => classic::heartbeat(ctx, decode(b, v)?).await,
            ApiKey::LeaveGroup => classic::leave_group(ctx, decode(b, v)?, v).await,
            ApiKey::DescribeGroups => classic::describe_groups(ctx, decode(b, v)?),
            ApiKey::DescribeConfigs => configs::describe(ctx, decode(b, v)?),
            ApiKey::AlterConfigs => configs::alter(ctx, decode(b, v)?).await,
            ApiKey::IncrementalAlterConfigs => configs::incremental_alter(ctx, decode(b, v)?).await,
            ApiKey::DeleteRecords => topics::delete_records(ctx, decode(b, v)?).await,
            ApiKey::CreatePartitions => topics::create_partitions(ctx, decode(b, v)?).await,
            ApiKey::DescribeCluster => metadata::describe_cluster(ctx, decode(b, v)?),
            ApiKey::ConsumerGroupHeartbeat => {
                consumer_protocol::heartbeat(ctx, head, decode(b, v)?).await
            }
            ApiKey::ConsumerGroupDescribe => consumer_protocol::describe(ctx, decode(b, v)?),
            ApiKey::SaslHandshake => sasl::handshake(ctx, decode(b, v)?),
            ApiKey::SaslAuthenticate => sasl::authenticate(ctx, decode(b, v)?),
            ApiKey::DescribeAcls => acls::describe(ctx, decode(b, v)?),
            ApiKey::CreateAcls => acls::create(ctx, decode(b, v)?).await,
            ApiKey::DeleteAcls => acls::delete(ctx, decode(b, v)?).await,
            ApiKey::DescribeUserScramCredentials => users::describe(ctx, decode(b, v)?),
            ApiKey::AlterUserScramCredentials => users::alter(ctx, decode(b, v)?).await,
            ApiKey::AddPartitionsToTxn => transactions::add_partitions(decode(b, v)?, v),
            ApiKey::AddOffsetsToTxn => transactions::add_offsets(decode(b, v)?),
            ApiKey::EndTxn => transactions::end(decode(b, v)?),
            ApiKey::TxnOffsetCommit => transactions::offset_commit(decode(b, v)?),
            other => Reply::Close(format!("{other:?} v{v} is not served")),
        })
    };
    match outcome.await {
        Ok(r) => r,
        Err(why) => Reply::Close(format!("{key:?} v{v} {why}")),
    }
}
