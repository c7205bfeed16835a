//! The Kafka listener's connections: framing, the guard, decoding,
//! dispatch and answers in request order.
//!
//! A connection reads one frame at a time (a 4-byte size, capped, then the
//! request), checks it with the guard before the codec sees it, decodes it
//! and runs its handler. Handlers run in arrival order up to the point
//! where they would wait (an append is proposed in order; the wait for its
//! acks, a long poll or a rebalance runs concurrently), and answers are
//! written in request order, as Kafka clients require. A request that does
//! not pass the guard or the codec closes the connection; the broker and
//! its other connections go on.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, ResponseHeader};
use kafka_protocol::protocol::Encodable;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

use super::dispatch::{self, Ctx, Reply, Response};
use super::frame::{Frame, FrameWriter};
use super::guard::{self, GuardError, RequestHead};
use crate::broker::Broker;
use crate::security::auth::Identity;
use crate::security::tls::{ReloadingConfig, TlsError};

/// Answers waiting to be written per connection (pipelined requests).
const IN_FLIGHT: usize = 64;
/// Largest frame of any request but Produce (the codec builds up to ~36
/// times a frame's size in memory for dense arrays).
const MAX_SMALL_FRAME: usize = 1 << 20;

/// Serves the Kafka protocol on `listener` until `shutdown` resolves.
pub async fn serve(
    broker: Arc<Broker>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), TlsError> {
    let tls = match &broker.config().tls {
        Some(t) => Some(ReloadingConfig::new(t.clone(), t.client_auth)?),
        None => None,
    };
    tokio::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            () = &mut shutdown => return Ok(()),
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "kafka listener: accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = tcp.set_nodelay(true);
        let broker = Arc::clone(&broker);
        let tls = tls.clone();
        tokio::spawn(async move {
            let m = crate::metrics::global();
            m.kafka_connection(1);
            match tls {
                None => {
                    let who = anonymous(peer);
                    let (r, w) = tcp.into_split();
                    connection(broker, who, r, w).await;
                }
                Some(cfg) => {
                    if let Some(stream) =
                        crate::security::tls::handshake(&cfg, tcp, peer, "kafka").await
                    {
                        let who = cert_identity(&broker, &stream, peer);
                        let (r, w) = tokio::io::split(stream);
                        connection(broker, who, r, w).await;
                    }
                }
            }
            m.kafka_connection(-1);
        });
    }
}

fn anonymous(peer: SocketAddr) -> Identity {
    Identity {
        principal: crate::security::auth::ANONYMOUS.to_owned(),
        peer: Some(peer),
    }
}

/// The principal of a TLS client's certificate, else anonymous.
fn cert_identity(
    broker: &Broker,
    stream: &tokio_rustls::server::TlsStream<tokio::net::TcpStream>,
    peer: SocketAddr,
) -> Identity {
    let (_, session) = stream.get_ref();
    session
        .peer_certificates()
        .and_then(|c| c.first())
        .and_then(|c| broker.config().auth.cert_principal(c.as_ref()))
        .map_or_else(
            || anonymous(peer),
            |principal| Identity {
                principal,
                peer: Some(peer),
            },
        )
}

/// Reads one frame: `None` at a clean end of stream.
async fn read_frame<R: AsyncRead + Unpin>(r: &mut R, max: usize) -> Result<Option<Bytes>, String> {
    let mut len = [0u8; 4];
    match r.read_exact(&mut len).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e.to_string()),
    }
    let n = i32::from_be_bytes(len);
    let n = usize::try_from(n).map_err(|_| format!("negative frame size {n}"))?;
    if n > max {
        return Err(format!("frame of {n} bytes exceeds the limit of {max}"));
    }
    let mut buf = BytesMut::zeroed(n);
    r.read_exact(&mut buf)
        .await
        .map_err(|e| format!("truncated frame: {e}"))?;
    Ok(Some(buf.freeze()))
}

/// Encodes a response with its size prefix and header.
fn encode(head: &RequestHead, resp: &Response) -> Option<Frame> {
    let mut w = FrameWriter::new();
    let header_version = resp.header_version(head.api_version);
    let done = ResponseHeader::default()
        .with_correlation_id(head.correlation_id)
        .encode(w.buf(), header_version)
        .and_then(|()| resp.encode(&mut w, head.api_version));
    if let Err(e) = done {
        tracing::warn!(api = head.api_key, version = head.api_version, error = %e,
            "kafka: response does not encode");
        return None;
    }
    Some(w.finish())
}

