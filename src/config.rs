//! Command line and environment: every flag of the wire contract, each with its
//! `GUESTKIT_*` variable.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use guestkit_job_spec::{OutputFormat, OutputTemplate};

/// Default broker URL of the contract.
pub const DEFAULT_AMQP_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

/// `guestkit-worker`: the daemon when no subcommand is given.
#[derive(Debug, Parser)]
#[command(
    name = "guestkit-worker",
    version,
    about = "Userspace VM disk-image inspection worker for RabbitMQ"
)]
pub struct Cli {
    #[command(flatten)]
    pub config: Config,
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Settings shared by the daemon and the subcommands (global, so they may follow the
/// subcommand name too).
#[derive(Debug, Clone, Args)]
pub struct Config {
    /// AMQP 0-9-1 URL of the broker.
    #[arg(long, env = "GUESTKIT_AMQP_URL", default_value = DEFAULT_AMQP_URL, global = true)]
    pub amqp_url: String,
    /// PEM file of the CA that signed the broker's certificate (`amqps://` only), trusted
    /// besides the system's roots.
    #[arg(long, env = "GUESTKIT_AMQP_CA_FILE", global = true)]
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate (chain) for brokers that require one (`amqps://` only);
    /// with --tls-key.
    #[arg(long, env = "GUESTKIT_AMQP_TLS_CERT", global = true)]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, env = "GUESTKIT_AMQP_TLS_KEY", global = true)]
    pub tls_key: Option<PathBuf>,
    /// Worker pool: the queue `guestkit.jobs.<pool>` this worker consumes.
    #[arg(long, env = "GUESTKIT_POOL", default_value = "default", global = true)]
    pub pool: String,
    /// Jobs run at once; also the prefetch (basic.qos).
    #[arg(long, env = "GUESTKIT_MAX_CONCURRENT", default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=2000), global = true)]
    pub max_concurrent: u16,
    /// This worker's id in results and logs (default: a fresh ULID).
    #[arg(long, env = "GUESTKIT_WORKER_ID", global = true)]
    pub worker_id: Option<String>,
    /// Directory images may be read from (repeatable; in the variable, comma-separated).
    #[arg(
        long = "image-root",
        env = "GUESTKIT_IMAGE_ROOT",
        value_delimiter = ',',
        default_value = "/var/lib/guestkit/images",
        global = true
    )]
    pub image_roots: Vec<PathBuf>,
    /// URL prefix remote images (`image.url`) may be fetched from (repeatable; in the
    /// variable, comma-separated). None: remote images are refused.
    #[arg(
        long = "image-url-allow",
        env = "GUESTKIT_IMAGE_URL_ALLOW",
        value_delimiter = ',',
        global = true
    )]
    pub image_url_allow: Vec<String>,
    /// PEM file of extra CA certificates trusted for remote images (beside the system's).
    /// Separate from --ca-file (the broker's CA): an image server and the broker rarely
    /// share a private CA, and trusting one for the other would widen both.
    #[arg(long, env = "GUESTKIT_IMAGE_CA_FILE", global = true)]
    pub image_ca_file: Option<PathBuf>,
    /// Timeout of one HTTP request of a remote image, in seconds (connect, headers and
    /// body together).
    #[arg(
        long,
        env = "GUESTKIT_REMOTE_TIMEOUT",
        default_value_t = 30,
        global = true
    )]
    pub remote_timeout: u64,
    /// Address of the HTTP server for /metrics, /healthz and /readyz.
    #[arg(
        long,
        env = "GUESTKIT_METRICS_ADDR",
        default_value = "0.0.0.0:9090",
        global = true
    )]
    pub metrics_addr: SocketAddr,
    /// Log format: `text` for people, `json` for machines.
    #[arg(long, env = "GUESTKIT_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,
    /// Log filter (`info`, `debug`, or a tracing directive such as `guestkit_worker=debug`).
    #[arg(
        long,
        env = "GUESTKIT_LOG_LEVEL",
        default_value = "info",
        global = true
    )]
    pub log_level: String,
    /// Seconds running jobs get to finish after SIGTERM/SIGINT.
    #[arg(
        long,
        env = "GUESTKIT_SHUTDOWN_GRACE",
        default_value_t = 30,
        global = true
    )]
    pub shutdown_grace: u64,
    /// Upper bound in seconds on any job's run time, whatever the job asks for.
    #[arg(
        long,
        env = "GUESTKIT_MAX_JOB_TIMEOUT",
        default_value_t = 3600,
        global = true
    )]
    pub max_job_timeout: u64,
    /// Largest message body accepted; a larger one is rejected without being parsed.
    #[arg(long, env = "GUESTKIT_MAX_MESSAGE_BYTES", default_value_t = 1024 * 1024, global = true)]
    pub max_message_bytes: usize,
    /// `x-delivery-limit` of the jobs queue: redeliveries before the broker dead-letters.
    #[arg(
        long,
        env = "GUESTKIT_DELIVERY_LIMIT",
        default_value_t = 5,
        global = true
    )]
    pub delivery_limit: u32,
    /// Directory of tera templates overriding the built-in ones.
    #[arg(long, env = "GUESTKIT_TEMPLATES_DIR", global = true)]
    pub templates_dir: Option<PathBuf>,
    /// Memory of one inspection: the address space its process may add to what it has
    /// at start (RLIMIT_AS), e.g. `2G`, `512M`; more fails the job with
    /// `resource_limit`. Each `guestkit.inspect`/`guestkit.profile` job runs in a child
    /// process under this limit, CPU time = the job's timeout, 128 open files, no new
    /// privileges, death with the worker, and where the kernel allows, Landlock
    /// (read-only access beneath the image roots, nothing else) and seccomp (no sockets,
    /// no exec); the `inspect` subcommand applies the same limits to itself.
    #[arg(
        long,
        env = "GUESTKIT_INSPECT_MEMORY_LIMIT",
        default_value = "2G",
        value_parser = crate::isolation::parse_size,
        global = true
    )]
    pub inspect_memory_limit: u64,
    /// Skip Landlock and seccomp in inspection processes (and the `inspect` subcommand),
    /// keeping the rlimits, no-new-privs and the parent-death signal: for a kernel or a
    /// container profile where those calls misbehave. The worker logs a warning naming
    /// the degraded sandbox at its first inspection job.
    #[arg(long, env = "GUESTKIT_NO_INSPECT_SANDBOX", global = true)]
    pub no_inspect_sandbox: bool,
    /// Folder of LUKS passphrases (a mounted Kubernetes Secret): a file per volume named
    /// by its LUKS UUID, and `default` for any volume. Read for each job and passed to
    /// its isolated process on stdin.
    #[arg(long, env = "GUESTKIT_LUKS_KEYS_DIR", global = true)]
    pub luks_keys_dir: Option<PathBuf>,
}

