//! strata broker: storage, replication, cluster metadata and the gRPC
//! server behind the `stratad` daemon.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod log;
