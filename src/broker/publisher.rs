//! Publishing with publisher confirms over pooled connections.

use std::time::Duration;

use crate::broker::connection::{Broker, ConnectError};

use deadpool::managed::{self, Object, Pool};
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::{BasicProperties, Channel, Connection, PublisherConfirm};
use tokio::sync::Mutex;

/// Why a publish was not confirmed. The caller must then NOT ack the job: the broker
/// will redeliver it.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error(transparent)]
    Connect(#[from] ConnectError),
    #[error("cannot get a publishing connection: {0}")]
    Pool(String),
    #[error("amqp error while publishing: {0}")]
    Amqp(#[from] lapin::Error),
    #[error("the broker did not confirm the message (nack)")]
    Nacked,
}

/// Publishes results, retries and events, and waits for the broker's confirm where it
/// matters.
///
/// Keeps one connection with two channels: a confirm-mode channel for results
/// and retries (lapin channels take concurrent publishes, and each publish's confirm is
/// awaited on its own, so many jobs publish at once without a round trip each), and a
/// plain channel for best-effort progress events, so the broker does no confirm
/// bookkeeping for them. One connection, not two: each lapin connection has an I/O
/// thread, and on a 2-core machine every extra wake-up costs broker throughput. A
/// broken connection is taken out of the deadpool pool and replaced by a fresh one.
pub struct Publisher {
    pool: Pool<Connector>,
    lanes: Mutex<Option<Lanes>>,
}

/// The pooled connection and its two channels.
struct Lanes {
    _conn: Object<Connector>,
    confirmed: Channel,
    best_effort: Channel,
}

/// deadpool's manager for publishing connections: deadpool-lapin's own manager has no
/// way to pass a TLS configuration (private CA, client certificate), so connections are
/// opened through [`Broker::connect`], like every other connection of the worker.
pub struct Connector {
    broker: Broker,
    name: String,
}

impl managed::Manager for Connector {
    type Type = Connection;
    type Error = ConnectError;

    async fn create(&self) -> Result<Connection, ConnectError> {
        // No lapin auto-recovery here: a dead connection should fail the publish at
        // once and be replaced, not stall the job while it reconnects.
        let props =
            lapin::ConnectionProperties::default().with_connection_name(self.name.as_str().into());
        self.broker.connect(props).await
    }

    async fn recycle(
        &self,
        conn: &mut Connection,
        _: &managed::Metrics,
    ) -> managed::RecycleResult<ConnectError> {
        if conn.status().connected() {
            Ok(())
        } else {
            Err(managed::RecycleError::message("connection closed"))
        }
    }
}

impl Publisher {
    /// A publisher over its own small connection pool (separate from the consumer's
    /// connection, so flow control on publishing never stalls deliveries and acks),
    /// connected on first use.
    pub fn new(broker: Broker, name: &str) -> Publisher {
        let connector = Connector {
            broker,
            name: name.to_string(),
        };
        // One connection is all the publisher holds at a time (see above); the pool
        // owns opening, health-checking and replacing it.
        let pool = Pool::builder(connector)
            .max_size(1)
            .build()
            .expect("a pool without a runtime-dependent timeout always builds");
        Publisher {
            pool,
            lanes: Mutex::new(None),
        }
    }

    /// The confirmed or the best-effort channel, opened (both) on first use or after a
    /// break.
    async fn channel(&self, confirm: bool) -> Result<Channel, PublishError> {
        let mut guard = self.lanes.lock().await;
        if let Some(l) = guard.as_ref() {
            if l.confirmed.status().connected() && l.best_effort.status().connected() {
                return Ok(l.pick(confirm).clone());
            }
        }
        if let Some(old) = guard.take() {
            // The connection may be dead: take it out of the pool.
            let _ = Object::take(old._conn);
        }
        let conn = self.pool.get().await.map_err(|e| match e {
            managed::PoolError::Backend(e) => PublishError::Connect(e),
            other => PublishError::Pool(other.to_string()),
        })?;
        let confirmed = conn.create_channel().await?;
        confirmed
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        let best_effort = conn.create_channel().await?;
        let lanes = Lanes {
            _conn: conn,
            confirmed,
            best_effort,
        };
        let channel = lanes.pick(confirm).clone();
        *guard = Some(lanes);
        Ok(channel)
    }

    /// Drops the lanes if `broken` is one of their channels, so the next publish opens
    /// fresh ones.
    async fn forget(&self, broken: &Channel) {
        let mut guard = self.lanes.lock().await;
        let matches = guard
            .as_ref()
            .is_some_and(|l| l.confirmed.id() == broken.id() || l.best_effort.id() == broken.id());
        if matches {
            if let Some(old) = guard.take() {
                let _ = Object::take(old._conn);
            }
        }
    }

    /// One confirmed publish; `Ok(false)` when a `mandatory` message came back
    /// unroutable (the broker acks a returned message too).
    async fn try_publish(
        &self,
        exchange: &str,
        routing_key: &str,
        body: &[u8],
        props: BasicProperties,
        mandatory: bool,
    ) -> Result<bool, PublishError> {
        let ch = self.channel(true).await?;
        let result = async {
            let confirm = publish(&ch, exchange, routing_key, body, props, mandatory)
                .await?
                .await?;
            // Only an explicit ack counts: a nack, or a channel that was somehow not in
            // confirm mode, leaves the job unacked so the broker redelivers it.
            if !confirm.is_ack() {
                return Err(PublishError::Nacked);
            }
            Ok(confirm.take_message().is_none())
        }
        .await;
        if matches!(result, Err(PublishError::Amqp(_))) {
            self.forget(&ch).await;
        }
        result
    }

    /// Publishes and waits for the confirm, trying a few times over a fresh channel
    /// when the connection broke (a result published twice is harmless; a lost one
    /// is not). `props` makes the properties of each attempt: lapin takes them by
    /// value, and building them only when needed saves copying a header table per
    /// message.
    pub async fn publish_confirmed(
        &self,
        exchange: &str,
        routing_key: &str,
        body: &[u8],
        props: impl Fn() -> BasicProperties,
    ) -> Result<(), PublishError> {
        self.publish_with_retries(exchange, routing_key, body, &props, false)
            .await
            .map(|_| ())
    }

    /// Like [`Publisher::publish_confirmed`] on the default exchange, optionally
    /// `mandatory`: then `Ok(false)` when no queue of that name exists (the reply was
    /// returned, not delivered). For replies, whose queue may be gone with its client.
    pub async fn publish_reply(
        &self,
        queue: &str,
        mandatory: bool,
        body: &[u8],
        props: impl Fn() -> BasicProperties,
    ) -> Result<bool, PublishError> {
        self.publish_with_retries("", queue, body, &props, mandatory)
            .await
    }

    async fn publish_with_retries(
        &self,
        exchange: &str,
        routing_key: &str,
        body: &[u8],
        props: &impl Fn() -> BasicProperties,
        mandatory: bool,
    ) -> Result<bool, PublishError> {
        let mut delay = Duration::from_millis(100);
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self
                .try_publish(exchange, routing_key, body, props(), mandatory)
                .await
            {
                Ok(routed) => return Ok(routed),
                Err(err) if attempt < 5 => {
                    tracing::warn!(error = %err, attempt, exchange, routing_key, "publish failed, retrying");
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                }
                Err(err) => return Err(err),
            }
        }
    }

    /// Publishes on the best-effort channel without any confirm: for progress events,
    /// which are a side path and must never hold a job back.
    pub async fn publish_unconfirmed(
        &self,
        exchange: &str,
        routing_key: &str,
        body: &[u8],
        props: BasicProperties,
    ) -> Result<(), PublishError> {
        let ch = self.channel(false).await?;
        if let Err(err) = publish(&ch, exchange, routing_key, body, props, false).await {
            self.forget(&ch).await;
            return Err(err.into());
        }
        Ok(())
    }
}

impl Lanes {
    /// The confirm-mode channel or the best-effort one.
    fn pick(&self, confirm: bool) -> &Channel {
        if confirm {
            &self.confirmed
        } else {
            &self.best_effort
        }
    }
}

/// One `basic.publish`, `mandatory` or not.
async fn publish(
    ch: &Channel,
    exchange: &str,
    routing_key: &str,
    body: &[u8],
    props: BasicProperties,
    mandatory: bool,
) -> lapin::Result<PublisherConfirm> {
    ch.basic_publish(
        exchange.into(),
        routing_key.into(),
        BasicPublishOptions {
            mandatory,
            ..BasicPublishOptions::default()
        },
        body,
        props,
    )
    .await
}
