//! The `guestkit-worker` binary: the daemon, or one of its subcommands.

use std::process::ExitCode;

use clap::Parser;
use guestkit_worker::broker::{connection, topology};
use guestkit_worker::config::{Cli, Command, Config};
use guestkit_worker::shutdown::{termination_signal, Shutdown};
use guestkit_worker::submit::{submit, Submitted};
use guestkit_worker::{http, logging, worker};

fn main() -> ExitCode {
    let cli = Cli::parse();
    logging::init(cli.config.log_format, &cli.config.log_level);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(dispatch(cli));
    match result {
        Ok(code) => code,
        Err(err) => {
            tracing::error!(error = %format!("{err:#}"), "exiting");
            eprintln!("guestkit-worker: {err:#}");
            ExitCode::FAILURE
        }
    }
}

async fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    let cfg = cli.config;
    match cli.command {
        None => {
            let (trigger, shutdown) = Shutdown::new();
            tokio::spawn(async move {
                termination_signal().await;
                trigger.trigger();
                // A second signal means "now".
                termination_signal().await;
                std::process::exit(130);
            });
            worker::run(cfg, shutdown).await?;
            Ok(ExitCode::SUCCESS)
        }
        Some(Command::Declare) => {
            declare(&cfg).await?;
            Ok(ExitCode::SUCCESS)
        }
        Some(Command::Submit(args)) => match submit(&cfg, &args).await? {
            Submitted::Sent => Ok(ExitCode::SUCCESS),
            Submitted::Result { status, body } => {
                println!("{}", String::from_utf8_lossy(&body));
                Ok(if status == "completed" { ExitCode::SUCCESS } else { ExitCode::FAILURE })
            }
        },
        Some(Command::Inspect(_args)) => anyhow::bail!("inspect is not available yet"),
        Some(Command::Healthcheck) => {
            let code = http::get_status(cfg.metrics_addr, "/healthz").await?;
            Ok(if code == 200 { ExitCode::SUCCESS } else { ExitCode::FAILURE })
        }
    }
}

async fn declare(cfg: &Config) -> anyhow::Result<()> {
    let conn = connection::connect_with_retry(&cfg.amqp_url, "guestkit-worker declare", std::time::Duration::from_secs(60)).await?;
    let channel = conn.create_channel().await?;
    let names = topology::PoolNames::new(&cfg.pool);
    topology::declare(&channel, &names, cfg.delivery_limit).await?;
    let _ = conn.close(200, "declared".into()).await;
    eprintln!("declared topology for pool {} ({}, {}, {})", cfg.pool, names.jobs, names.retry, names.dead);
    Ok(())
}