/// The v0 answer to an `ApiVersions` of a version we do not serve.
fn unsupported_api_versions(correlation_id: i32) -> Option<Frame> {
    let head = RequestHead {
        api_key: ApiKey::ApiVersions as i16,
        api_version: 0,
        correlation_id,
        client_id: None,
        header_version: 1,
        header_len: 0,
    };
    encode(
        &head,
        &Response::ApiVersions(super::versions::unsupported()),
    )
}

type Answer = tokio::task::JoinHandle<Option<Frame>>;

async fn connection<R, W>(broker: Arc<Broker>, who: Identity, r: R, mut w: W)
where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let (tx, mut rx) = mpsc::channel::<Answer>(IN_FLIGHT);
    let writer = tokio::spawn(async move {
        while let Some(answer) = rx.recv().await {
            let Ok(Some(frame)) = answer.await else {
                continue;
            };
            if frame.write_to(&mut w).await.is_err() {
                return;
            }
        }
        let _ = w.shutdown().await;
    });
    let peer = who.peer;
    let mut ctx = Ctx::new(broker, who);
    let mut r = BufReader::with_capacity(64 << 10, r);
    loop {
        let frame = match read_frame(&mut r, guard::MAX_FRAME).await {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(why) => {
                tracing::info!(peer = ?peer, reason = %why, "kafka: closing connection");
                break;
            }
        };
        let answer = match request(&mut ctx, frame).await {
            Ok(a) => a,
            Err(why) => {
                tracing::info!(peer = ?peer, reason = %why, "kafka: closing connection");
                break;
            }
        };
        if let Some(a) = answer
            && tx.send(a).await.is_err()
        {
            break;
        }
    }
    drop(tx);
    let _ = writer.await;
}

/// Checks, decodes and dispatches one request; `Err` closes the
/// connection.
async fn request(ctx: &mut Ctx, frame: Bytes) -> Result<Option<Answer>, String> {
    let started = Instant::now();
    let head = match guard::check_request(&frame) {
        Ok(h) => h,
        Err(GuardError::UnsupportedVersion {
            api_key,
            correlation_id,
            ..
        }) if api_key == ApiKey::ApiVersions as i16 => {
            let bytes = unsupported_api_versions(correlation_id);
            return Ok(Some(tokio::spawn(async move { bytes })));
        }
        Err(e) => return Err(e.to_string()),
    };
    if !super::versions::answered(head.api_key, head.api_version) {
        if head.api_key == ApiKey::ApiVersions as i16 {
            let bytes = unsupported_api_versions(head.correlation_id);
            return Ok(Some(tokio::spawn(async move { bytes })));
        }
        return Err(format!(
            "api {} v{} is not served",
            head.api_key, head.api_version
        ));
    }
    // Only Produce carries bulk data: every other request stays small, so
    // the codec's in-memory form of it stays small too.
    if head.api_key != ApiKey::Produce as i16 && frame.len() > MAX_SMALL_FRAME {
        return Err(format!(
            "a frame of {} bytes for api {} exceeds {MAX_SMALL_FRAME}",
            frame.len(),
            head.api_key
        ));
    }
    let key = ApiKey::try_from(head.api_key).map_err(|()| "unknown api".to_string())?;
    if !ctx.may_proceed(key) {
        return Err(format!(
            "{key:?} before SASL authentication on a listener that requires it"
        ));
    }
    let body = frame.slice(head.header_len..);
    let name = dispatch::api_name(key);
    let reply = dispatch::handle(ctx, &head, key, body).await;
    let m = crate::metrics::global();
    Ok(match reply {
        Reply::Close(why) => return Err(why),
        Reply::None => {
            m.kafka_request(name, started.elapsed(), true);
            None
        }
        Reply::Now(resp, ok) => {
            m.kafka_request(name, started.elapsed(), ok);
            let bytes = encode(&head, &resp);
            Some(tokio::spawn(async move { bytes }))
        }
        Reply::Later(fut) => Some(tokio::spawn(async move {
            let (resp, ok) = fut.await;
            crate::metrics::global().kafka_request(name, started.elapsed(), ok);
            resp.and_then(|r| encode(&head, &r))
        })),
    })
}
