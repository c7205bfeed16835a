//! The HTTP listener: `GET /metrics` (see `crate::metrics`), `GET /health`
//! (the process serves) and `GET /ready`
//! (caught up with the metadata, registered, leading what it should: 200,
//! else 503 with the reason). Plaintext, or TLS with the client listener's
//! certificate; client certificates are checked when presented but not
//! required, so that probes without one work.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use super::ServeError;
use crate::broker::Broker;
use crate::security::tls::{ClientAuth, ReloadingConfig};

fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

fn route(broker: &Broker, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    match (req.method(), req.uri().path()) {
        (&Method::GET, "/health") => text(StatusCode::OK, "ok\n".into()),
        (&Method::GET, "/metrics") => {
            let mut r = text(StatusCode::OK, crate::broker::scrape::render(broker));
            r.headers_mut().insert(
                hyper::header::CONTENT_TYPE,
                hyper::header::HeaderValue::from_static(
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                ),
            );
            r
        }
        (&Method::GET, "/ready") => match broker.check_ready() {
            Ok(()) => text(StatusCode::OK, "ready\n".into()),
            Err(e) => text(StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {e}\n")),
        },
        (&Method::GET, _) => text(StatusCode::NOT_FOUND, "not found\n".into()),
        _ => text(
            StatusCode::METHOD_NOT_ALLOWED,
            "method not allowed\n".into(),
        ),
    }
}

/// Serves HTTP on `listener` until `shutdown` resolves.
pub async fn serve_http(
    broker: Arc<Broker>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let tls = match &broker.config().tls {
        Some(t) => Some(ReloadingConfig::with_alpn(
            t.clone(),
            ClientAuth::Optional,
            vec![b"http/1.1".to_vec()],
        )?),
        None => None,
    };
    tokio::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(listener = "http", error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => return Ok(()),
        };
        let broker = Arc::clone(&broker);
        let tls = tls.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                let r = route(&broker, &req);
                async move { Ok::<_, Infallible>(r) }
            });
            match tls {
                None => {
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(tcp), svc)
                        .await;
                }
                Some(cfg) => {
                    if let Some(stream) =
                        crate::security::tls::handshake(&cfg, tcp, peer, "http").await
                    {
                        let _ = http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), svc)
                            .await;
                    }
                }
            }
        });
    }
}
