//! strata's error codes as Kafka's.
//!
//! Every broker error has one stable strata code (`error::code_of`); this
//! maps it to the Kafka code a Kafka client acts on (retriable ones stay
//! retriable). The few codes that depend on what was refused (topic,
//! group or cluster authorization) take the resource from the caller.

use strata_proto::v1::ErrorCode;

use crate::error::BrokerError;

pub const NONE: i16 = 0;
pub const UNKNOWN_SERVER_ERROR: i16 = -1;
pub const OFFSET_OUT_OF_RANGE: i16 = 1;
pub const CORRUPT_MESSAGE: i16 = 2;
pub const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
pub const LEADER_NOT_AVAILABLE: i16 = 5;
pub const NOT_LEADER_OR_FOLLOWER: i16 = 6;
pub const REQUEST_TIMED_OUT: i16 = 7;
pub const MESSAGE_TOO_LARGE: i16 = 10;
pub const COORDINATOR_NOT_AVAILABLE: i16 = 15;
pub const NOT_COORDINATOR: i16 = 16;
pub const INVALID_TOPIC_EXCEPTION: i16 = 17;
pub const NOT_ENOUGH_REPLICAS: i16 = 19;
pub const INVALID_REQUIRED_ACKS: i16 = 21;
pub const ILLEGAL_GENERATION: i16 = 22;
pub const INCONSISTENT_GROUP_PROTOCOL: i16 = 23;
pub const INVALID_GROUP_ID: i16 = 24;
pub const UNKNOWN_MEMBER_ID: i16 = 25;
pub const INVALID_SESSION_TIMEOUT: i16 = 26;
pub const REBALANCE_IN_PROGRESS: i16 = 27;
pub const TOPIC_AUTHORIZATION_FAILED: i16 = 29;
pub const GROUP_AUTHORIZATION_FAILED: i16 = 30;
pub const CLUSTER_AUTHORIZATION_FAILED: i16 = 31;
pub const UNSUPPORTED_SASL_MECHANISM: i16 = 33;
pub const ILLEGAL_SASL_STATE: i16 = 34;
pub const UNSUPPORTED_VERSION: i16 = 35;
pub const TOPIC_ALREADY_EXISTS: i16 = 36;
pub const INVALID_PARTITIONS: i16 = 37;
pub const INVALID_REPLICATION_FACTOR: i16 = 38;
pub const INVALID_REPLICA_ASSIGNMENT: i16 = 39;
pub const INVALID_CONFIG: i16 = 40;
pub const NOT_CONTROLLER: i16 = 41;
pub const INVALID_REQUEST: i16 = 42;
pub const OUT_OF_ORDER_SEQUENCE_NUMBER: i16 = 45;
pub const INVALID_PRODUCER_EPOCH: i16 = 47;
pub const KAFKA_STORAGE_ERROR: i16 = 56;
pub const SASL_AUTHENTICATION_FAILED: i16 = 58;
pub const UNKNOWN_PRODUCER_ID: i16 = 59;
pub const NON_EMPTY_GROUP: i16 = 68;
pub const GROUP_ID_NOT_FOUND: i16 = 69;
pub const FENCED_LEADER_EPOCH: i16 = 74;
pub const UNKNOWN_LEADER_EPOCH: i16 = 75;
pub const UNSUPPORTED_COMPRESSION_TYPE: i16 = 76;
pub const MEMBER_ID_REQUIRED: i16 = 79;
pub const FENCED_INSTANCE_ID: i16 = 82;
pub const GROUP_SUBSCRIBED_TO_TOPIC: i16 = 86;
pub const INVALID_RECORD: i16 = 87;
pub const RESOURCE_NOT_FOUND: i16 = 91;
pub const DUPLICATE_RESOURCE: i16 = 92;
pub const UNACCEPTABLE_CREDENTIAL: i16 = 93;
pub const UNSUPPORTED_ASSIGNOR: i16 = 112;
pub const FENCED_MEMBER_EPOCH: i16 = 110;
pub const STALE_MEMBER_EPOCH: i16 = 113;
pub const TRANSACTIONAL_ID_AUTHORIZATION_FAILED: i16 = 53;
pub const UNKNOWN_TOPIC_ID: i16 = 100;
pub const UNSUPPORTED_ENDPOINT_TYPE: i16 = 115;

