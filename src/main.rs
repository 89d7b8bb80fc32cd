//! The `guestkit-worker` binary: the daemon, or one of its subcommands.

#![forbid(unsafe_code)]

use std::process::ExitCode;

use guestkit_worker::broker::{connection, topology};
use guestkit_worker::config::{inspect_exit, Cli, Command, Config, InspectArgs};
use guestkit_worker::executor::ResultStamp;
use guestkit_worker::inspect::image::http_url::is_remote;
use guestkit_worker::ops::image_request::ImageRequest;
use guestkit_worker::ops::inspect::run_blocking;
use guestkit_worker::progress::Progress;
use guestkit_worker::render::Renderer;
use guestkit_worker::shutdown::{termination_signal, Shutdown};
use guestkit_worker::submit::{submit, Submitted};
use guestkit_worker::{http, isolation, logging, worker};

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
    let cli = Cli::parse_args();
    let daemon = cli.command.is_none();
    if daemon {
        reserve_frame_parser_stacks();
    }
    logging::init(cli.config.log_format, &cli.config.log_level);
    // The commands that read a disk image run without an async runtime: they limit
    // their own process first, while it still has one thread (Landlock, seccomp and
    // no-new-privs then hold for every thread started later).
    match &cli.command {
        Some(Command::IsolatedJob(args)) => return isolation::child::main(args),
        Some(Command::Inspect(args)) => {
            without_allocator_arena();
            return report_exit(inspect_once(&cli.config, args));
        }
        _ => {}
    }
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
    // Tasks still running (jobs past the shutdown grace) are dropped now, which kills
    // their inspection processes; nothing may hold the exit.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    report_exit(result)
}

/// mimalloc reserves a 1 GiB arena at its first allocation, long before `inspect` sets
/// its memory limit, and the heap could grow into it unchecked. So `inspect` runs itself
/// again (exec: same process) with the arena disabled, as the daemon starts its
/// children; when that fails it goes on, with the arena.
fn without_allocator_arena() {
    const VAR: &str = "MIMALLOC_ARENA_RESERVE";
    if std::env::var_os(VAR).is_some() {
        return;
    }
    use std::os::unix::process::CommandExt;
    let err = std::process::Command::new("/proc/self/exe")
        .args(std::env::args_os().skip(1))
        .env(VAR, "0")
        .exec();
    tracing::debug!(error = %err, "cannot exec itself without the allocator's arena");
}

