//! strata broker: storage, cluster metadata, consumer-group offsets and the
//! gRPC server behind the `stratad` daemon.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod cluster;
pub mod error;
pub mod log;
pub mod partition;
pub mod producer_state;