impl Config {
    /// `--shutdown-grace` as a duration.
    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_secs(self.shutdown_grace)
    }

    /// `--max-job-timeout` as a duration.
    pub fn max_job_timeout(&self) -> Duration {
        Duration::from_secs(self.max_job_timeout.max(1))
    }

    /// The remote-image settings for `allow` (`--image-url-allow`), plus the files
    /// directly in the folder of `folder_of` (the CLI's own URL): `None` when nothing is
    /// allowed, so remote images are refused. Reads `--image-ca-file` and the system's roots now.
    pub fn remote_config(
        &self,
        allow: &[String],
        folder_of: Option<&crate::inspect::image::http_url::RemoteUrl>,
        metrics: Option<&crate::metrics::Metrics>,
    ) -> anyhow::Result<Option<std::sync::Arc<crate::inspect::image::http::RemoteConfig>>> {
        if allow.iter().all(|a| a.trim().is_empty()) && folder_of.is_none() {
            return Ok(None);
        }
        let mut config = crate::inspect::image::http::RemoteConfig::new(
            allow,
            self.image_ca_file.as_deref(),
            Duration::from_secs(self.remote_timeout.max(1)),
        )
        .map_err(|e| anyhow::anyhow!("--image-url-allow/--image-ca-file: {e}"))?;
        if let Some(url) = folder_of {
            config.allow.add_folder_of(url);
        }
        config.metrics = metrics.map(|m| {
            (
                m.remote_bytes_total.clone(),
                m.remote_requests_total.clone(),
            )
        });
        Ok(Some(std::sync::Arc::new(config)))
    }
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Subcommands besides the daemon.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Declare the topology of `--pool` (idempotent), so queues exist before any worker
    /// runs: KEDA's scale-from-zero needs them.
    Declare,
    /// Publish a job (from a file, or built from --operation/--data).
    Submit(SubmitArgs),
    /// Inspect one image with no broker and print the report. The process limits itself
    /// as the daemon limits each inspection (see --inspect-memory-limit; CPU time =
    /// --max-job-timeout).
    Inspect(InspectArgs),
    /// Exit 0 when the daemon's /healthz answers 200 (for Docker's HEALTHCHECK).
    Healthcheck,
    /// Internal: run one inspection job in this process (request on stdin, reply on
    /// stdout, progress and logs as JSON lines on stderr). The daemon starts it.
    #[command(hide = true)]
    IsolatedJob(IsolatedJobArgs),
}

/// Arguments of the hidden `isolated-job` subcommand: the limits the process applies
/// to itself before reading anything.
#[derive(Debug, Args)]
pub struct IsolatedJobArgs {
    /// RLIMIT_AS in bytes.
    #[arg(long)]
    pub memory_limit: u64,
    /// RLIMIT_CPU (soft) in seconds.
    #[arg(long)]
    pub cpu_seconds: u64,
    /// RLIMIT_NOFILE.
    #[arg(long)]
    pub open_files: u64,
    /// The worker's pid: the process dies with it.
    #[arg(long)]
    pub parent_pid: Option<u32>,
    /// Landlock and seccomp skipped (`--no-inspect-sandbox`).
    #[arg(long)]
    pub no_sandbox: bool,
}

