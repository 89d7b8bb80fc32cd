//! The one-shot `guestkit-worker inspect` as a user meets it: its `--help` (only the
//! flags an inspection uses, every accepted `--format` and `--output` name, the exit
//! codes, the same as the README's), and every exit code, from the real binary.

use std::path::Path;
use std::process::{Command, Output};

use guestkit_job_spec::{OutputFormat, OutputTemplate};

use crate::common::{sh, tempdir};
use crate::worker_inspect::linux_qcow2;

fn worker(args: &[&str], image: Option<&Path>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_guestkit-worker"));
    cmd.args(["--log-level", "error"]).args(args);
    if let Some(image) = image {
        cmd.arg(image);
    }
    cmd.output().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The `--long` flags a help text lists.
fn flags(help: &str) -> Vec<String> {
    help.lines()
        .filter_map(|l| {
            let l = l.trim_start();
            let l = l.strip_prefix("-h, ").unwrap_or(l);
            let l = if l.starts_with('-') && l.as_bytes().get(2) == Some(&b',') {
                &l[4..]
            } else {
                l
            };
            l.strip_prefix("--")
                .map(|f| f.split([' ', '=', '<']).next().unwrap().to_string())
        })
        .collect()
}

/// The values clap lists for `--flag` (`[possible values: a, b]`).
fn possible_values(help: &str, flag: &str) -> Vec<String> {
    let start = help
        .find(&format!("--{flag} "))
        .unwrap_or_else(|| panic!("--{flag} not in help:\n{help}"));
    let rest = &help[start..];
    let list = rest
        .split("[possible values: ")
        .nth(1)
        .and_then(|r| r.split(']').next())
        .unwrap_or_else(|| panic!("--{flag} lists no values:\n{help}"));
    list.split(", ").map(str::to_string).collect()
}

#[test]
fn inspect_help_lists_only_what_a_one_shot_inspection_uses() {
    let daemon = text(&worker(&["--help"], None).stdout);
    let help = worker(&["inspect", "--help"], None);
    assert!(help.status.success());
    let help = text(&help.stdout);
    let daemon_flags = flags(&daemon);
    let inspect_flags = flags(&help);
    // The daemon's flags, less the ones an inspection reads.
    for f in [
        "amqp-url",
        "pool",
        "max-concurrent",
        "worker-id",
        "metrics-addr",
        "shutdown-grace",
        "max-message-bytes",
        "delivery-limit",
        "luks-keys-dir",
        "ca-file",
        "tls-cert",
        "tls-key",
    ] {
        assert!(daemon_flags.contains(&f.to_string()), "--{f} in: {daemon}");
        assert!(!inspect_flags.contains(&f.to_string()), "--{f} in: {help}");
    }
    for f in [
        "image-root",
        "inspect-memory-limit",
        "max-job-timeout",
        "templates-dir",
        "log-level",
        "log-format",
        "format",
        "output",
        "template",
        "disk",
        "key",
        "keys-from-stdin",
        "read-budget",
        "image-url-allow",
        "image-ca-file",
        "remote-timeout",
    ] {
        assert!(
            inspect_flags.contains(&f.to_string()),
            "--{f} not in: {help}"
        );
    }
    // The daemon's templates and formats, all of them.
    let outputs = possible_values(&help, "output");
    let want: Vec<String> = OutputFormat::ALL.iter().map(|f| f.to_string()).collect();
    assert_eq!(outputs, want);
    let templates = possible_values(&help, "template");
    let want: Vec<String> = OutputTemplate::ALL.iter().map(|t| t.to_string()).collect();
    assert_eq!(templates, want);
    // Exit codes: in the help, and the same lines in the README.
    let codes: Vec<&str> = help
        .split("Exit codes:")
        .nth(1)
        .expect("exit codes in the help")
        .lines()
        .filter(|l| l.starts_with("  ") && l.trim_start().starts_with(char::is_numeric))
        .collect();
    assert_eq!(codes.len(), 5, "{help}");
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .unwrap()
        .replace('`', "");
    for line in &codes {
        let (code, what) = line.trim().split_once("  ").unwrap();
        let first = what.split([',', ':', '(']).next().unwrap().trim();
        assert!(
            readme.contains(&format!("| {code} | {first}")),
            "README lacks exit code {code} ({first})"
        );
    }
}

#[test]
fn every_format_name_in_the_help_reads_its_own_format_and_refuses_the_others() {
    let help = text(&worker(&["inspect", "--help"], None).stdout);
    let names = possible_values(&help, "format");
    let dir = tempdir();
    let qcow2 = linux_qcow2(dir.path());
    let images = dir.path().join("images");
    // qemu-img writes each format under its own name; `vhd` is our alias of `vpc`.
    fn qemu(name: &str) -> &str {
        if name == "vhd" {
            "vpc"
        } else {
            name
        }
    }
    for name in names.iter().filter(|n| *n != "qcow2") {
        let out = images.join(format!("disk.{name}"));
        sh(&format!(
            "qemu-img convert -q -O {} {} {}",
            qemu(name),
            qcow2.display(),
            out.display()
        ));
    }
    for name in &names {
        for image in &names {
            let path = images.join(format!("disk.{image}"));
            let out = worker(&["inspect", "--format", name], Some(&path));
            let code = out.status.code();
            if qemu(name) == qemu(image) {
                assert_eq!(code, Some(0), "{name} on {image}: {}", text(&out.stderr));
                let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
                assert_eq!(report["image"]["format"], qemu(image));
            } else {
                assert_eq!(code, Some(3), "{name} on {image}: {}", text(&out.stderr));
            }
        }
    }
    assert!(names.len() >= 7, "{names:?}");
}

#[test]
fn every_output_format_and_template_renders_the_report() {
    let dir = tempdir();
    let image = linux_qcow2(dir.path());
    for format in OutputFormat::ALL {
        for template in OutputTemplate::ALL {
            let out = worker(
                &[
                    "inspect",
                    "--output",
                    format.as_str(),
                    "--template",
                    template.as_str(),
                ],
                Some(&image),
            );
            assert_eq!(
                out.status.code(),
                Some(0),
                "{format} {template}: {}",
                text(&out.stderr)
            );
            let body = text(&out.stdout);
            match format {
                OutputFormat::Json => {
                    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
                    assert_eq!(v["operating_systems"][0]["hostname"], "broker-guest");
                }
                OutputFormat::Yaml => {
                    let v: serde_json::Value = serde_norway::from_str(&body).unwrap();
                    assert_eq!(v["status"], "completed", "{body}");
                    assert!(body.contains("broker-guest"), "{body}");
                }
                OutputFormat::Html | OutputFormat::Text | OutputFormat::Markdown => {
                    assert!(body.contains("completed"), "{format} {template}: {body}");
                    assert!(body.contains("broker-guest"), "{format} {template}: {body}");
                }
            }
        }
    }
}

#[test]
fn exit_codes_say_why_there_is_no_report() {
    let dir = tempdir();
    let image = linux_qcow2(dir.path());
    let code = |args: &[&str], image: Option<&Path>| {
        let out = worker(args, image);
        (out.status.code(), text(&out.stderr))
    };
    assert_eq!(code(&["inspect"], Some(&image)).0, Some(0));
    // 2: usage.
    for args in [
        &["inspect", "--output", "pdf"][..],
        &["inspect", "--template", "huge"],
        &["inspect", "--format", "qed"],
        &["inspect", "--no-such-flag"],
        &["inspect", "--key", "no-file-part"],
    ] {
        let (c, err) = code(args, Some(&image));
        assert_eq!(c, Some(2), "{args:?}: {err}");
    }
    assert_eq!(code(&["inspect"], None).0, Some(2), "no image");
    // 3: the image cannot be read.
    let corrupt = dir.path().join("images/corrupt.qcow2");
    std::fs::copy(&image, &corrupt).unwrap();
    // The L1 table offset pointing far past the end of the file.
    sh(&format!(
        "printf '\\x7f\\xff\\xff\\xff\\xff\\xff\\x00\\x00' | dd of={} bs=1 seek=40 conv=notrunc status=none",
        corrupt.display()
    ));
    let missing = dir.path().join("images/missing.qcow2");
    for (args, path) in [
        (&["inspect"][..], &missing),
        (&["inspect"], &dir.path().join("images")),
        (&["inspect", "--format", "raw"], &image),
        (&["inspect"], &corrupt),
        (&["inspect", "--output", "text"], &corrupt),
    ] {
        let (c, err) = code(args, Some(path));
        assert_eq!(c, Some(3), "{args:?} {path:?}: {err}");
    }
    // 4: stopped by the read budget (the report needs far more than 64 KiB).
    let (c, err) = code(&["inspect", "--read-budget", "64K"], Some(&image));
    assert_eq!(c, Some(4), "{err}");
    assert!(err.contains("read budget"), "{err}");
}
