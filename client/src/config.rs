//! Connection-level client settings shared by producers, consumers and
//! admins: bootstrap brokers, timeouts, retry policy.

use std::time::Duration;

/// The default broker address.
pub const DEFAULT_BROKER: &str = "127.0.0.1:9292";

/// Connection-level settings. Build with [`ClientConfig::new`] or
/// [`ClientConfig::builder`].
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Brokers to ask for metadata first (`host:port` or `http://host:port`).
    pub bootstrap: Vec<String>,
    /// Deadline of one unary request (long polls add their wait to it).
    pub request_timeout: Duration,
    /// Deadline of establishing a TCP/HTTP2 connection.
    pub connect_timeout: Duration,
    /// Retries of a retriable failure before giving up.
    pub retries: u32,
    /// First backoff between retries; doubles up to `retry_backoff_max`.
    pub retry_backoff: Duration,
    /// Largest backoff between retries.
    pub retry_backoff_max: Duration,
    /// Largest gRPC message sent or received.
    pub max_message_size: usize,
    /// HTTP/2 stream and connection flow-control windows.
    pub window_size: u32,
    /// TLS to the brokers (`None`: plaintext).
    pub tls: Option<ClientTls>,
    /// Bearer token sent with every request (a broker's token file maps it
    /// to a principal). Best used over TLS.
    pub token: Option<String>,
    /// HTTP/2 PING sent on every connection after this long without
    /// traffic, even with no request open.
    pub keepalive_interval: Duration,
    /// A connection whose PING is unanswered this long is closed: requests
    /// and streams on it fail (and are retried elsewhere). This is how a
    /// subscription to a paused or cut-off broker ends, since such a broker
    /// cannot say it lost leadership.
    pub keepalive_timeout: Duration,
}

/// TLS material of a client, as PEM bytes.
#[derive(Clone)]
pub struct ClientTls {
    /// CA certificates that sign the brokers.
    pub ca_pem: Vec<u8>,
    /// Certificate chain and private key presented for mutual TLS.
    pub identity: Option<(Vec<u8>, Vec<u8>)>,
}

impl std::fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print key material.
        f.debug_struct("ClientTls")
            .field("ca_pem_bytes", &self.ca_pem.len())
            .field("client_certificate", &self.identity.is_some())
            .finish()
    }
}

impl ClientTls {
    /// Verifies brokers against `ca_pem`; no client certificate.
    pub fn new(ca_pem: impl Into<Vec<u8>>) -> Self {
        Self {
            ca_pem: ca_pem.into(),
            identity: None,
        }
    }

    /// Presents a client certificate (mutual TLS).
    pub fn identity(mut self, cert_pem: impl Into<Vec<u8>>, key_pem: impl Into<Vec<u8>>) -> Self {
        self.identity = Some((cert_pem.into(), key_pem.into()));
        self
    }
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            bootstrap: vec![DEFAULT_BROKER.to_owned()],
            request_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(5),
            // About 7 s of retrying, with at most 250 ms between tries so
            // that a request lands soon after a new leader is elected.
            retries: 30,
            retry_backoff: Duration::from_millis(50),
            retry_backoff_max: Duration::from_millis(250),
            max_message_size: 64 << 20,
            window_size: 32 << 20,
            tls: None,
            token: None,
            keepalive_interval: Duration::from_secs(1),
            keepalive_timeout: Duration::from_secs(3),
        }
    }
}

impl ClientConfig {
    /// Settings with the given bootstrap brokers and defaults otherwise.
    pub fn new<I, S>(bootstrap: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self {
            bootstrap: bootstrap.into_iter().map(Into::into).collect(),
            ..Self::default()
        }
    }

    /// Starts a builder from the defaults.
    pub fn builder() -> ClientConfigBuilder {
        ClientConfigBuilder {
            cfg: Self::default(),
        }
    }

    /// Backoff before retry number `attempt` (0-based), capped.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let factor = 1u32.checked_shl(attempt.min(16)).unwrap_or(u32::MAX);
        self.retry_backoff
            .saturating_mul(factor)
            .min(self.retry_backoff_max)
    }
}

/// Builder of [`ClientConfig`].
#[derive(Debug, Clone)]
pub struct ClientConfigBuilder {
    cfg: ClientConfig,
}

impl ClientConfigBuilder {
    /// Bootstrap brokers; a single string may hold a comma-separated list.
    pub fn bootstrap<I, S>(mut self, brokers: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        self.cfg.bootstrap = brokers
            .into_iter()
            .flat_map(|s| {
                s.as_ref()
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect::<Vec<_>>()
            })
            .collect();
        self
    }
    pub fn request_timeout(mut self, d: Duration) -> Self {
        self.cfg.request_timeout = d;
        self
    }
    pub fn connect_timeout(mut self, d: Duration) -> Self {
        self.cfg.connect_timeout = d;
        self
    }
    pub fn retries(mut self, n: u32) -> Self {
        self.cfg.retries = n;
        self
    }
    pub fn retry_backoff(mut self, first: Duration, max: Duration) -> Self {
        self.cfg.retry_backoff = first;
        self.cfg.retry_backoff_max = max.max(first);
        self
    }
    pub fn max_message_size(mut self, bytes: usize) -> Self {
        self.cfg.max_message_size = bytes;
        self
    }
    pub fn window_size(mut self, bytes: u32) -> Self {
        self.cfg.window_size = bytes;
        self
    }
    pub fn tls(mut self, tls: ClientTls) -> Self {
        self.cfg.tls = Some(tls);
        self
    }
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.cfg.token = Some(token.into());
        self
    }
    /// PING after `interval` without traffic; close the connection when a
    /// PING is unanswered for `timeout`.
    pub fn keepalive(mut self, interval: Duration, timeout: Duration) -> Self {
        self.cfg.keepalive_interval = interval;
        self.cfg.keepalive_timeout = timeout;
        self
    }
    pub fn build(self) -> ClientConfig {
        let mut cfg = self.cfg;
        if cfg.bootstrap.is_empty() {
            cfg.bootstrap.push(DEFAULT_BROKER.to_owned());
        }
        cfg
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builder_splits_lists_and_backoff_caps() {
        let c = ClientConfig::builder()
            .bootstrap(["a:1, b:2", "c:3"])
            .retry_backoff(Duration::from_millis(10), Duration::from_millis(70))
            .build();
        assert_eq!(c.bootstrap, vec!["a:1", "b:2", "c:3"]);
        assert_eq!(c.backoff(0), Duration::from_millis(10));
        assert_eq!(c.backoff(2), Duration::from_millis(40));
        assert_eq!(c.backoff(10), Duration::from_millis(70));
        assert_eq!(c.backoff(u32::MAX), Duration::from_millis(70));
    }
}
