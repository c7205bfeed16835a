//! Consumer groups. Each group has one coordinator: the leader of the
//! group's `__consumer_offsets` partition, whose log holds the group's
//! state as records replicated through Raft: the committed offsets
//! (`offsets`) and, for groups with membership, the members and their
//! assignment (`consumer`: the consumer protocol's state machine;
//! `assignor`: the server-side assignors; `membership`: the coordinator's
//! side of it — heartbeats, sessions, fenced commits).

pub mod assignor;
pub mod consumer;
pub mod membership;
pub mod offsets;
