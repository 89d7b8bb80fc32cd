//! Opening connections the same way everywhere.

use std::time::Duration;

use lapin::{Connection, ConnectionProperties};

/// Connection properties with lapin's automatic recovery (reconnect and replay of the
/// topology, qos and consumers) and a name that shows in the management UI.
pub fn properties(name: &str) -> ConnectionProperties {
    ConnectionProperties::default()
        .with_connection_name(name.into())
        .enable_auto_recover()
}

/// Connects, retrying with backoff until `deadline` passes: a worker started before its
/// broker (compose, Kubernetes) should wait for it, not crash-loop.
pub async fn connect_with_retry(
    url: &str,
    name: &str,
    deadline: Duration,
) -> lapin::Result<Connection> {
    let start = tokio::time::Instant::now();
    let mut delay = Duration::from_millis(200);
    loop {
        match Connection::connect(url, properties(name)).await {
            Ok(conn) => return Ok(conn),
            Err(err) if start.elapsed() + delay < deadline => {
                tracing::warn!(error = %err, retry_in_ms = delay.as_millis() as u64, "broker not reachable");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
            Err(err) => return Err(err),
        }
    }
}
