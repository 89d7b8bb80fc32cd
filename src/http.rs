//! The small HTTP server for `/metrics`, `/healthz` and `/readyz`, and the client side
//! used by `guestkit-worker healthcheck` (the runtime image has no curl).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::metrics::Metrics;
use crate::shutdown::Shutdown;

/// What `/readyz` reports: ready only while connected and consuming, and not draining.
#[derive(Default)]
pub struct Health {
    consuming: AtomicBool,
    draining: AtomicBool,
    /// The consumer's channel, asked live: lapin's automatic recovery may be
    /// reconnecting without any error reaching the consume loop.
    channel: std::sync::Mutex<Option<lapin::Channel>>,
}

impl Health {
    /// Connected to the broker with a live consumer (false while reconnecting).
    pub fn set_consuming(&self, on: bool) {
        self.consuming.store(on, Ordering::SeqCst);
    }

    /// The channel the consumer runs on (None before the first connect).
    pub fn set_channel(&self, channel: Option<lapin::Channel>) {
        if let Ok(mut slot) = self.channel.lock() {
            *slot = channel;
        }
    }

    /// SIGTERM received: take this worker out of rotation.
    pub fn set_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    /// Whether `/readyz` answers 200.
    pub fn ready(&self) -> bool {
        let channel_up = match self.channel.lock() {
            Ok(slot) => slot.as_ref().is_some_and(|ch| ch.status().connected()),
            Err(_) => false,
        };
        channel_up && self.consuming.load(Ordering::SeqCst) && !self.draining.load(Ordering::SeqCst)
    }
}

/// Most connections served at once. Further ones wait in the kernel's backlog until a
/// slot frees (a permit is taken before `accept`, as mini-redis does), so a flood of
/// scrapers cannot spawn tasks without bound; each connection lasts at most 5 s.
const MAX_CONNECTIONS: usize = 32;

/// Serves until shutdown. Bound before the worker consumes, so a port clash fails the
/// start instead of hiding.
pub async fn serve(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    mut shutdown: Shutdown,
) {
    let limit = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        tokio::select! {
            accepted = accept(&listener, &limit) => {
                let (stream, permit) = accepted;
                spawn_handle(stream, permit, &metrics, &health);
            }
            _ = shutdown.recv() => {
                // Keep answering /healthz and /readyz (503) while draining.
                tokio::spawn(async move {
                    loop {
                        let (stream, permit) = accept(&listener, &limit).await;
                        spawn_handle(stream, permit, &metrics, &health);
                    }
                });
                return;
            }
        }
    }
}

/// The next connection, once a slot is free. Accept errors (out of file descriptors,
/// say) are logged and retried after a pause.
async fn accept(
    listener: &TcpListener,
    limit: &Arc<Semaphore>,
) -> (TcpStream, OwnedSemaphorePermit) {
    let permit = limit
        .clone()
        .acquire_owned()
        .await
        .expect("the connection semaphore is never closed");
    loop {
        match listener.accept().await {
            Ok((stream, _)) => return (stream, permit),
            Err(err) => {
                tracing::warn!(error = %err, "metrics server accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

fn spawn_handle(
    stream: TcpStream,
    permit: OwnedSemaphorePermit,
    metrics: &Arc<Metrics>,
    health: &Arc<Health>,
) {
    let (metrics, health) = (metrics.clone(), health.clone());
    tokio::spawn(async move {
        handle(stream, metrics, health).await;
        drop(permit);
    });
}

async fn handle(mut stream: TcpStream, metrics: Arc<Metrics>, health: Arc<Health>) {
    // Requests are tiny GETs; read the head only, bounded, with a timeout.
    let mut buf = vec![0u8; 4096];
    let mut len = 0;
    let read = tokio::time::timeout(Duration::from_secs(5), async {
        while len < buf.len() {
            let n = stream.read(&mut buf[len..]).await?;
            if n == 0 {
                break;
            }
            len += n;
            if buf[..len].windows(4).any(|w| w == b"\r\n\r\n") {
                break;
            }
        }
        Ok::<_, std::io::Error>(())
    })
    .await;
    if !matches!(read, Ok(Ok(()))) {
        return;
    }
    let head = String::from_utf8_lossy(&buf[..len]);
    let path = head.split_whitespace().nth(1).unwrap_or("/");
    let (status, ctype, body) = match path {
        "/metrics" => ("200 OK", "text/plain; version=0.0.4", metrics.render()),
        "/healthz" => ("200 OK", "text/plain", "ok\n".to_string()),
        "/readyz" if health.ready() => ("200 OK", "text/plain", "ready\n".to_string()),
        "/readyz" => (
            "503 Service Unavailable",
            "text/plain",
            "not ready\n".to_string(),
        ),
        _ => ("404 Not Found", "text/plain", "not found\n".to_string()),
    };
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.shutdown().await;
}

/// GETs `path` from the worker's own server and returns the status code. An
/// unspecified bind address (0.0.0.0) is reached over loopback.
pub async fn get_status(addr: SocketAddr, path: &str) -> std::io::Result<u16> {
    let mut target = addr;
    if target.ip().is_unspecified() {
        target.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    let fut = async {
        let mut stream = TcpStream::connect(target).await?;
        stream
            .write_all(
                format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
                    .as_bytes(),
            )
            .await?;
        let mut head = Vec::new();
        stream.take(1024).read_to_end(&mut head).await?;
        let text = String::from_utf8_lossy(&head);
        text.split_whitespace()
            .nth(1)
            .and_then(|code| code.parse().ok())
            .ok_or_else(|| {
                std::io::Error::new(std::io::ErrorKind::InvalidData, "no HTTP status line")
            })
    };
    tokio::time::timeout(Duration::from_secs(5), fut)
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "no answer within 5 s"))?
}
