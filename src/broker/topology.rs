//! Names and arguments of the exchanges and queues of the wire contract, and their
//! idempotent declaration.

use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{Channel, Connection, ExchangeKind};

/// Direct exchange jobs are published to, routing key `<pool>`.
pub const JOBS_EXCHANGE: &str = "guestkit.jobs";
/// Topic exchange of results, routing key `<pool>.<status>.<operation>`.
pub const RESULTS_EXCHANGE: &str = "guestkit.results";
/// Topic exchange of progress events, routing key `<pool>.progress`.
pub const EVENTS_EXCHANGE: &str = "guestkit.events";

/// Headers of a result message (the contract's table): job id, status, operation,
/// worker id, pool, format actually used, attempt, and the render error when the
/// requested format fell back to json.
pub const HEADER_JOB_ID: &str = "x-guestkit-job-id";
pub const HEADER_STATUS: &str = "x-guestkit-status";
pub const HEADER_OPERATION: &str = "x-guestkit-operation";
pub const HEADER_WORKER_ID: &str = "x-guestkit-worker-id";
pub const HEADER_POOL: &str = "x-guestkit-pool";
pub const HEADER_FORMAT: &str = "x-guestkit-format";
pub const HEADER_ATTEMPT: &str = "x-guestkit-attempt";
pub const HEADER_RENDER_ERROR: &str = "x-guestkit-render-error";

/// The queue names of one pool.
#[derive(Debug, Clone)]
pub struct PoolNames {
    pub pool: String,
    pub jobs: String,
    pub retry: String,
    pub dead: String,
}

impl PoolNames {
    /// Names for `pool`.
    pub fn new(pool: &str) -> PoolNames {
        PoolNames {
            pool: pool.to_string(),
            jobs: format!("guestkit.jobs.{pool}"),
            retry: format!("guestkit.jobs.{pool}.retry"),
            dead: format!("guestkit.jobs.{pool}.dead"),
        }
    }

    /// Routing key of progress events.
    pub fn progress_key(&self) -> String {
        format!("{}.progress", self.pool)
    }
}

/// An AMQP long string, the type of every string argument and header we send.
pub fn long_string(s: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(s))
}

/// A string header of `headers`, when present and a long string.
pub fn string_header(headers: Option<&FieldTable>, name: &str) -> Option<String> {
    match headers?.inner().get(name)? {
        AMQPValue::LongString(s) => Some(s.to_string()),
        _ => None,
    }
}

/// Declares everything the pool needs. Safe to run any number of times, from any
/// number of processes, as long as the arguments stay the same (a queue redeclared
/// with other arguments is a channel error, which is what we want to see). Needs the
/// operator's rights (configure on the exchanges, read on `guestkit.jobs` to bind).
pub async fn declare(
    channel: &Channel,
    names: &PoolNames,
    delivery_limit: u32,
) -> lapin::Result<()> {
    declare_exchanges(channel, false).await?;
    declare_queues(channel, names, delivery_limit).await?;
    bind_jobs_queue(channel, names).await
}

/// What the worker declares at start, with only the rights of its least-privilege user
/// (README, "Users and permissions"): the exchanges are checked passively and declared
/// only when missing (a broker where the worker has all rights, as in development);
/// its pool's queues are declared; the jobs queue is bound when the user may bind,
/// else the binding is left to `declare`, run by the operator. Returns a channel
/// still open (a refused declaration closes the channel it was sent on).
pub async fn declare_for_worker(
    conn: &Connection,
    names: &PoolNames,
    delivery_limit: u32,
) -> lapin::Result<Channel> {
    let channel = conn.create_channel().await?;
    if let Err(err) = declare_exchanges(&channel, true).await {
        if reply_code(&err) != Some(404) {
            return Err(err);
        }
        declare_exchanges(&conn.create_channel().await?, false).await?;
    }
    let channel = conn.create_channel().await?;
    declare_queues(&channel, names, delivery_limit).await?;
    match bind_jobs_queue(&channel, names).await {
        Ok(()) => Ok(channel),
        Err(err) if reply_code(&err) == Some(403) => {
            tracing::info!(queue = %names.jobs, "no right to bind the jobs queue; relying on the operator's `declare`");
            conn.create_channel().await
        }
        Err(err) => Err(err),
    }
}

/// The AMQP reply code of a channel or connection error the broker sent.
pub fn reply_code(err: &lapin::Error) -> Option<u16> {
    match err.kind() {
        lapin::ErrorKind::ProtocolError(e) => Some(e.get_id()),
        _ => None,
    }
}

/// The three exchanges; `passive` only checks they exist (no rights needed).
async fn declare_exchanges(channel: &Channel, passive: bool) -> lapin::Result<()> {
    let durable = ExchangeDeclareOptions {
        durable: true,
        passive,
        ..Default::default()
    };
    for (name, kind) in [
        (JOBS_EXCHANGE, ExchangeKind::Direct),
        (RESULTS_EXCHANGE, ExchangeKind::Topic),
        (EVENTS_EXCHANGE, ExchangeKind::Topic),
    ] {
        channel
            .exchange_declare(name.into(), kind, durable, FieldTable::default())
            .await?;
    }
    Ok(())
}

/// The jobs, retry and dead-letter queues of the pool.
async fn declare_queues(
    channel: &Channel,
    names: &PoolNames,
    delivery_limit: u32,
) -> lapin::Result<()> {
    let queue = QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };

    let mut jobs_args = FieldTable::default();
    jobs_args.insert(ShortString::from("x-queue-type"), long_string("quorum"));
    jobs_args.insert(
        ShortString::from("x-delivery-limit"),
        AMQPValue::LongLongInt(delivery_limit as i64),
    );
    jobs_args.insert(ShortString::from("x-dead-letter-exchange"), long_string(""));
    jobs_args.insert(
        ShortString::from("x-dead-letter-routing-key"),
        long_string(&names.dead),
    );
    channel
        .queue_declare(names.jobs.as_str().into(), queue, jobs_args)
        .await?;

    let mut retry_args = FieldTable::default();
    retry_args.insert(ShortString::from("x-dead-letter-exchange"), long_string(""));
    retry_args.insert(
        ShortString::from("x-dead-letter-routing-key"),
        long_string(&names.jobs),
    );
    channel
        .queue_declare(names.retry.as_str().into(), queue, retry_args)
        .await?;

    channel
        .queue_declare(names.dead.as_str().into(), queue, FieldTable::default())
        .await?;
    Ok(())
}

/// Binds the jobs queue to `guestkit.jobs` with the pool's routing key.
async fn bind_jobs_queue(channel: &Channel, names: &PoolNames) -> lapin::Result<()> {
    channel
        .queue_bind(
            names.jobs.as_str().into(),
            JOBS_EXCHANGE.into(),
            names.pool.as_str().into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
}
