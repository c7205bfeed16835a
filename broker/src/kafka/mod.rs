//! The Kafka-protocol front end: existing Kafka clients, tools and
//! pipelines talk to strata unchanged.
//!
//! Like the gRPC services it only translates: every handler calls the
//! broker operations the gRPC services call (one produce path, one fetch
//! path, one group coordinator, one ACL check). Batches pass through with
//! their prefix rewritten (`strata_proto::batch::kafka`), never
//! re-encoded. Frames pass a guard of our own before the codec sees them.
//!
//! - `conn`: the listener, framing, ordering of answers; `frame`: an
//!   answer as chunks written with vectored writes;
//! - `guard`: bounds checks of a frame before decoding;
//! - `dispatch`: the routing of a decoded request to its handler;
//! - `versions`: the served APIs and the `ApiVersions` answer;
//! - `errors`: strata's error codes as Kafka's;
//! - one file per API family: `metadata`, `produce`, `fetch`
//!   (`fetch_answer` encodes its answer around shared stored bytes),
//!   `offsets` (ListOffsets and OffsetForLeaderEpoch), `producer_id`, `topics` (and DeleteRecords), `configs`,
//!   `groups` (coordinator lookup
//!   and offsets), `classic` (the classic group protocol),
//!   `consumer_protocol` (the new one, KIP-848), `sasl` (PLAIN and
//!   SCRAM authentication), `acls` (Kafka's ACL APIs on the one store), `users` (SCRAM
//!   credentials on the one user store), `transactions` (answered as
//!   unsupported).

mod acls;
mod classic;
mod configs;
mod conn;
mod consumer_protocol;
mod dispatch;
mod errors;
mod fetch;
mod fetch_answer;
mod frame;
mod groups;
pub mod guard;
mod metadata;
mod offsets;
mod produce;
mod producer_id;
mod sasl;
mod topics;
mod transactions;
mod users;
mod versions;

pub use conn::serve;
