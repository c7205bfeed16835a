//! Errors the broker reports to clients. Each maps to one stable wire code
//! (`strata_proto::v1::ErrorCode`); the mapping to gRPC statuses lives in
//! `server/status.rs`.

use strata_proto::batch::BatchError;
use strata_proto::v1::ErrorCode;

use crate::log::LogError;

#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("topic '{0}' does not exist")]
    UnknownTopic(String),
    #[error("topic '{topic}' has no partition {partition}")]
    UnknownPartition { topic: String, partition: u32 },
    #[error("offset {offset} is out of range [{start}, {end}] for {topic}/{partition}")]
    OffsetOutOfRange {
        topic: String,
        partition: u32,
        offset: i64,
        start: i64,
        end: i64,
    },
    #[error("corrupt batch: {0}")]
    CorruptBatch(String),
    #[error("batch of {size} bytes exceeds max.message.bytes {max}")]
    BatchTooLarge { size: usize, max: u32 },
    #[error("unsupported compression codec {0}")]
    UnsupportedCompression(u8),
    #[error("invalid topic name '{name}': {why}")]
    InvalidTopic { name: String, why: String },
    #[error("topic '{0}' already exists")]
    TopicExists(String),
    #[error("invalid partition count: {0}")]
    InvalidPartitions(String),
    #[error("invalid replication factor: {0}")]
    InvalidReplicationFactor(String),
    #[error("invalid config: {0}")]
    InvalidConfig(String),
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    #[error("invalid record: {0}")]
    InvalidRecord(String),
    #[error("unauthorized: {0}")]
    Unauthorized(String),
    #[error("timed out: {0}")]
    Timeout(String),
    #[error("storage error: {0}")]
    Storage(String),
    #[error("out of order sequence for producer {producer_id}: expected {expected}, got {got}")]
    OutOfOrderSequence {
        producer_id: i64,
        expected: i32,
        got: i32,
    },
    #[error("producer {producer_id} epoch {got} is older than the current epoch {current}")]
    InvalidProducerEpoch {
        producer_id: i64,
        got: i16,
        current: i16,
    },
    #[error("unknown member {0}")]
    UnknownMember(String),
    #[error("member {member} heartbeats with epoch {epoch}; the group has it at {current}")]
    FencedMemberEpoch {
        member: String,
        epoch: i32,
        current: i32,
    },
    #[error("stale member epoch: {0}")]
    StaleMemberEpoch(String),
    #[error("group instance id '{0}' belongs to another member")]
    FencedInstanceId(String),
    #[error("unsupported assignor '{0}' (uniform, range)")]
    UnsupportedAssignor(String),
    #[error("inconsistent group protocol: {0}")]
    InconsistentGroupProtocol(String),
    #[error("group '{0}' has members")]
    NonEmptyGroup(String),
    #[error("generation {got} is not the group's ({current}): rejoin")]
    IllegalGeneration { got: i32, current: i32 },
    #[error("the group is rebalancing: rejoin")]
    RebalanceInProgress,
    #[error("session timeout {0} ms is outside [1000, 1800000]")]
    InvalidSessionTimeout(i32),
    #[error("invalid replica assignment: {0}")]
    InvalidReplicaAssignment(String),
    #[error("group '{group}' still consumes topic '{topic}'")]
    GroupSubscribedToTopic { group: String, topic: String },
    #[error("broker is shutting down")]
    ShuttingDown,
    #[error("invalid group id '{0}'")]
    InvalidGroup(String),
    #[error("group '{0}' does not exist")]
    UnknownGroup(String),
    #[error("too many concurrent requests: {0}")]
    ResourceExhausted(String),
    #[error("this broker is not the leader of {topic}/{partition}{}", leader_hint(*leader_id, leader_addr))]
    NotLeader {
        topic: String,
        partition: u32,
        leader_id: u64,
        leader_addr: String,
    },
    #[error("no controller leader is available{}", leader_hint(*leader_id, leader_addr))]
    NotController { leader_id: u64, leader_addr: String },
    #[error("broker {0} is not a member of the cluster")]
    UnknownBroker(u64),
    #[error("not enough replicas: {0}")]
    NotEnoughReplicas(String),
    #[error("broker not ready: {0}")]
    NotReady(String),
    #[error("remote storage unavailable: {0}")]
    RemoteStorage(String),
    #[error("remote data corrupt or missing: {0}")]
    RemoteDataCorrupt(String),
    /// An error another broker reported (a forwarded request).
    #[error("{message}")]
    Remote { code: ErrorCode, message: String },
}

fn leader_hint(id: u64, addr: &str) -> String {
    if id == 0 {
        String::new()
    } else {
        format!(" (leader: broker {id} at {addr})")
    }
}

