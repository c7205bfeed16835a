//! Cluster metadata: the replicated state machine (`metadata`), the
//! controller that makes changes durable (`controller`), the operations
//! that change it (`operations`), where replicas go (`placement`) and
//! topic configuration rules (`topic_config`).

pub mod controller;
pub mod metadata;
pub mod operations;
pub mod placement;
pub mod topic_config;
