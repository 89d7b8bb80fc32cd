//! Process isolation of inspections.
//!
//! Every parser, ours or a crate's, reads hostile bytes. A bug there (an endless loop, an
//! allocation storm, a thread that never ends) must cost one job, never the worker. So
//! the daemon runs each `guestkit.inspect` and `guestkit.profile` job in a child process
//! of its own binary (the hidden `isolated-job` subcommand):
//!
//! - [`parent`]: spawns the child in its own process group, writes the request on its
//!   stdin, turns its stderr lines into progress events and logs, reads the reply from
//!   its stdout; timeout, cancel or drop kill the whole group with SIGKILL at once, and
//!   an abnormal end is classified (`resource_limit` for memory and CPU, naming which).
//! - [`child`]: the subcommand's body: apply [`limits`], run the operation, reply.
//! - [`limits`]: what a process applies to itself before it reads an image (rlimits,
//!   no-new-privs, parent-death signal, Landlock, seccomp); the `inspect` CLI applies the
//!   same to its own process.
//! - [`protocol`]: the JSON that crosses the process boundary.
//!
//! `system.echo` stays in process: it reads nothing hostile, and the throughput of the
//! job path must not pay for a process per job.

pub mod child;
pub mod limits;
pub mod parent;
pub mod protocol;

pub use limits::{apply, Limits, Sandbox};
pub use parent::{ChildOutput, Isolation};

/// Open files a child may hold: the image, its backing chain (at most 16 files), the
/// standard streams and a margin. Far below any host's default.
pub const OPEN_FILES: u64 = 128;

/// Parses a memory size as given on the command line ([`parse_bytes`]), at least 1M.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let bytes = parse_bytes(text)?;
    if bytes < (1 << 20) {
        return Err(format!("{text:?} is below the minimum of 1M"));
    }
    Ok(bytes)
}

/// Parses a byte count as given on the command line: a number with an optional binary
/// suffix (`K`, `M`, `G`, `T`, optionally followed by `i`/`iB`/`B`), e.g. `2G`, `512MiB`.
pub fn parse_bytes(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{text:?} is not a size (e.g. 2G, 512M, 1073741824)"))?;
    let shift = match unit.trim().to_ascii_uppercase().as_str() {
        "" | "B" => 0,
        "K" | "KB" | "KI" | "KIB" => 10,
        "M" | "MB" | "MI" | "MIB" => 20,
        "G" | "GB" | "GI" | "GIB" => 30,
        "T" | "TB" | "TI" | "TIB" => 40,
        other => return Err(format!("unknown size unit {other:?} in {text:?}")),
    };
    n.checked_mul(1u64 << shift)
        .ok_or_else(|| format!("{text:?} is too large"))
}

/// A byte count for messages: `2 GiB`, `96 MiB`, or plain bytes.
pub fn show_bytes(bytes: u64) -> String {
    for (shift, unit) in [(40, "TiB"), (30, "GiB"), (20, "MiB"), (10, "KiB")] {
        if bytes >= 1 << shift && bytes.is_multiple_of(1 << shift) {
            return format!("{} {unit}", bytes >> shift);
        }
    }
    format!("{bytes} bytes")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_binary_units() {
        assert_eq!(parse_size("2G"), Ok(2 << 30));
        assert_eq!(parse_size("512MiB"), Ok(512 << 20));
        assert_eq!(parse_size("64m"), Ok(64 << 20));
        assert_eq!(parse_size("1073741824"), Ok(1 << 30));
        assert!(parse_size("1000").is_err(), "below the minimum");
        assert!(parse_size("2X").is_err());
        assert!(parse_size("G").is_err());
        assert!(parse_size("99999999999T").is_err());
        assert_eq!(show_bytes(2 << 30), "2 GiB");
        assert_eq!(show_bytes(96 << 20), "96 MiB");
        assert_eq!(show_bytes(1000), "1000 bytes");
    }
}
