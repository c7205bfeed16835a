//! Consumer groups. Each group has one coordinator: the leader of the
//! group's `__consumer_offsets` partition, whose log holds the group's
//! state as records replicated through Raft. Today that state is the
//! committed offsets (`offsets`); membership and assignment live beside it
//! in this folder, on the same log.

pub mod offsets;
