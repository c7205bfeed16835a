//! The APIs and versions the Kafka listener serves, and its answer to
//! `ApiVersions` (key 18).
//!
//! One table is the truth for both: a request outside it is refused
//! before decoding (`ApiVersions` itself is answered in v0 format with
//! UNSUPPORTED_VERSION and this list, as KIP-511 asks).

use kafka_protocol::messages::ApiKey;
use kafka_protocol::messages::api_versions_response::{ApiVersion, ApiVersionsResponse};

use super::errors;

/// `(api, min, max)` served. Produce is advertised from v0 although v0–2
/// are refused when sent: librdkafka before 2.11.1 turns compression off
/// against a broker whose Produce minimum is above 0.
pub const SERVED: &[(ApiKey, i16, i16)] = &[
    (ApiKey::Produce, 0, 13),
    (ApiKey::Fetch, 4, 18),
    (ApiKey::ListOffsets, 1, 10),
    (ApiKey::OffsetForLeaderEpoch, 2, 4),
    (ApiKey::Metadata, 0, 13),
    (ApiKey::OffsetCommit, 2, 9),
    (ApiKey::OffsetFetch, 1, 9),
    (ApiKey::FindCoordinator, 0, 6),
    (ApiKey::JoinGroup, 0, 9),
    (ApiKey::Heartbeat, 0, 4),
    (ApiKey::LeaveGroup, 0, 5),
    (ApiKey::SyncGroup, 0, 5),
    (ApiKey::DescribeGroups, 0, 6),
    (ApiKey::ListGroups, 0, 5),
    (ApiKey::ApiVersions, 0, 4),
    (ApiKey::CreateTopics, 2, 7),
    (ApiKey::DeleteTopics, 1, 6),
    (ApiKey::InitProducerId, 0, 5),
    (ApiKey::DeleteGroups, 0, 2),
    (ApiKey::OffsetDelete, 0, 0),
    (ApiKey::DescribeConfigs, 1, 4),
    (ApiKey::AlterConfigs, 0, 2),
    (ApiKey::IncrementalAlterConfigs, 0, 1),
    (ApiKey::DeleteRecords, 0, 2),
    (ApiKey::CreatePartitions, 0, 3),
    (ApiKey::DescribeCluster, 0, 2),
    (ApiKey::ConsumerGroupHeartbeat, 0, 1),
    (ApiKey::ConsumerGroupDescribe, 0, 1),
    (ApiKey::SaslHandshake, 1, 1),
    (ApiKey::SaslAuthenticate, 0, 2),
    (ApiKey::DescribeAcls, 1, 3),
    (ApiKey::CreateAcls, 1, 3),
    (ApiKey::DeleteAcls, 1, 3),
    (ApiKey::DescribeUserScramCredentials, 0, 0),
    (ApiKey::AlterUserScramCredentials, 0, 0),
];

/// Whether `(api_key, version)` is served (advertised and handled).
pub fn served(api_key: i16, version: i16) -> bool {
    within(SERVED, api_key, version)
}

/// Whether `(api_key, version)` is answered: served, or one of the
/// transaction APIs, which are not advertised and answer UNSUPPORTED_VERSION.
pub fn answered(api_key: i16, version: i16) -> bool {
    served(api_key, version) || within(super::transactions::ANSWERED, api_key, version)
}

fn within(table: &[(ApiKey, i16, i16)], api_key: i16, version: i16) -> bool {
    table
        .iter()
        .any(|(k, lo, hi)| *k as i16 == api_key && (*lo..=*hi).contains(&version))
}

/// The `ApiVersions` answer (`error_code` NONE or UNSUPPORTED_VERSION).
pub fn api_versions(error_code: i16) -> ApiVersionsResponse {
    ApiVersionsResponse::default()
        .with_error_code(error_code)
        .with_api_keys(
            SERVED
                .iter()
                .map(|(k, lo, hi)| {
                    ApiVersion::default()
                        .with_api_key(*k as i16)
                        .with_min_version(*lo)
                        .with_max_version(*hi)
                })
                .collect(),
        )
}

/// The answer to an `ApiVersions` request of a version we do not know.
pub fn unsupported() -> ApiVersionsResponse {
    api_versions(errors::UNSUPPORTED_VERSION)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kafka_4_floors_are_met() {
        // KIP-896: Kafka 4 clients refuse brokers below these minimums.
        let floors = [
            (ApiKey::Produce, 3),
            (ApiKey::Fetch, 4),
            (ApiKey::ListOffsets, 1),
            (ApiKey::OffsetCommit, 2),
            (ApiKey::OffsetFetch, 1),
            (ApiKey::CreateTopics, 2),
            (ApiKey::DeleteTopics, 1),
            (ApiKey::DescribeConfigs, 1),
            (ApiKey::DescribeAcls, 1),
            (ApiKey::CreateAcls, 1),
            (ApiKey::DeleteAcls, 1),
        ];
        for (k, floor) in floors {
            assert!(served(k as i16, floor), "{k:?} v{floor}");
        }
        assert!(served(ApiKey::Produce as i16, 0), "advertised from 0");
        assert!(!served(ApiKey::Produce as i16, 99));
        assert!(!served(999, 0));
    }
}
