//! The `guestkit-worker` binary: the daemon, or one of its subcommands.

use std::process::ExitCode;

use clap::Parser;
use guestkit_worker::broker::{connection, topology};
use guestkit_worker::config::{Cli, Command, Config, InspectArgs};
use guestkit_worker::executor::ResultStamp;
use guestkit_worker::inspect::image::http_url::{is_remote, RemoteUrl};
use guestkit_worker::ops::image_request::ImageRequest;
use guestkit_worker::ops::inspect::run_blocking;
use guestkit_worker::progress::Progress;
use guestkit_worker::render::Renderer;
use guestkit_worker::shutdown::{termination_signal, Shutdown};
use guestkit_worker::submit::{submit, Submitted};
use guestkit_worker::{http, logging, worker};

/// The job path allocates many small, short-lived objects on several threads; glibc's
/// malloc took about 15 % of the worker's CPU in the throughput bench (free-list
/// consolidation included).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Stack of the threads that parse AMQP frames (lapin's I/O loops, which std spawns
/// with its default size). A job message's header table is the publisher's to shape,
/// and the frame parser recurses once per nested table: with the broker's default
/// `frame_max` (128 KiB) a header can nest about 21,800 tables, which took more than
/// 256 MiB of stack in a debug build (the default 2 MiB overflowed at 200 levels and
/// aborted the worker). The worker's own `frame_max` does not help: RabbitMQ forwards a
/// header frame whole, whatever the consumer negotiated (seen here). Only address space
/// is reserved; pages are touched on use.
const FRAME_PARSER_STACK: usize = 1 << 30;

/// Stack of the runtime's threads, where a delivery and its header tables are dropped
/// (dropping nested tables recurses too: about 3 MiB for the deepest table in release).
const RUNTIME_THREAD_STACK: usize = 64 << 20;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let daemon = cli.command.is_none();
    if daemon {
        reserve_frame_parser_stacks();
    }
    logging::init(cli.config.log_format, &cli.config.log_level);
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.enable_all();
    if daemon {
        builder.thread_stack_size(RUNTIME_THREAD_STACK);
    }
    let runtime = match builder.build() {
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

/// Makes every thread std spawns without an explicit size (lapin's I/O loops) get
/// [`FRAME_PARSER_STACK`]. std reads `RUST_MIN_STACK` once, at the first spawn, and keeps
/// it: so the variable is set (unless the operator set one), one thread is spawned to fix
/// the value, and the variable is removed again, so child processes (inspections, with
/// their address-space limit) keep std's default. Called first thing in `main`, while this
/// is the only thread.
fn reserve_frame_parser_stacks() {
    if std::env::var_os("RUST_MIN_STACK").is_some() {
        return;
    }
    std::env::set_var("RUST_MIN_STACK", FRAME_PARSER_STACK.to_string());
    let _ = std::thread::spawn(|| ()).join();
    std::env::remove_var("RUST_MIN_STACK");
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
            // On a runtime worker, not the main thread: deliveries then become job
            // tasks on the same thread's queue instead of waking a worker from outside.
            tokio::spawn(worker::run(cfg, shutdown))
                .await
                .map_err(|e| anyhow::anyhow!("worker task failed: {e}"))??;
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
                Ok(if status == "completed" {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::FAILURE
                })
            }
        },
        Some(Command::Inspect(args)) => inspect_once(&cfg, &args).await,
        Some(Command::Healthcheck) => {
            let code = http::get_status(cfg.metrics_addr, "/healthz").await?;
            Ok(if code == 200 {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
    }
}

/// Runs the inspection pipeline once, with no broker, and prints the report (json) or
/// the rendered result document (other formats).
async fn inspect_once(cfg: &Config, args: &InspectArgs) -> anyhow::Result<ExitCode> {
    use guestkit_job_spec::{OutputFormat, OutputSpec, OutputTemplate};
    let format: OutputFormat = args
        .output
        .parse()
        .map_err(|e: String| anyhow::anyhow!(e))?;
    let template: OutputTemplate = args
        .template
        .parse()
        .map_err(|e: String| anyhow::anyhow!(e))?;
    // The image the user named is trusted as a root, so its own directory may hold its
    // backing files; the configured roots still apply to anything else.
    let mut roots = cfg.image_roots.clone();
    let named = args.image.to_string_lossy().into_owned();
    let (data, remote, shown) = if is_remote(&named) {
        // Likewise a URL: its own directory is allowed (backing files, extents), beside
        // the configured prefixes. Only the URL without its query is ever shown.
        let url = RemoteUrl::parse(&named)?;
        let shown = url.redacted();
        let mut allow = cfg.image_url_allow.clone();
        allow.push(shown[..shown.rfind('/').map_or(shown.len(), |i| i + 1)].to_string());
        let remote = cfg.remote_config(&allow, None)?;
        let data = serde_json::json!({ "image": { "url": named, "format": args.format } });
        (data, remote, shown)
    } else {
        if let Some(dir) = args.image.canonicalize()?.parent() {
            roots.push(dir.to_path_buf());
        }
        let data = serde_json::json!({ "image": { "path": args.image, "format": args.format } });
        (data, None, named)
    };
    let request = ImageRequest::from_data_remote(&data, &roots, remote.as_ref())
        .map_err(|e| anyhow::anyhow!(e.message))?;
    let started_at = chrono::Utc::now();
    let started = tokio::time::Instant::now();
    let outcome = tokio::task::spawn_blocking(move || {
        run_blocking(&request, &Progress::disabled(), &Default::default()).map(|(report, _)| report)
    })
    .await?;
    if format == OutputFormat::Json {
        return match outcome {
            Ok(report) => {
                println!("{}", serde_json::to_string_pretty(&report)?);
                Ok(ExitCode::SUCCESS)
            }
            Err(err) => anyhow::bail!("{}: {}", err.kind, err.message),
        };
    }
    let job = guestkit_job_spec::JobBuilder::new("guestkit.inspect")
        .data(data_for(std::path::Path::new(&shown)))
        .build()?;
    let stamp = ResultStamp {
        worker_id: "cli",
        pool: "cli",
        started_at,
        started,
    };
    let ok = outcome.is_ok();
    let doc = stamp.finished(
        &job,
        outcome.map(|r| serde_json::to_value(r).unwrap_or_default()),
    );
    let renderer = match &cfg.templates_dir {
        Some(dir) => Renderer::with_overrides(dir)?,
        None => Renderer::new(),
    };
    let rendered = renderer.render(&doc, OutputSpec { format, template });
    if let Some(err) = rendered.render_error {
        eprintln!("render error, printing json: {err}");
    }
    println!("{}", String::from_utf8_lossy(&rendered.body));
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn data_for(image: &std::path::Path) -> serde_json::Value {
    serde_json::json!({ "image": { "path": image } })
}

async fn declare(cfg: &Config) -> anyhow::Result<()> {
    let conn = connection::connect_with_retry(
        &cfg.amqp_url,
        "guestkit-worker declare",
        std::time::Duration::from_secs(60),
    )
    .await?;
    let channel = conn.create_channel().await?;
    let names = topology::PoolNames::new(&cfg.pool);
    topology::declare(&channel, &names, cfg.delivery_limit).await?;
    let _ = conn.close(200, "declared".into()).await;
    eprintln!(
        "declared topology for pool {} ({}, {}, {})",
        cfg.pool, names.jobs, names.retry, names.dead
    );
    Ok(())
}
