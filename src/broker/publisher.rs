//! Publishing with publisher confirms over pooled connections.

use std::time::Duration;

use deadpool_lapin::{Pool, Runtime};
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::{BasicProperties, Channel};
use tokio::sync::Mutex;

/// Why a publish was not confirmed. The caller must then NOT ack the job: the broker
/// will redeliver it.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("cannot get a publishing connection: {0}")]
    Pool(String),
    #[error("amqp error while publishing: {0}")]
    Amqp(#[from] lapin::Error),
    #[error("the broker refused (nacked) the message")]
    Nacked,
}

/// Publishes results, retries and events, and waits for the broker's confirm.
///
/// Keeps one confirm-mode channel (lapin channels take concurrent publishes, and each
/// publish's confirm is awaited on its own, so many jobs publish at once without a
/// round trip each). A broken channel is dropped and replaced from the deadpool pool,
/// which recycles dead connections.
pub struct Publisher {
    pool: Pool,
    channel: Mutex<Option<(deadpool_lapin::Connection, Channel)>>,
    confirms: bool,
}

impl Publisher {
    /// A publisher over its own small connection pool (separate from the consumer's
    /// connection, so flow control on publishing never stalls deliveries).
    pub fn new(url: &str, name: &str) -> Result<Publisher, PublishError> {
        Publisher::build(url, name, true)
    }

    /// A publisher whose channel is not in confirm mode, for best-effort messages
    /// (progress events): the broker then skips the confirm bookkeeping entirely.
    pub fn best_effort(url: &str, name: &str) -> Result<Publisher, PublishError> {
        Publisher::build(url, name, false)
    }

    fn build(url: &str, name: &str, confirms: bool) -> Result<Publisher, PublishError> {
        let cfg = deadpool_lapin::Config { url: Some(url.to_string()), ..Default::default() };
        let name = name.to_string();
        // No lapin auto-recovery here: a dead connection should fail the publish at
        // once and be replaced by the pool, not stall the job while it reconnects.
        let pool = cfg
            .create_pool(
                move || lapin::ConnectionProperties::default().with_connection_name(name.clone().into()),
                Runtime::Tokio1,
            )
            .map_err(|e| PublishError::Pool(e.to_string()))?;
        Ok(Publisher { pool, channel: Mutex::new(None), confirms })
    }

    async fn channel(&self) -> Result<Channel, PublishError> {
        let mut guard = self.channel.lock().await;
        if let Some((_, ch)) = guard.as_ref() {
            if ch.status().connected() {
                return Ok(ch.clone());
            }
        }
        *guard = None;
        let conn = self.pool.get().await.map_err(|e| PublishError::Pool(e.to_string()))?;
        let ch = conn.create_channel().await?;
        if self.confirms {
            ch.confirm_select(ConfirmSelectOptions::default()).await?;
        }
        *guard = Some((conn, ch.clone()));
        Ok(ch)
    }

    async fn forget(&self, broken: &Channel) {
        let mut guard = self.channel.lock().await;
        if let Some((conn, ch)) = guard.take() {
            if ch.id() != broken.id() {
                *guard = Some((conn, ch));
            } else {
                // The connection may be dead too: take it out of the pool.
                let _ = deadpool_lapin::Object::take(conn);
            }
        }
    }

    async fn try_publish(
        &self,
        exchange: &str,
        routing_key: &str,
        body: &[u8],
        props: &BasicProperties,
    ) -> Result<(), PublishError> {
        let ch = self.channel().await?;
        let result = async {
            let confirm = ch
                .basic_publish(exchange.into(), routing_key.into(), BasicPublishOptions::default(), body, props.clone())
                .await?
                .await?;
            if confirm.is_nack() {
                return Err(PublishError::Nacked);
            }
            Ok(())
        }
        .await;
        if matches!(result, Err(PublishError::Amqp(_))) {
            self.forget(&ch).await;
        }
        result
    }

    /// Publishes and waits for the confirm, trying a few times over a fresh channel
    /// when the connection broke (a result published twice is harmless; a lost one
    /// is not).
    pub async fn publish_confirmed(
        &self,
        exchange: &str,
        routing_key: &str,
        body: &[u8],
        props: BasicProperties,
    ) -> Result<(), PublishError> {
        let mut delay = Duration::from_millis(100);
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.try_publish(exchange, routing_key, body, &props).await {
                Ok(()) => return Ok(()),
                Err(err) if attempt < 5 => {
                    tracing::warn!(error = %err, attempt, exchange, routing_key, "publish failed, retrying");
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                }
                Err(err) => return Err(err),
            }
        }
    }

    /// Publishes without waiting for the confirm: for progress events, which are a
    /// side path and must never hold a job back.
    pub async fn publish_unconfirmed(
        &self,
        exchange: &str,
        routing_key: &str,
        body: &[u8],
        props: BasicProperties,
    ) -> Result<(), PublishError> {
        let ch = self.channel().await?;
        let res = ch
            .basic_publish(exchange.into(), routing_key.into(), BasicPublishOptions::default(), body, props)
            .await;
        if let Err(err) = res {
            self.forget(&ch).await;
            return Err(err.into());
        }
        Ok(())
    }
}
