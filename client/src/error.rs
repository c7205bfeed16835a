//! Typed client errors and the mapping from gRPC statuses.
//!
//! Every failed broker RPC carries a prost-encoded [`ErrorInfo`] in the
//! status details; a status without details is a transport failure. The
//! error is `Clone` because one failed batch fails many record futures.

use prost::Message;
use strata_proto::v1::{ErrorCode, ErrorInfo};
use tonic::Code;

/// Where the broker says a partition's leader is, when it knows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaderHint {
    /// Broker id of the leader.
    pub id: u64,
    /// Client address of the leader (`host:port`).
    pub addr: String,
}

/// Errors returned by the strata client.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ClientError {
    /// The broker refused the request with a stable error code.
    #[error("{}: {message}", code.as_str_name())]
    Broker {
        code: ErrorCode,
        message: String,
        leader: Option<LeaderHint>,
    },
    /// No broker could be reached, or the connection broke.
    #[error("CONNECTION: {0}")]
    Connection(String),
    /// The request did not complete in time.
    #[error("TIMEOUT: request timed out")]
    Timeout,
    /// The caller passed something unusable.
    #[error("INVALID_ARGUMENT: {0}")]
    InvalidArgument(String),
    /// Data from the broker could not be decoded.
    #[error("CORRUPT: {0}")]
    Corrupt(String),
    /// The producer or consumer was closed.
    #[error("CLOSED: {0}")]
    Closed(String),
}

impl ClientError {
    /// Builds a broker error from a code and message.
    pub fn broker(code: ErrorCode, message: impl Into<String>) -> Self {
        Self::Broker {
            code,
            message: message.into(),
            leader: None,
        }
    }

    /// The broker's error code; `None` for client-side errors.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            Self::Broker { code, .. } => Some(*code),
            Self::Timeout => Some(ErrorCode::Timeout),
            _ => None,
        }
    }

    /// A short stable name of the error kind (the broker code's name for
    /// broker errors), e.g. `UNKNOWN_TOPIC` or `CONNECTION`.
    pub fn code_name(&self) -> &'static str {
        match self {
            Self::Broker { code, .. } => code.as_str_name(),
            Self::Connection(_) => "CONNECTION",
            Self::Timeout => "TIMEOUT",
            Self::InvalidArgument(_) => "INVALID_ARGUMENT",
            Self::Corrupt(_) => "CORRUPT",
            Self::Closed(_) => "CLOSED",
        }
    }

    /// The human-readable part without the code name.
    pub fn message(&self) -> String {
        match self {
            Self::Broker { message, .. } => message.clone(),
            Self::Connection(m) | Self::InvalidArgument(m) | Self::Corrupt(m) | Self::Closed(m) => {
                m.clone()
            }
            Self::Timeout => "request timed out".to_owned(),
        }
    }

    /// Whether retrying the same request (after a metadata refresh and a
    /// backoff) may succeed.
    pub fn is_retriable(&self) -> bool {
        match self {
            Self::Broker { code, .. } => is_retriable_code(*code),
            Self::Connection(_) | Self::Timeout => true,
            _ => false,
        }
    }

    /// Whether the error means the client's view of leadership is stale.
    pub fn invalidates_metadata(&self) -> bool {
        match self {
            Self::Broker { code, .. } => matches!(
                code,
                ErrorCode::NotLeader
                    | ErrorCode::NotController
                    | ErrorCode::UnknownPartition
                    | ErrorCode::NotReady
                    | ErrorCode::StorageError
            ),
            Self::Connection(_) => true,
            _ => false,
        }
    }

    /// The leader named by a `NOT_LEADER` error, if any.
    pub fn leader(&self) -> Option<&LeaderHint> {
        match self {
            Self::Broker { leader, .. } => leader.as_ref(),
            _ => None,
        }
    }
}

/// Codes that a retry may cure.
pub fn is_retriable_code(code: ErrorCode) -> bool {
    matches!(
        code,
        ErrorCode::NotLeader
            | ErrorCode::Timeout
            | ErrorCode::ShuttingDown
            | ErrorCode::NotEnoughReplicas
            | ErrorCode::NotController
            | ErrorCode::RemoteStorageUnavailable
            | ErrorCode::NotReady
            | ErrorCode::StorageError
    )
}

/// Converts an `ErrorInfo` (from a status or a streamed response).
pub fn from_error_info(info: &ErrorInfo) -> ClientError {
    let code = ErrorCode::try_from(info.code).unwrap_or(ErrorCode::Unknown);
    let leader = (info.leader_id != 0 || !info.leader_addr.is_empty()).then(|| LeaderHint {
        id: info.leader_id,
        addr: info.leader_addr.clone(),
    });
    ClientError::Broker {
        code,
        message: info.message.clone(),
        leader,
    }
}

