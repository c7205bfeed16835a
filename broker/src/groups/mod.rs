//! Consumer groups. Each group has one coordinator: the leader of the
//! group's `__consumer_offsets` partition, whose log holds the group's
//! state as records replicated through Raft: the committed offsets
//! (`offsets`) and, for groups with membership, the members and their
//! assignment. A group uses one of two protocols at a time:
//! - the consumer protocol (KIP-848): `consumer` is its state machine,
//!   `assignor` the server-side assignors, `membership` the coordinator's
//!   side of it (heartbeats, sessions, fenced commits);
//! - Kafka's classic protocol (JoinGroup/SyncGroup, the leader member
//!   assigns): `classic` is its state machine, `classic_membership` the
//!   coordinator's side of it.

pub mod assignor;
pub mod classic;
pub mod classic_membership;
pub mod consumer;
pub mod membership;
pub mod offsets;
