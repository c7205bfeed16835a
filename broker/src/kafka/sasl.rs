//! SaslHandshake (key 17) and SaslAuthenticate (36): SASL/PLAIN and
//! SCRAM-SHA-256/512 on the Kafka listener, checked against the users'
//! credentials in the replicated metadata (`broker::users`). A connection
//! that authenticates takes the user name as its principal, which the
//! same ACLs as everywhere else then judge.

use bytes::Bytes;
use kafka_protocol::messages::sasl_authenticate_request::SaslAuthenticateRequest;
use kafka_protocol::messages::sasl_authenticate_response::SaslAuthenticateResponse;
use kafka_protocol::messages::sasl_handshake_request::SaslHandshakeRequest;
use kafka_protocol::messages::sasl_handshake_response::SaslHandshakeResponse;
use kafka_protocol::protocol::StrBytes;

use super::dispatch::{Ctx, Reply, Response};
use super::errors;
use crate::broker::users::server_nonce;
use crate::config::SaslMode;
use crate::security::scram::{Exchange, Mechanism, parse_plain};

const PLAIN: &str = "PLAIN";

/// Where a connection's SASL exchange stands.
#[derive(Debug, Default)]
pub enum SaslState {
    /// No handshake yet.
    #[default]
    Start,
    /// A handshake chose PLAIN.
    Plain,
    /// A handshake chose a SCRAM mechanism; its first message is next.
    ScramFirst(Mechanism),
    /// The server's first message was sent; the client's final is next.
    ScramFinal(Box<Exchange>),
    /// Authenticated (a connection authenticates once).
    Done,
}

fn mechanisms() -> Vec<StrBytes> {
    std::iter::once(PLAIN)
        .chain(Mechanism::ALL.iter().map(|m| m.name()))
        .map(StrBytes::from_static_str)
        .collect()
}

pub fn handshake(ctx: &mut Ctx, req: SaslHandshakeRequest) -> Reply {
    let resp = SaslHandshakeResponse::default().with_mechanisms(mechanisms());
    let mode = ctx.broker.config().kafka.sasl;
    let chosen = match (mode, req.mechanism.as_str()) {
        (SaslMode::Off, _) => None,
        (_, PLAIN) => Some(SaslState::Plain),
        (_, m) => Mechanism::from_name(m).map(SaslState::ScramFirst),
    };
    match chosen {
        Some(state) if matches!(ctx.sasl, SaslState::Start) => {
            ctx.sasl = state;
            Reply::Now(Response::SaslHandshake(resp), true)
        }
        Some(_) => Reply::Now(
            Response::SaslHandshake(resp.with_error_code(errors::ILLEGAL_SASL_STATE)),
            false,
        ),
        None => Reply::Now(
            Response::SaslHandshake(
                resp.with_error_code(errors::UNSUPPORTED_SASL_MECHANISM)
                    .with_mechanisms(if mode == SaslMode::Off {
                        Vec::new()
                    } else {
                        mechanisms()
                    }),
            ),
            false,
        ),
    }
}

fn failed(code: i16, why: &str) -> Reply {
    Reply::Now(
        Response::SaslAuthenticate(
            SaslAuthenticateResponse::default()
                .with_error_code(code)
                .with_error_message(Some(StrBytes::from_string(why.to_owned()))),
        ),
        false,
    )
}

fn authenticated(ctx: &mut Ctx, user: String, answer: Vec<u8>) -> Reply {
    tracing::info!(target: "strata::audit", principal = %user,
        peer = ?ctx.who.peer, "SASL authentication");
    ctx.who.principal = user;
    ctx.sasl = SaslState::Done;
    Reply::Now(
        Response::SaslAuthenticate(
            SaslAuthenticateResponse::default().with_auth_bytes(Bytes::from(answer)),
        ),
        true,
    )
}

fn refused(ctx: &mut Ctx, why: &str) -> Reply {
    tracing::warn!(target: "strata::audit", peer = ?ctx.who.peer, reason = why,
        "SASL authentication refused");
    // A failed exchange starts over only with a new connection.
    ctx.sasl = SaslState::Done;
    failed(
        errors::SASL_AUTHENTICATION_FAILED,
        "authentication failed: invalid credentials",
    )
}

pub fn authenticate(ctx: &mut Ctx, req: SaslAuthenticateRequest) -> Reply {
    match std::mem::take(&mut ctx.sasl) {
        SaslState::Plain => match parse_plain(&req.auth_bytes) {
            Ok((user, password)) if ctx.broker.check_password(&user, &password) => {
                authenticated(ctx, user, Vec::new())
            }
            Ok((user, _)) => refused(ctx, &format!("wrong password or unknown user '{user}'")),
            Err(e) => refused(ctx, &e.to_string()),
        },
        SaslState::ScramFirst(m) => {
            let broker = std::sync::Arc::clone(&ctx.broker);
            match Exchange::start(
                m,
                &req.auth_bytes,
                |u| broker.scram_credential(u, m),
                &server_nonce(),
            ) {
                Ok((ex, first)) => {
                    ctx.sasl = SaslState::ScramFinal(Box::new(ex));
                    Reply::Now(
                        Response::SaslAuthenticate(
                            SaslAuthenticateResponse::default().with_auth_bytes(Bytes::from(first)),
                        ),
                        true,
                    )
                }
                Err(e) => refused(ctx, &e.to_string()),
            }
        }
        SaslState::ScramFinal(ex) => match ex.finish(&req.auth_bytes) {
            Ok((user, last)) => authenticated(ctx, user, last),
            Err(e) => refused(ctx, &e.to_string()),
        },
        state @ (SaslState::Start | SaslState::Done) => {
            ctx.sasl = state;
            failed(errors::ILLEGAL_SASL_STATE, "no SASL handshake in progress")
        }
    }
}
