//! Maps broker errors to gRPC statuses: a fitting gRPC code, the message,
//! an `ErrorInfo` (stable strata code) in the status details and the code's
//! name in the `strata-error` metadata key.

use prost::Message;
use strata_proto::v1::{ErrorCode, ErrorInfo};
use tonic::{Code, Status};

use crate::error::BrokerError;

fn grpc_code(code: ErrorCode) -> Code {
    use ErrorCode as E;
    match code {
        E::UnknownTopic
        | E::UnknownPartition
        | E::UnknownGroup
        | E::UnknownProducerId
        | E::UnknownBroker
        | E::UnknownMemberId => Code::NotFound,
        E::TopicExists => Code::AlreadyExists,
        E::OffsetOutOfRange => Code::OutOfRange,
        E::CorruptBatch
        | E::BatchTooLarge
        | E::InvalidTopic
        | E::InvalidPartitions
        | E::InvalidReplicationFactor
        | E::InvalidConfig
        | E::InvalidRequest
        | E::InvalidGroup
        | E::UnsupportedAssignor
        | E::InvalidSessionTimeout
        | E::InvalidReplicaAssignment
        | E::InvalidRecord
        | E::UnsupportedCompression => Code::InvalidArgument,
        E::NotLeader
        | E::NotController
        | E::OutOfOrderSequence
        | E::InvalidProducerEpoch
        | E::FencedMemberEpoch
        | E::StaleMemberEpoch
        | E::FencedInstanceId
        | E::InconsistentGroupProtocol
        | E::IllegalGeneration
        | E::RebalanceInProgress
        | E::NonEmptyGroup
        | E::GroupSubscribedToTopic => Code::FailedPrecondition,
        E::Timeout => Code::DeadlineExceeded,
        E::ShuttingDown | E::NotEnoughReplicas | E::RemoteStorageUnavailable | E::NotReady => {
            Code::Unavailable
        }
        E::RemoteDataCorrupt => Code::DataLoss,
        E::Unauthorized => Code::PermissionDenied,
        E::ResourceExhausted => Code::ResourceExhausted,
        E::StorageError | E::Unknown | E::None => Code::Internal,
    }
}

pub fn error_info(e: &BrokerError) -> ErrorInfo {
    let (leader_id, leader_addr) = match e {
        BrokerError::NotLeader {
            leader_id,
            leader_addr,
            ..
        }
        | BrokerError::NotController {
            leader_id,
            leader_addr,
        } => (*leader_id, leader_addr.clone()),
        _ => (0, String::new()),
    };
    ErrorInfo {
        code: e.code() as i32,
        message: e.to_string(),
        leader_id,
        leader_addr,
    }
}

pub fn to_status(e: &BrokerError) -> Status {
    let info = error_info(e);
    let code = e.code();
    let mut st = Status::with_details(
        grpc_code(code),
        info.message.clone(),
        info.encode_to_vec().into(),
    );
    if let Ok(v) = code.as_str_name().parse() {
        st.metadata_mut()
            .insert(strata_proto::ERROR_CODE_METADATA, v);
    }
    st
}

impl From<BrokerError> for Status {
    fn from(e: BrokerError) -> Self {
        to_status(&e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn details_carry_the_code() {
        let st = to_status(&BrokerError::UnknownTopic("x".into()));
        assert_eq!(st.code(), Code::NotFound);
        let info = ErrorInfo::decode(st.details()).unwrap();
        assert_eq!(info.code, ErrorCode::UnknownTopic as i32);
        assert_eq!(st.metadata().get("strata-error").unwrap(), "UNKNOWN_TOPIC");
    }
}