/// Whether a streamed `ErrorInfo` reports a failure.
pub fn is_error(info: Option<&ErrorInfo>) -> bool {
    info.is_some_and(|i| i.code != ErrorCode::None as i32)
}

impl From<tonic::Status> for ClientError {
    fn from(st: tonic::Status) -> Self {
        if !st.details().is_empty()
            && let Ok(info) = ErrorInfo::decode(st.details())
            && info.code != ErrorCode::None as i32
        {
            return from_error_info(&info);
        }
        match st.code() {
            Code::DeadlineExceeded => Self::Timeout,
            Code::Unimplemented
            | Code::InvalidArgument
            | Code::ResourceExhausted
            | Code::OutOfRange
            | Code::PermissionDenied
            | Code::Unauthenticated
            | Code::FailedPrecondition
            | Code::AlreadyExists
            | Code::NotFound => Self::Broker {
                code: ErrorCode::Unknown,
                message: format!("{:?}: {}", st.code(), st.message()),
                leader: None,
            },
            _ => Self::Connection(describe_status(&st)),
        }
    }
}

impl From<tonic::transport::Error> for ClientError {
    fn from(e: tonic::transport::Error) -> Self {
        Self::Connection(error_chain(&e))
    }
}

fn describe_status(st: &tonic::Status) -> String {
    use std::error::Error as _;
    let mut msg = st.message().to_owned();
    let mut root: Option<&(dyn std::error::Error + 'static)> = st.source();
    while let Some(next) = root.and_then(|e| e.source()) {
        root = Some(next);
    }
    if let Some(root) = root {
        let r = root.to_string();
        if msg.is_empty() {
            msg = r;
        } else if !r.is_empty() && !msg.contains(&r) {
            msg = format!("{msg}: {r}");
        }
    }
    if msg.is_empty() {
        msg = format!("{:?}", st.code());
    }
    msg
}

/// Joins an error and its sources with `": "`, skipping repeats.
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        let s = err.to_string();
        if !s.is_empty() && !parts.iter().any(|p| p.contains(&s)) {
            parts.push(s);
        }
        cur = err.source();
    }
    parts.join(": ")
}

impl ClientError {
    /// Names the broker address in a connection error.
    pub(crate) fn at(self, addr: &str) -> Self {
        match self {
            Self::Connection(m) if !m.contains(addr) => {
                Self::Connection(format!("cannot reach {addr}: {m}"))
            }
            e => e,
        }
    }
}

/// Result alias of the client.
pub type Result<T, E = ClientError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_with_details_maps_to_broker_error() {
        let info = ErrorInfo {
            code: ErrorCode::NotLeader as i32,
            message: "not the leader".into(),
            leader_id: 2,
            leader_addr: "10.0.0.2:9292".into(),
        };
        let st = tonic::Status::with_details(
            Code::FailedPrecondition,
            "not the leader",
            info.encode_to_vec().into(),
        );
        let e = ClientError::from(st);
        assert_eq!(e.code(), Some(ErrorCode::NotLeader));
        assert!(e.is_retriable());
        assert!(e.invalidates_metadata());
        assert_eq!(e.leader().map(|l| l.id), Some(2));
        assert_eq!(e.to_string(), "NOT_LEADER: not the leader");
    }

    #[test]
    fn status_without_details_is_a_connection_error() {
        let e = ClientError::from(tonic::Status::unavailable("connection refused"));
        assert!(matches!(e, ClientError::Connection(_)));
        assert!(e.is_retriable());
        let e = ClientError::from(tonic::Status::unimplemented("nope"));
        assert!(!e.is_retriable());
    }

    #[test]
    fn unknown_broker_is_fatal() {
        let info = ErrorInfo {
            code: ErrorCode::UnknownBroker as i32,
            message: "broker 7 is not a member".into(),
            ..Default::default()
        };
        let st = tonic::Status::with_details(Code::NotFound, "7", info.encode_to_vec().into());
        let e = ClientError::from(st);
        assert_eq!(e.code(), Some(ErrorCode::UnknownBroker));
        assert_eq!(e.code_name(), "UNKNOWN_BROKER");
        assert!(!e.is_retriable());
        assert!(!e.invalidates_metadata());
        assert_eq!(e.to_string(), "UNKNOWN_BROKER: broker 7 is not a member");
    }

    #[test]
    fn unknown_topic_is_fatal() {
        let info = ErrorInfo {
            code: ErrorCode::UnknownTopic as i32,
            message: "topic 'x' does not exist".into(),
            ..Default::default()
        };
        let st = tonic::Status::with_details(Code::NotFound, "x", info.encode_to_vec().into());
        let e = ClientError::from(st);
        assert!(!e.is_retriable());
        assert_eq!(e.to_string(), "UNKNOWN_TOPIC: topic 'x' does not exist");
    }
}
