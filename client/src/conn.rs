//! Connections: one lazily connected HTTP/2 channel per broker address,
//! shared by every request to that broker and tuned for large messages.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use strata_proto::v1::admin_client::AdminClient;
use strata_proto::v1::broker_client::BrokerClient;
use strata_proto::v1::groups_client::GroupsClient;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use crate::config::ClientConfig;
use crate::error::{ClientError, Result};

/// Turns `host:port` into a URI tonic accepts (`https` with TLS).
pub fn normalize_addr(addr: &str, tls: bool) -> String {
    let a = addr.trim().trim_end_matches('/');
    let bare = a
        .strip_prefix("http://")
        .or_else(|| a.strip_prefix("https://"))
        .unwrap_or(a);
    let scheme = if tls { "https" } else { "http" };
    format!("{scheme}://{bare}")
}

/// A cache of channels keyed by normalized address.
#[derive(Debug, Clone)]
pub struct Pool {
    cfg: Arc<ClientConfig>,
    channels: Arc<Mutex<HashMap<String, Channel>>>,
}

impl Pool {
    pub fn new(cfg: Arc<ClientConfig>) -> Self {
        Self {
            cfg,
            channels: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// The channel to `addr`, created (lazily connecting) on first use.
    pub fn channel(&self, addr: &str) -> Result<Channel> {
        let key = normalize_addr(addr, self.cfg.tls.is_some());
        let mut map = self
            .channels
            .lock()
            .map_err(|_| ClientError::Closed("connection pool poisoned".into()))?;
        if let Some(ch) = map.get(&key) {
            return Ok(ch.clone());
        }
        let ep = Endpoint::from_shared(key.clone())
            .map_err(|e| ClientError::InvalidArgument(format!("bad broker address '{addr}': {e}")))?
            .connect_timeout(self.cfg.connect_timeout)
            .tcp_nodelay(true)
            .max_frame_size((1u32 << 24) - 1)
            .initial_stream_window_size(self.cfg.window_size)
            .initial_connection_window_size(self.cfg.window_size)
            .http2_keep_alive_interval(self.cfg.keepalive_interval)
            .keep_alive_timeout(self.cfg.keepalive_timeout)
            .keep_alive_while_idle(true);
        let ep = match &self.cfg.tls {
            None => ep,
            Some(t) => {
                let mut tc =
                    ClientTlsConfig::new().ca_certificate(Certificate::from_pem(&t.ca_pem));
                if let Some((cert, key)) = &t.identity {
                    tc = tc.identity(Identity::from_pem(cert, key));
                }
                ep.tls_config(tc)
                    .map_err(|e| ClientError::InvalidArgument(format!("TLS settings: {e}")))?
            }
        };
        let ch = ep.connect_lazy();
        map.insert(key, ch.clone());
        Ok(ch)
    }

    fn auth(&self) -> Auth {
        Auth(
            self.cfg
                .token
                .as_ref()
                .and_then(|t| tonic::metadata::MetadataValue::try_from(format!("Bearer {t}")).ok()),
        )
    }

    pub fn broker(&self, addr: &str) -> Result<BrokerClient<Conn>> {
        let n = self.cfg.max_message_size;
        Ok(
            BrokerClient::with_interceptor(self.channel(addr)?, self.auth())
                .max_decoding_message_size(n)
                .max_encoding_message_size(n),
        )
    }

    pub fn admin(&self, addr: &str) -> Result<AdminClient<Conn>> {
        let n = self.cfg.max_message_size;
        Ok(
            AdminClient::with_interceptor(self.channel(addr)?, self.auth())
                .max_decoding_message_size(n)
                .max_encoding_message_size(n),
        )
    }

    pub fn groups(&self, addr: &str) -> Result<GroupsClient<Conn>> {
        let n = self.cfg.max_message_size;
        Ok(
            GroupsClient::with_interceptor(self.channel(addr)?, self.auth())
                .max_decoding_message_size(n)
                .max_encoding_message_size(n),
        )
    }
}

/// Adds the configured bearer token (if any) to every request.
#[derive(Clone, Debug)]
pub struct Auth(Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>);

impl tonic::service::Interceptor for Auth {
    fn call(
        &mut self,
        mut req: tonic::Request<()>,
    ) -> std::result::Result<tonic::Request<()>, tonic::Status> {
        if let Some(v) = &self.0 {
            req.metadata_mut().insert("authorization", v.clone());
        }
        Ok(req)
    }
}

/// A connection to one broker, with the token interceptor.
pub type Conn = tonic::service::interceptor::InterceptedService<Channel, Auth>;

/// Runs `fut` under the configured request deadline plus `extra`.
pub async fn with_deadline<T, F>(
    cfg: &ClientConfig,
    extra: std::time::Duration,
    fut: F,
) -> Result<T>
where
    F: std::future::Future<Output = std::result::Result<tonic::Response<T>, tonic::Status>>,
{
    match tokio::time::timeout(cfg.request_timeout + extra, fut).await {
        Ok(Ok(r)) => Ok(r.into_inner()),
        Ok(Err(st)) => Err(st.into()),
        Err(_) => Err(ClientError::Timeout),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_get_a_scheme() {
        assert_eq!(
            normalize_addr("127.0.0.1:9292", false),
            "http://127.0.0.1:9292"
        );
        assert_eq!(normalize_addr("http://h:1/", false), "http://h:1");
        assert_eq!(normalize_addr("http://h:1", true), "https://h:1");
        assert_eq!(normalize_addr("h:1", true), "https://h:1");
    }

    #[tokio::test]
    async fn channels_are_cached_per_address() {
        let pool = Pool::new(Arc::new(ClientConfig::default()));
        pool.channel("127.0.0.1:1").expect("lazy channel");
        pool.channel("http://127.0.0.1:1").expect("lazy channel");
        assert_eq!(pool.channels.lock().map(|m| m.len()).unwrap_or(0), 1);
        assert!(matches!(
            pool.channel("bad addr with spaces"),
            Err(ClientError::InvalidArgument(_))
        ));
    }
}