/// What an authorization failure refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    Topic,
    Group,
    Cluster,
}

/// The Kafka code of a broker error.
pub fn code(e: &BrokerError, refused: Refused) -> i16 {
    code_of(e.code(), refused)
}

/// The Kafka code of a strata code.
pub fn code_of(c: ErrorCode, refused: Refused) -> i16 {
    use ErrorCode as E;
    match c {
        E::None => NONE,
        E::UnknownTopic | E::UnknownPartition => UNKNOWN_TOPIC_OR_PARTITION,
        E::OffsetOutOfRange => OFFSET_OUT_OF_RANGE,
        E::CorruptBatch => CORRUPT_MESSAGE,
        E::BatchTooLarge => MESSAGE_TOO_LARGE,
        E::UnsupportedCompression => UNSUPPORTED_COMPRESSION_TYPE,
        E::InvalidTopic => INVALID_TOPIC_EXCEPTION,
        E::TopicExists => TOPIC_ALREADY_EXISTS,
        E::InvalidPartitions => INVALID_PARTITIONS,
        E::InvalidReplicationFactor => INVALID_REPLICATION_FACTOR,
        E::InvalidConfig => INVALID_CONFIG,
        E::InvalidRequest => INVALID_REQUEST,
        E::Unauthorized => match refused {
            Refused::Topic => TOPIC_AUTHORIZATION_FAILED,
            Refused::Group => GROUP_AUTHORIZATION_FAILED,
            Refused::Cluster => CLUSTER_AUTHORIZATION_FAILED,
        },
        E::Timeout => REQUEST_TIMED_OUT,
        E::StorageError | E::RemoteStorageUnavailable | E::RemoteDataCorrupt => KAFKA_STORAGE_ERROR,
        E::OutOfOrderSequence => OUT_OF_ORDER_SEQUENCE_NUMBER,
        E::InvalidProducerEpoch => INVALID_PRODUCER_EPOCH,
        E::UnknownProducerId => UNKNOWN_PRODUCER_ID,
        E::NotController => NOT_CONTROLLER,
        // Retriable: the client looks the leader up again.
        E::NotLeader | E::ShuttingDown => NOT_LEADER_OR_FOLLOWER,
        E::NotReady | E::UnknownBroker => LEADER_NOT_AVAILABLE,
        E::UnknownGroup => GROUP_ID_NOT_FOUND,
        E::InvalidGroup => INVALID_GROUP_ID,
        E::NotEnoughReplicas => NOT_ENOUGH_REPLICAS,
        E::ResourceExhausted => REQUEST_TIMED_OUT,
        E::UnknownMemberId => UNKNOWN_MEMBER_ID,
        E::FencedMemberEpoch => FENCED_MEMBER_EPOCH,
        E::StaleMemberEpoch => STALE_MEMBER_EPOCH,
        E::FencedInstanceId => FENCED_INSTANCE_ID,
        E::UnsupportedAssignor => UNSUPPORTED_ASSIGNOR,
        E::InconsistentGroupProtocol => INCONSISTENT_GROUP_PROTOCOL,
        E::NonEmptyGroup => NON_EMPTY_GROUP,
        E::IllegalGeneration => ILLEGAL_GENERATION,
        E::RebalanceInProgress => REBALANCE_IN_PROGRESS,
        E::InvalidSessionTimeout => INVALID_SESSION_TIMEOUT,
        E::InvalidReplicaAssignment => INVALID_REPLICA_ASSIGNMENT,
        E::GroupSubscribedToTopic => GROUP_SUBSCRIBED_TO_TOPIC,
        E::InvalidRecord => INVALID_RECORD,
        _ => UNKNOWN_SERVER_ERROR,
    }
}