fn report_exit(result: anyhow::Result<ExitCode>) -> ExitCode {
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
        Some(Command::Inspect(_)) | Some(Command::IsolatedJob(_)) => {
            unreachable!("handled before the runtime starts")
        }
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

/// Ends `inspect` with `code` (see `config::INSPECT_AFTER_HELP`), saying why on stderr.
fn inspect_failed(code: u8, message: impl std::fmt::Display) -> anyhow::Result<ExitCode> {
    tracing::error!(error = %message, "exiting");
    eprintln!("guestkit-worker: {message}");
    Ok(ExitCode::from(code))
}

/// The exit code of an inspection that produced no report.
fn inspect_error_code(kind: &guestkit_job_spec::ErrorKind) -> u8 {
    use guestkit_job_spec::ErrorKind;
    match kind {
        ErrorKind::ReadBudgetExceeded | ErrorKind::Cancelled => inspect_exit::LIMIT,
        _ => inspect_exit::IMAGE,
    }
}

/// Runs the inspection pipeline once, with no broker, and prints the report (json) or
/// the rendered result document (other formats). The process limits itself as the
/// daemon limits each inspection's process.
fn inspect_once(cfg: &Config, args: &InspectArgs) -> anyhow::Result<ExitCode> {
    use guestkit_job_spec::{OutputFormat, OutputSpec, OutputTemplate};
    // Both are checked by clap against the same lists; kept typed here.
    let (format, template): (OutputFormat, OutputTemplate) =
        match (args.output.parse(), args.template.parse()) {
            (Ok(f), Ok(t)) => (f, t),
            (Err(e), _) | (_, Err(e)) => return inspect_failed(inspect_exit::USAGE, e),
        };
    // The image the user named is trusted, and so are the files right next to it (its
    // backing files), but not the folder's subfolders or siblings: a crafted image in
    // $HOME or /tmp must not read other files from there. `--image-root` trusts more.
    let mut roots = cfg.image_roots.clone();
    let mut dirs = Vec::new();
    let named = args.image.to_string_lossy().into_owned();
    let remote = is_remote(&named);
    if remote && !args.disks.is_empty() {
        return inspect_failed(
            inspect_exit::USAGE,
            "--disk is not supported with a remote image",
        );
    }
    let images = std::iter::once(&args.image).filter(|_| !remote);
    for image in images.chain(&args.disks) {
        let canonical = match image.canonicalize() {
            Ok(c) => c,
            Err(e) => {
                return inspect_failed(inspect_exit::IMAGE, format!("{}: {e}", image.display()))
            }
        };
        if let Some(dir) = canonical.parent() {
            dirs.push(dir.to_path_buf());
        }
    }
    roots.extend(dirs.iter().cloned());
    let data = if remote {
        serde_json::json!({ "image": { "url": named, "format": args.format } })
    } else if args.disks.is_empty() {
        serde_json::json!({ "image": { "path": args.image, "format": args.format } })
    } else {
        let mut disks = vec![serde_json::json!({ "path": args.image, "format": args.format })];
        disks.extend(args.disks.iter().map(|d| serde_json::json!({ "path": d })));
        serde_json::json!({ "disks": disks })
    };
    let mut request = match ImageRequest::from_data(&data, &roots) {
        Ok(r) => r,
        Err(e) if e.reason == "invalid_payload" => {
            return inspect_failed(inspect_exit::USAGE, e.message)
        }
        Err(e) => return inspect_failed(inspect_exit::IMAGE, e.message),
    };
    request.options.image_roots = cfg.image_roots.clone();
    request.options.image_dirs = dirs;
    request.options.read_budget = args.read_budget;
    // A URL: fetched by a thread started now, before the limits, which bind only the
    // threads that apply them or start after; the inspection on this thread reads
    // through a socket pair and has no network. The URL's own folder is trusted (its
    // files, not its subfolders), like a local image's.
    let _fetcher = match &request.url {
        Some(url) => {
            let config = cfg.remote_config(&cfg.image_url_allow, Some(url), None)?;
            match request.fetch_in_thread(config.as_ref(), &Default::default()) {
                Ok(fetcher) => fetcher,
                Err(e) => {
                    return inspect_failed(
                        inspect_exit::IMAGE,
                        format!("{}: {}", e.kind, e.message),
                    )
                }
            }
        }
        None => None,
    };
    // Keys are read now, before the limits forbid reading their files.
    for spec in &args.keys {
        if let Err(e) = request.options.luks_keys.add_cli_key(spec) {
            return inspect_failed(inspect_exit::USAGE, format!("--key: {e}"));
        }
    }
    if args.keys_from_stdin {
        use std::io::Read;
        let mut text = zeroize::Zeroizing::new(Vec::new());
        std::io::stdin().take(1 << 20).read_to_end(&mut text)?;
        request.options.luks_keys.add_lines(&text);
    }
    // Templates are read before the limits forbid reading outside the image roots.
    let renderer = match &cfg.templates_dir {
        Some(dir) => Renderer::with_overrides(dir)?,
        None => Renderer::new(),
    };
    let limits = isolation::Limits {
        memory_bytes: cfg.inspect_memory_limit,
        cpu_seconds: cfg.max_job_timeout.max(1),
        open_files: isolation::OPEN_FILES,
        parent_pid: None,
        sandbox: !cfg.no_inspect_sandbox,
    };
    // Landlock's read access: the configured roots and the folders of the images named
    // (the code's own rule, direct children only, is narrower and still applies).
    let read_roots: Vec<_> = request
        .options
        .image_roots
        .iter()
        .chain(&request.options.image_dirs)
        .filter_map(|r| r.canonicalize().ok())
        .collect();
    let sandbox = isolation::apply(&limits, &read_roots)?;
    if sandbox.complete() {
        tracing::debug!(sandbox = %sandbox.describe(), "limits applied");
    } else {
        tracing::info!(sandbox = %sandbox.describe(), "limits applied (partly: see the notes)");
    }
    let started_at = chrono::Utc::now();
    let started = tokio::time::Instant::now();
    let outcome = run_blocking(&request, &Progress::disabled(), &Default::default())
        .map(|(report, _)| report);
    if format == OutputFormat::Json {
        return match outcome {
            Ok(report) => {
                println!("{}", serde_json::to_string_pretty(&report)?);
                Ok(ExitCode::SUCCESS)
            }
            Err(err) => inspect_failed(
                inspect_error_code(&err.kind),
                format!("{}: {}", err.kind, err.message),
            ),
        };
    }
    let job = guestkit_job_spec::JobBuilder::new("guestkit.inspect")
        .data(data_for(&request.path))
        .build()?;
    let stamp = ResultStamp {
        worker_id: "cli",
        pool: "cli",
        started_at,
        started,
    };
    let code = match &outcome {
        Ok(_) => inspect_exit::REPORT,
        Err(err) => inspect_error_code(&err.kind),
    };
    let doc = stamp.finished(
        &job,
        outcome.map(|r| serde_json::to_value(r).unwrap_or_default()),
    );
    let rendered = renderer.render(&doc, OutputSpec { format, template });
    if let Some(err) = rendered.render_error {
        eprintln!("render error, printing json: {err}");
    }
    println!("{}", String::from_utf8_lossy(&rendered.body));
    Ok(ExitCode::from(code))
}

fn data_for(image: &std::path::Path) -> serde_json::Value {
    serde_json::json!({ "image": { "path": image } })
}

async fn declare(cfg: &Config) -> anyhow::Result<()> {
    let conn = connection::Broker::from_config(cfg)?
        .connect_with_retry(
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
