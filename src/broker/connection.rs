//! Opening connections the same way everywhere.

use std::time::Duration;

use std::io::{Read, Write};

use lapin::tcp::{AMQPUriTcpExt, HandshakeError, OwnedTLSConfig};
use lapin::uri::{AMQPScheme, AMQPUri};
use lapin::{Connection, ConnectionProperties, DefaultConnectionBuilder, ErrorKind};

use crate::broker::tls::{self, TlsError, TlsFiles};
use crate::config::Config;

/// Where the broker is and how to reach it: the URL and its TLS settings, read once.
#[derive(Debug, Clone)]
pub struct Broker {
    url: String,
    tls: OwnedTLSConfig,
}

/// Why a connection could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The TLS handshake failed: a certificate problem, not worth retrying.
    #[error(
        "TLS handshake with the broker failed: {0} (check --ca-file, --tls-cert/--tls-key, \
         and that the URL's host is a name in the broker's certificate)"
    )]
    Tls(std::io::Error),
    #[error("cannot connect to the broker: {0}")]
    Amqp(lapin::Error),
}

impl Broker {
    /// The broker of `cfg` (URL and TLS files).
    pub fn from_config(cfg: &Config) -> Result<Broker, TlsError> {
        let files = TlsFiles {
            ca_file: cfg.ca_file.as_deref(),
            cert: cfg.tls_cert.as_deref(),
            key: cfg.tls_key.as_deref(),
        };
        Ok(Broker {
            tls: tls::load(&cfg.amqp_url, files)?,
            url: cfg.amqp_url.clone(),
        })
    }

    /// One connection attempt.
    pub async fn connect(&self, props: ConnectionProperties) -> Result<Connection, ConnectError> {
        let (url, tls) = (self.url.clone(), self.tls.clone());
        let probe = tokio::task::spawn_blocking(move || probe_tls(&url, &tls)).await;
        match probe {
            Ok(Ok(())) => {}
            Ok(Err(err)) if is_tls_failure(&err) => return Err(ConnectError::Tls(err)),
            Ok(Err(err)) => return Err(ConnectError::Amqp(err.into())),
            Err(join) => return Err(ConnectError::Amqp(std::io::Error::other(join).into())),
        }
        DefaultConnectionBuilder::new()
            .map_err(ConnectError::Amqp)?
            .with_uri_str(self.url.clone())
            .with_properties(props)
            .with_tls_config(self.tls.clone())
            .connect()
            .await
            .map_err(|err| match err.kind() {
                ErrorKind::IOError(e) if is_tls_failure(e) => {
                    ConnectError::Tls(std::io::Error::new(e.kind(), e.to_string()))
                }
                _ => ConnectError::Amqp(err),
            })
    }

    /// Connects, retrying with backoff until `deadline` passes: a worker started before
    /// its broker (compose, Kubernetes) should wait for it, not crash-loop. A TLS
    /// failure is returned at once: waiting does not fix a certificate.
    pub async fn connect_with_retry(
        &self,
        name: &str,
        deadline: Duration,
    ) -> Result<Connection, ConnectError> {
        let start = tokio::time::Instant::now();
        let mut delay = Duration::from_millis(200);
        loop {
            match self.connect(properties(name)).await {
                Ok(conn) => return Ok(conn),
                Err(ConnectError::Amqp(err)) if start.elapsed() + delay < deadline => {
                    tracing::warn!(error = %err, retry_in_ms = delay.as_millis() as u64, "broker not reachable");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
                Err(err) => return Err(err),
            }
        }
    }
}

/// Connection properties with lapin's automatic recovery (reconnect and replay of the
/// topology, qos and consumers) and a name that shows in the management UI.
pub fn properties(name: &str) -> ConnectionProperties {
    ConnectionProperties::default()
        .with_connection_name(name.into())
        .enable_auto_recover()
}

/// rustls reports handshake, certificate and alert failures as InvalidData; TCP
/// failures (refused, unreachable, reset) have kinds of their own.
fn is_tls_failure(err: &std::io::Error) -> bool {
    err.kind() == std::io::ErrorKind::InvalidData
}

/// For `amqps://`, one TLS handshake and the AMQP protocol header before lapin
/// connects: lapin retries a failed connect with its own backoff whatever the error,
/// and a broker that refuses our certificate says so only after the handshake (TLS 1.3
/// sends the alert with its first answer). So a certificate problem, on either side,
/// shows here at once and by name.
fn probe_tls(url: &str, tls: &OwnedTLSConfig) -> std::io::Result<()> {
    let uri: AMQPUri = url.parse().map_err(std::io::Error::other)?;
    if uri.scheme != AMQPScheme::AMQPS {
        return Ok(());
    }
    let mut stream = match uri.connect_with_config(tls.as_ref()) {
        Ok(stream) => stream,
        Err(HandshakeError::Failure(err)) => return Err(err),
        // Only a non-blocking socket stops mid-handshake; lapin will tell.
        Err(HandshakeError::WouldBlock(_)) => return Ok(()),
    };
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    stream.write_all(b"AMQP\x00\x00\x09\x01")?;
    stream.flush()?;
    let mut first = [0u8; 1];
    match stream.read(&mut first) {
        Ok(_) => Ok(()),
        // A slow broker is lapin's to wait for; only a TLS failure matters here.
        Err(err) if !is_tls_failure(&err) => Ok(()),
        Err(err) => Err(err),
    }
}