impl BrokerError {
    pub fn code(&self) -> ErrorCode {
        use BrokerError::*;
        match self {
            UnknownTopic(_) => ErrorCode::UnknownTopic,
            UnknownPartition { .. } => ErrorCode::UnknownPartition,
            OffsetOutOfRange { .. } => ErrorCode::OffsetOutOfRange,
            CorruptBatch(_) => ErrorCode::CorruptBatch,
            BatchTooLarge { .. } => ErrorCode::BatchTooLarge,
            UnsupportedCompression(_) => ErrorCode::UnsupportedCompression,
            InvalidTopic { .. } => ErrorCode::InvalidTopic,
            TopicExists(_) => ErrorCode::TopicExists,
            InvalidPartitions(_) => ErrorCode::InvalidPartitions,
            InvalidReplicationFactor(_) => ErrorCode::InvalidReplicationFactor,
            InvalidConfig(_) => ErrorCode::InvalidConfig,
            InvalidRequest(_) => ErrorCode::InvalidRequest,
            InvalidRecord(_) => ErrorCode::InvalidRecord,
            Unauthorized(_) => ErrorCode::Unauthorized,
            Timeout(_) => ErrorCode::Timeout,
            Storage(_) => ErrorCode::StorageError,
            OutOfOrderSequence { .. } => ErrorCode::OutOfOrderSequence,
            InvalidProducerEpoch { .. } => ErrorCode::InvalidProducerEpoch,
            ShuttingDown => ErrorCode::ShuttingDown,
            InvalidGroup(_) => ErrorCode::InvalidGroup,
            UnknownGroup(_) => ErrorCode::UnknownGroup,
            ResourceExhausted(_) => ErrorCode::ResourceExhausted,
            NotLeader { .. } => ErrorCode::NotLeader,
            NotController { .. } => ErrorCode::NotController,
            UnknownBroker(_) => ErrorCode::UnknownBroker,
            NotEnoughReplicas(_) => ErrorCode::NotEnoughReplicas,
            NotReady(_) => ErrorCode::NotReady,
            RemoteStorage(_) => ErrorCode::RemoteStorageUnavailable,
            RemoteDataCorrupt(_) => ErrorCode::RemoteDataCorrupt,
            UnknownMember(_) => ErrorCode::UnknownMemberId,
            FencedMemberEpoch { .. } => ErrorCode::FencedMemberEpoch,
            StaleMemberEpoch(_) => ErrorCode::StaleMemberEpoch,
            FencedInstanceId(_) => ErrorCode::FencedInstanceId,
            UnsupportedAssignor(_) => ErrorCode::UnsupportedAssignor,
            InconsistentGroupProtocol(_) => ErrorCode::InconsistentGroupProtocol,
            NonEmptyGroup(_) => ErrorCode::NonEmptyGroup,
            IllegalGeneration { .. } => ErrorCode::IllegalGeneration,
            RebalanceInProgress => ErrorCode::RebalanceInProgress,
            InvalidSessionTimeout(_) => ErrorCode::InvalidSessionTimeout,
            InvalidReplicaAssignment(_) => ErrorCode::InvalidReplicaAssignment,
            GroupSubscribedToTopic { .. } => ErrorCode::GroupSubscribedToTopic,
            Remote { code, .. } => *code,
        }
    }

    /// Maps a storage error of partition `topic/partition`.
    pub fn from_log(topic: &str, partition: u32, e: LogError) -> Self {
        match e {
            LogError::OffsetOutOfRange { offset, start, end } => Self::OffsetOutOfRange {
                topic: topic.to_owned(),
                partition,
                offset,
                start,
                end,
            },
            LogError::BatchTooLarge { size, max } => Self::BatchTooLarge { size, max },
            LogError::Corrupt(b) => Self::from(b),
            e @ (LogError::Io { .. } | LogError::Raft(_)) => Self::Storage(e.to_string()),
        }
    }
}

impl From<BatchError> for BrokerError {
    fn from(e: BatchError) -> Self {
        match e {
            BatchError::UnsupportedCompression(c) => Self::UnsupportedCompression(c),
            other => Self::CorruptBatch(other.to_string()),
        }
    }
}

/// The stable code a failed RPC carried (UNKNOWN when it carried none).
pub fn code_of(st: &tonic::Status) -> ErrorCode {
    use prost::Message as _;
    use strata_proto::v1::ErrorInfo;
    use tonic::Code;
    if let Ok(info) = ErrorInfo::decode(st.details())
        && let Ok(c) = ErrorCode::try_from(info.code)
        && c != ErrorCode::None
    {
        return c;
    }
    match st.code() {
        Code::Unavailable => ErrorCode::NotController,
        Code::DeadlineExceeded => ErrorCode::Timeout,
        _ => ErrorCode::Unknown,
    }
}

pub type Result<T, E = BrokerError> = std::result::Result<T, E>;
