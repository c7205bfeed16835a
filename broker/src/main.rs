//! `stratad`: the strata broker daemon.

use std::process::ExitCode;

/// mimalloc keeps large buffers mapped between requests instead of
/// returning them to the kernel and faulting them in again.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
use std::time::Duration;

use clap::Parser;
use strata_broker::broker::Broker;
use strata_broker::config::{Args, BrokerConfig, LogFormat};
use tracing_subscriber::EnvFilter;

fn init_tracing(cfg: &BrokerConfig) {
    let filter = EnvFilter::try_new(&cfg.log_level).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match cfg.log_format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        // Without signal handlers the broker runs until killed.
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {},
        _ = int.recv() => {},
    }
}

async fn run(cfg: BrokerConfig) -> Result<(), String> {
    let listener = tokio::net::TcpListener::bind(cfg.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", cfg.listen))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let peer_listener = tokio::net::TcpListener::bind(cfg.peer_listen)
        .await
        .map_err(|e| format!("cannot listen on {} (peer): {e}", cfg.peer_listen))?;
    let http_listener = match cfg.http_listen {
        Some(a) => Some(
            tokio::net::TcpListener::bind(a)
                .await
                .map_err(|e| format!("cannot listen on {a} (http): {e}"))?,
        ),
        None => None,
    };
    let kafka_listener = match cfg.kafka.listen {
        Some(a) => Some(
            tokio::net::TcpListener::bind(a)
                .await
                .map_err(|e| format!("cannot listen on {a} (kafka): {e}"))?,
        ),
        None => None,
    };
    let mut cfg = cfg;
    if let Some(l) = &kafka_listener
        && cfg.kafka.advertise.is_none()
    {
        // A port of 0 is known only now: advertise what was bound.
        cfg.kafka.advertise = Some(l.local_addr().map_err(|e| e.to_string())?.to_string());
    }
    let broker = Broker::start(cfg).await.map_err(|e| e.to_string())?;
    tracing::info!(node = broker.node_id(), %addr, peer_addr = %broker.config().peer_listen,
        data_dir = %broker.config().data_dir.display(), "stratad listening");
    let (peer_stop_tx, peer_stop_rx) = tokio::sync::oneshot::channel::<()>();
    let peers = tokio::spawn(strata_broker::server::serve_peers(
        std::sync::Arc::clone(&broker),
        peer_listener,
        async {
            let _ = peer_stop_rx.await;
        },
    ));
    let (http_stop_tx, http_stop_rx) = tokio::sync::oneshot::channel::<()>();
    let http = http_listener.map(|l| {
        tokio::spawn(strata_broker::server::http::serve_http(
            std::sync::Arc::clone(&broker),
            l,
            async {
                let _ = http_stop_rx.await;
            },
        ))
    });
    let (kafka_stop_tx, kafka_stop_rx) = tokio::sync::oneshot::channel::<()>();
    let kafka = kafka_listener.map(|l| {
        tracing::info!(addr = ?l.local_addr().ok(), "kafka listener");
        tokio::spawn(strata_broker::kafka::serve(
            std::sync::Arc::clone(&broker),
            l,
            async {
                let _ = kafka_stop_rx.await;
            },
        ))
    });
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let mut server = tokio::spawn(strata_broker::server::serve(
        std::sync::Arc::clone(&broker),
        listener,
        async {
            let _ = stop_rx.await;
        },
    ));
    let outcome = tokio::select! {
        () = wait_for_signal() => {
            tracing::info!("shutting down: handing off leaderships");
            broker.hand_off_leaderships(Duration::from_secs(5)).await;
            let _ = stop_tx.send(());
            // Long-lived streams would hold a graceful stop forever: bound it.
            let _ = tokio::time::timeout(Duration::from_secs(5), &mut server).await;
            Ok(())
        }
        r = &mut server => match r {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(format!("server failed: {e}")),
            Err(e) => Err(format!("server task failed: {e}")),
        },
    };
    let _ = peer_stop_tx.send(());
    peers.abort();
    let _ = http_stop_tx.send(());
    if let Some(h) = http {
        h.abort();
    }
    let _ = kafka_stop_tx.send(());
    if let Some(k) = kafka {
        k.abort();
    }
    broker.shutdown();
    tracing::info!("stopped");
    outcome
}

fn main() -> ExitCode {
    // One process-wide crypto provider (ring) for every TLS connection.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let args = Args::parse();
    let cfg = match BrokerConfig::load(args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("stratad: {e}");
            return ExitCode::from(2);
        }
    };
    init_tracing(&cfg);
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("stratad: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(cfg)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("stratad: {e}");
            ExitCode::FAILURE
        }
    }
}
