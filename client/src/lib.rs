//! strata-client: an async Rust client for strata.
//!
//! - [`Producer`]: batching, pipelined, idempotent producer. `send` returns
//!   as soon as the record sits in a batch and hands back a
//!   [`RecordFuture`] that resolves to the record's partition and offset.
//! - [`Consumer`]: assign partitions at a [`StartOffset`], read a `Stream` of
//!   [`ConsumerRecord`]s, commit positions for a group.
//! - [`Admin`]: topics, configs, records deletion, metadata, offsets, groups,
//!   cluster status and membership, leadership transfer.
//!
//! Every client routes each partition's requests to its leader (from the
//! `Metadata` RPC; one HTTP/2 connection per broker), refreshes metadata and
//! retries with bounded backoff on `NOT_LEADER` and connection errors.
//! Failures are [`ClientError`]s carrying the broker's stable error code.
//!
//! ```no_run
//! use futures::StreamExt;
//! use strata_client::{
//!     Admin, ClientConfig, Consumer, ConsumerConfig, Producer, ProducerConfig, ProducerRecord,
//!     StartOffset,
//! };
//!
//! # async fn demo() -> Result<(), strata_client::ClientError> {
//! let cfg = ClientConfig::new(["127.0.0.1:9292"]);
//! Admin::new(cfg.clone())?
//!     .create_topic("orders", 3, 1, Default::default())
//!     .await?;
//!
//! let producer = Producer::new(cfg.clone(), ProducerConfig::default()).await?;
//! let ack = producer
//!     .send(ProducerRecord::new("orders", "hello").key("k1"))
//!     .await?;
//! let meta = ack.await?;
//! println!("written to {}/{} at offset {}", meta.topic, meta.partition, meta.offset);
//! producer.flush().await?;
//!
//! let mut consumer = Consumer::new(
//!     cfg,
//!     ConsumerConfig { group: Some("billing".into()), ..Default::default() },
//! )?;
//! consumer.assign("orders", meta.partition, StartOffset::Committed).await?;
//! let mut records = consumer.records();
//! if let Some(rec) = records.next().await {
//!     let rec = rec?;
//!     println!("{} {:?}", rec.offset, rec.value);
//! }
//! drop(records);
//! consumer.commit().await?;
//! # Ok(())
//! # }
//! ```

mod admin;
mod cluster;
mod config;
mod conn;
mod consumer;
mod error;
mod partitioner;
mod producer;
mod record;

pub use admin::{Admin, ResetTo};
pub use config::{ClientConfig, ClientConfigBuilder, ClientTls, DEFAULT_BROKER};
pub use consumer::{
    AssignmentEvent, Consumer, ConsumerConfig, OffsetReset, StartOffset, Subscription,
    TopicPartition,
};
pub use error::{ClientError, LeaderHint, Result};
pub use partitioner::{key_partition, murmur2};
pub use producer::{
    Compression, Producer, ProducerConfig, ProducerRecord, RecordFuture, RecordMetadata, now_ms,
};
pub use record::{ConsumerRecord, Decoded, decode_records};
/// Wire types returned by [`Admin`] (generated from `strata.proto`).
pub use strata_proto::v1::{
    Acks, Acl, AclOperation, AclPattern, AclPermission, AclResource, BrokerInfo, BrokerStatus,
    ClusterStatusResponse, DescribeGroupResponse, ErrorCode, GroupListing, GroupMember,
    GroupPartitionLag, ListOffsetsResponse, MetadataResponse, OffsetSpec, PartitionDescription,
    PartitionMetadata, TopicDescription, TopicMetadata, TopicPartitionOffset, TopicPartitions,
    TopicSummary, WhoAmIResponse,
};

#[cfg(test)]
mod tests {
    fn send_sync<T: Send + Sync>() {}
    fn send<T: Send>() {}

    #[test]
    fn handles_cross_tasks() {
        send_sync::<crate::Producer>();
        send_sync::<crate::Admin>();
        send_sync::<crate::RecordFuture>();
        send::<crate::Consumer>();
        send_sync::<crate::ClientError>();
    }
}
