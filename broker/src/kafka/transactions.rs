//! The transaction APIs a client sends — AddPartitionsToTxn (key 24),
//! AddOffsetsToTxn (25), EndTxn (26) and TxnOffsetCommit (28) — answered,
//! until transactions exist, with UNSUPPORTED_VERSION in every result.
//! They are not advertised in `ApiVersions`; a transactional producer is
//! stopped earlier still, at FindCoordinator or InitProducerId
//! (`groups`, `producer_id`).

use kafka_protocol::messages::add_offsets_to_txn_request::AddOffsetsToTxnRequest;
use kafka_protocol::messages::add_offsets_to_txn_response::AddOffsetsToTxnResponse;
use kafka_protocol::messages::add_partitions_to_txn_request::{
    AddPartitionsToTxnRequest, AddPartitionsToTxnTopic,
};
use kafka_protocol::messages::add_partitions_to_txn_response::{
    AddPartitionsToTxnPartitionResult, AddPartitionsToTxnResponse, AddPartitionsToTxnResult,
    AddPartitionsToTxnTopicResult,
};
use kafka_protocol::messages::end_txn_request::EndTxnRequest;
use kafka_protocol::messages::end_txn_response::EndTxnResponse;
use kafka_protocol::messages::txn_offset_commit_request::TxnOffsetCommitRequest;
use kafka_protocol::messages::txn_offset_commit_response::{
    TxnOffsetCommitResponse, TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic,
};

use super::dispatch::{Reply, Response};
use super::errors::UNSUPPORTED_VERSION;

/// `(api, min, max)` answered this way.
pub const ANSWERED: &[(kafka_protocol::messages::ApiKey, i16, i16)] = &[
    (kafka_protocol::messages::ApiKey::AddPartitionsToTxn, 0, 5),
    (kafka_protocol::messages::ApiKey::AddOffsetsToTxn, 0, 4),
    (kafka_protocol::messages::ApiKey::EndTxn, 0, 5),
    (kafka_protocol::messages::ApiKey::TxnOffsetCommit, 0, 5),
];

fn topic_results(topics: Vec<AddPartitionsToTxnTopic>) -> Vec<AddPartitionsToTxnTopicResult> {
    topics
        .into_iter()
        .map(|t| {
            AddPartitionsToTxnTopicResult::default()
                .with_name(t.name)
                .with_results_by_partition(
                    t.partitions
                        .into_iter()
                        .map(|p| {
                            AddPartitionsToTxnPartitionResult::default()
                                .with_partition_index(p)
                                .with_partition_error_code(UNSUPPORTED_VERSION)
                        })
                        .collect(),
                )
        })
        .collect()
}

pub fn add_partitions(req: AddPartitionsToTxnRequest, version: i16) -> Reply {
    let resp = if version <= 3 {
        AddPartitionsToTxnResponse::default()
            .with_results_by_topic_v3_and_below(topic_results(req.v3_and_below_topics))
    } else {
        AddPartitionsToTxnResponse::default()
            .with_error_code(UNSUPPORTED_VERSION)
            .with_results_by_transaction(
                req.transactions
                    .into_iter()
                    .map(|t| {
                        AddPartitionsToTxnResult::default()
                            .with_transactional_id(t.transactional_id)
                            .with_topic_results(topic_results(t.topics))
                    })
                    .collect(),
            )
    };
    Reply::Now(Response::AddPartitionsToTxn(resp), false)
}

pub fn add_offsets(_req: AddOffsetsToTxnRequest) -> Reply {
    Reply::Now(
        Response::AddOffsetsToTxn(
            AddOffsetsToTxnResponse::default().with_error_code(UNSUPPORTED_VERSION),
        ),
        false,
    )
}

pub fn end(_req: EndTxnRequest) -> Reply {
    Reply::Now(
        Response::EndTxn(EndTxnResponse::default().with_error_code(UNSUPPORTED_VERSION)),
        false,
    )
}

pub fn offset_commit(req: TxnOffsetCommitRequest) -> Reply {
    let topics = req
        .topics
        .into_iter()
        .map(|t| {
            TxnOffsetCommitResponseTopic::default()
                .with_name(t.name)
                .with_partitions(
                    t.partitions
                        .iter()
                        .map(|p| {
                            TxnOffsetCommitResponsePartition::default()
                                .with_partition_index(p.partition_index)
                                .with_error_code(UNSUPPORTED_VERSION)
                        })
                        .collect(),
                )
        })
        .collect();
    Reply::Now(
        Response::TxnOffsetCommit(TxnOffsetCommitResponse::default().with_topics(topics)),
        false,
    )
}