/// Arguments of `submit`.
#[derive(Debug, Args)]
pub struct SubmitArgs {
    /// A job document (JSON) to publish as is.
    #[arg(conflicts_with_all = ["operation", "data"])]
    pub file: Option<PathBuf>,
    /// Operation of a job built here, for example `system.echo`.
    #[arg(long, required_unless_present = "file")]
    pub operation: Option<String>,
    /// `payload.data` of a built job, as JSON.
    #[arg(long, default_value = "{}")]
    pub data: String,
    /// `execution.max_attempts` of a built job.
    #[arg(long)]
    pub max_attempts: Option<u32>,
    /// `execution.timeout_seconds` of a built job.
    #[arg(long)]
    pub timeout_seconds: Option<u64>,
    /// Wait for the result (through reply_to) and print it; exit 0 only for `completed`.
    #[arg(long)]
    pub wait: bool,
    /// Seconds to wait for the result.
    #[arg(long, default_value_t = 300)]
    pub wait_timeout: u64,
}

/// Arguments of `inspect`.
#[derive(Debug, Args)]
#[command(after_help = INSPECT_AFTER_HELP)]
pub struct InspectArgs {
    /// The disk image.
    pub image: PathBuf,
    /// Assert the image format; a mismatch fails with exit code 3. `vhd` is an alias of
    /// `vpc` (qemu-img's name for VHD).
    #[arg(long, value_parser = clap::builder::PossibleValuesParser::new(crate::inspect::image::ImageFormat::NAMES))]
    pub format: Option<String>,
    /// A further disk of the same guest (`/dev/sdb`, `/dev/sdc`, ... in order); repeatable.
    #[arg(long = "disk", value_name = "IMAGE")]
    pub disks: Vec<PathBuf>,
    /// Output format: `json` prints the report itself; the others render the result
    /// document as a job's `output.format` does.
    #[arg(long, default_value = "json", value_parser = clap::builder::PossibleValuesParser::new(OutputFormat::ALL.map(OutputFormat::as_str)))]
    pub output: String,
    /// Template of the yaml/text/markdown/html rendering, as a job's `output.template`.
    #[arg(long, default_value = "standard", value_parser = clap::builder::PossibleValuesParser::new(OutputTemplate::ALL.map(OutputTemplate::as_str)))]
    pub template: String,
    /// A LUKS passphrase: `UUID_OR_DEVICE:file:PATH` (the file's exact bytes, as
    /// `cryptsetup --key-file`); repeatable.
    #[arg(long = "key", value_name = "UUID_OR_DEVICE:file:PATH")]
    pub keys: Vec<String>,
    /// Read LUKS passphrases from stdin, one per line, each tried on every locked volume.
    #[arg(long)]
    pub keys_from_stdin: bool,
    /// Most guest bytes read (suffixes K, M, G, T); more stops with exit code 4.
    #[arg(long, value_name = "SIZE", default_value = "4G", value_parser = crate::isolation::parse_bytes)]
    pub read_budget: u64,
}

/// Exit codes of `inspect`, shown in its `--help` (and the README).
pub const INSPECT_AFTER_HELP: &str = "\
Exit codes:
  0  the report was printed (warnings included)
  1  internal error (the process could not limit itself, the output could not be written)
  2  usage: unknown flag or value, unreadable --key file
  3  the image cannot be read: missing, not a regular file, not the --format asserted,
     damaged image format or partition table
  4  stopped by --read-budget
A process past --inspect-memory-limit or its CPU time (--max-job-timeout) is ended by a
signal (SIGABRT, SIGXCPU/SIGKILL), as the daemon's inspection processes are.";

/// Exit codes of `inspect` (see [`INSPECT_AFTER_HELP`]).
pub mod inspect_exit {
    pub const REPORT: u8 = 0;
    pub const INTERNAL: u8 = 1;
    pub const USAGE: u8 = 2;
    pub const IMAGE: u8 = 3;
    pub const LIMIT: u8 = 4;
}

/// The global settings the one-shot `inspect` reads (field names, clap's ids); the
/// daemon's others (broker, pool, concurrency, metrics, shutdown, ...) are hidden from
/// its help.
const INSPECT_SETTINGS: &[&str] = &[
    "image_roots",
    "log_format",
    "log_level",
    "max_job_timeout",
    "templates_dir",
    "inspect_memory_limit",
    "image_url_allow",
    "image_ca_file",
    "remote_timeout",
];

impl Cli {
    /// The command line definition, with `inspect --help` showing only the settings an
    /// inspection uses. Global settings are copied into every subcommand when the
    /// command is built, so they are hidden there after that.
    pub fn command_line() -> clap::Command {
        let mut cmd = <Cli as clap::CommandFactory>::command();
        cmd.build();
        cmd.mut_subcommand("inspect", |sub| {
            sub.mut_args(|a| {
                if a.is_global_set() && !INSPECT_SETTINGS.contains(&a.get_id().as_str()) {
                    a.hide(true)
                } else {
                    a
                }
            })
        })
    }

    /// Parses the process's arguments (exits with clap's usage code 2 on error).
    pub fn parse_args() -> Cli {
        let matches = Cli::command_line().get_matches();
        <Cli as clap::FromArgMatches>::from_arg_matches(&matches).unwrap_or_else(|e| e.exit())
    }
}
