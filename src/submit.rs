//! `guestkit-worker submit`: publish one job, optionally wait for its result. Also the
//! reference for how another service publishes a job.

use std::time::Duration;

use futures_util::StreamExt;
use guestkit_job_spec::{parse_job, JobBuilder, JobDocument};
use lapin::options::{
    BasicConsumeOptions, BasicPublishOptions, ConfirmSelectOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{BasicProperties, Channel, ConnectionProperties};

use crate::broker::connection::Broker;
use crate::broker::topology::{string_header, HEADER_STATUS, JOBS_EXCHANGE};
use crate::config::{Config, SubmitArgs};

/// What `submit` ended with, for the exit code.
pub enum Submitted {
    /// Published; not waiting.
    Sent,
    /// The result arrived: (status header, body).
    Result { status: String, body: Vec<u8> },
}

fn load_job(cfg: &Config, args: &SubmitArgs) -> anyhow::Result<JobDocument> {
    if let Some(file) = &args.file {
        let bytes = std::fs::read(file)
            .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", file.display()))?;
        return parse_job(&bytes).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()));
    }
    let operation = args.operation.clone().unwrap_or_default();
    let data: serde_json::Value =
        serde_json::from_str(&args.data).map_err(|e| anyhow::anyhow!("--data is not JSON: {e}"))?;
    let mut builder = JobBuilder::new(operation).data(data).pool(cfg.pool.clone());
    if let Some(n) = args.max_attempts {
        builder = builder.max_attempts(n);
    }
    if let Some(s) = args.timeout_seconds {
        builder = builder.timeout_seconds(s);
    }
    builder
        .build()
        .map_err(|e| anyhow::anyhow!("invalid job: {e}"))
}

/// Publishes the job persistently with a confirm; with `--wait`, listens on a private
/// auto-delete queue named in `reply_to` until the result with our correlation id comes.
pub async fn submit(cfg: &Config, args: &SubmitArgs) -> anyhow::Result<Submitted> {
    let job = load_job(cfg, args)?;
    let body = serde_json::to_vec(&job)?;
    let conn = Broker::from_config(cfg)?
        .connect(ConnectionProperties::default())
        .await?;
    let channel = conn.create_channel().await?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await?;

    let mut props = BasicProperties::default()
        .with_delivery_mode(2)
        .with_content_type("application/json".into())
        .with_message_id(job.job_id.as_str().into())
        .with_correlation_id(job.job_id.as_str().into());
    let mut replies = None;
    if args.wait {
        let (queue, consumer) = reply_queue(&channel).await?;
        props = props.with_reply_to(queue);
        replies = Some(consumer);
    }
    let confirm = channel
        .basic_publish(
            JOBS_EXCHANGE.into(),
            cfg.pool.as_str().into(),
            BasicPublishOptions::default(),
            &body,
            props,
        )
        .await?
        .await?;
    anyhow::ensure!(confirm.is_ack(), "the broker did not confirm the job");
    eprintln!(
        "submitted {} ({}) to pool {}",
        job.job_id, job.operation, cfg.pool
    );

    let Some(replies) = replies else {
        let _ = conn.close(200, "done".into()).await;
        return Ok(Submitted::Sent);
    };
    let wait = Duration::from_secs(args.wait_timeout);
    let found = tokio::time::timeout(wait, await_result(replies, &job.job_id)).await;
    let _ = conn.close(200, "done".into()).await;
    match found {
        Ok(Ok(Some(result))) => Ok(result),
        Ok(Ok(None)) => anyhow::bail!("the reply queue closed before the result arrived"),
        Ok(Err(e)) => Err(e.into()),
        Err(_) => anyhow::bail!("no result for {} within {} s", job.job_id, wait.as_secs()),
    }
}

/// A server-named, exclusive reply queue (the only kind the worker's `reply_to` rule
/// accepts) and a consumer on it.
async fn reply_queue(channel: &Channel) -> lapin::Result<(ShortString, lapin::Consumer)> {
    let mut qargs = FieldTable::default();
    // Gone within a minute if this process dies without cleaning up.
    qargs.insert("x-expires".into(), AMQPValue::LongInt(60_000));
    let queue = channel
        .queue_declare(
            "".into(),
            QueueDeclareOptions {
                exclusive: true,
                auto_delete: true,
                ..Default::default()
            },
            qargs,
        )
        .await?;
    let consumer = channel
        .basic_consume(
            queue.name().clone(),
            "".into(),
            BasicConsumeOptions {
                no_ack: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await?;
    Ok((queue.name().clone(), consumer))
}

/// The first reply whose correlation id is `job_id`; `None` when the queue closes first.
async fn await_result(
    mut replies: lapin::Consumer,
    job_id: &str,
) -> lapin::Result<Option<Submitted>> {
    while let Some(delivery) = replies.next().await {
        let delivery = delivery?;
        let matches = delivery
            .properties
            .correlation_id()
            .as_ref()
            .map(|c| c.as_str())
            == Some(job_id);
        if !matches {
            continue;
        }
        let status = string_header(delivery.properties.headers().as_ref(), HEADER_STATUS)
            .unwrap_or_default();
        return Ok(Some(Submitted::Result {
            status,
            body: delivery.data,
        }));
    }
    Ok(None)
}
