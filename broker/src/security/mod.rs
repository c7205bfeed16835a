//! Who may connect and what they may do: TLS on every listener and on the
//! broker-to-broker links (`tls`), principals and ACLs (`auth`), and SASL
//! users' SCRAM credentials and exchanges (`scram`). The front ends and the
//! broker's one authorization check use these; nothing below the broker
//! does.

pub mod auth;
pub mod scram;
pub mod tls;
