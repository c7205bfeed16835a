//! Placeholder: header checks only (the full bounds walker replaces it).

#[derive(Debug, Clone)]
pub struct RequestHead {
    pub api_key: i16,
    pub api_version: i16,
    pub correlation_id: i32,
    pub client_id: Option<String>,
    pub header_len: usize,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum GuardError {
    #[error("frame too short")]
    FrameTooShort,
    #[error("unknown api {api_key}")]
    UnknownApi { api_key: i16, correlation_id: i32 },
    #[error("unsupported version {api_version} of api {api_key}")]
    UnsupportedVersion {
        api_key: i16,
        api_version: i16,
        correlation_id: i32,
    },
    #[error("malformed")]
    Malformed {
        api_key: i16,
        api_version: i16,
        correlation_id: i32,
        at: usize,
        what: &'static str,
    },
}

pub const MAX_FRAME: usize = 100 << 20;

pub fn check_request(frame: &[u8]) -> Result<RequestHead, GuardError> {
    if frame.len() < 10 {
        return Err(GuardError::FrameTooShort);
    }
    let api_key = i16::from_be_bytes([frame[0], frame[1]]);
    let api_version = i16::from_be_bytes([frame[2], frame[3]]);
    let correlation_id = i32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]);
    let n = i16::from_be_bytes([frame[8], frame[9]]);
    let mut at = 10usize;
    let client_id = if n >= 0 {
        let end = at + n as usize;
        let s = frame.get(at..end).ok_or(GuardError::FrameTooShort)?;
        at = end;
        Some(String::from_utf8_lossy(s).into_owned())
    } else {
        None
    };
    let Ok(key) = kafka_protocol::messages::ApiKey::try_from(api_key) else {
        return Err(GuardError::UnknownApi {
            api_key,
            correlation_id,
        });
    };
    if !super::versions::served(api_key, api_version) {
        return Err(GuardError::UnsupportedVersion {
            api_key,
            api_version,
            correlation_id,
        });
    }
    if key.request_header_version(api_version) >= 2 {
        // Tagged fields: a count of 0 is all clients send.
        if frame.get(at) != Some(&0) {
            return Err(GuardError::Malformed {
                api_key,
                api_version,
                correlation_id,
                at,
                what: "header tags",
            });
        }
        at += 1;
    }
    Ok(RequestHead {
        api_key,
        api_version,
        correlation_id,
        client_id,
        header_len: at,
    })
}
