//! strata broker: storage, cluster metadata, consumer-group offsets and the
//! gRPC server behind the `stratad` daemon.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod broker;
pub mod cluster;
pub mod config;
pub mod error;
pub mod groups;
pub mod hex;
pub mod kafka;
pub mod log;
pub mod metrics;
pub mod partition;
pub mod raft;
pub mod security;
pub mod server;
pub mod tier;
