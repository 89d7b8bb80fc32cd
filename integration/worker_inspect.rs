//! `guestkit.inspect` through the broker: image roots, checksums, corrupt images, and
//! the broker-less `inspect` subcommand.

use std::path::Path;
use std::time::Duration;

use serde_json::json;

use crate::common::broker::{Pool, WorkerProcess, BROKER_LOCK};
use crate::common::{run, sh, sha256sum, tempdir};

fn inspect_job(job_id: &str, image: serde_json::Value) -> serde_json::Value {
    json!({
        "version": "1.0", "job_id": job_id, "kind": "VMOperation",
        "operation": "guestkit.inspect",
        "payload": { "type": "guestkit.inspect.v1", "data": { "image": image } },
        "execution": { "max_attempts": 1 },
    })
}

/// A GPT disk holding one ext4 root with a small Linux tree, as qcow2.
pub(crate) fn linux_qcow2(dir: &Path) -> std::path::PathBuf {
    sh(&format!(
        r#"cd {d}; mkdir -p tree/etc tree/bin images
        printf 'ID=alpine\nVERSION_ID=3.19.1\nPRETTY_NAME="Alpine Linux v3.19"\n' > tree/etc/os-release
        echo 3.19.1 > tree/etc/alpine-release
        echo broker-guest > tree/etc/hostname
        printf 'root:x:0:0:root:/root:/bin/ash\n' > tree/etc/passwd
        printf '/dev/sda1 / ext4 defaults 0 1\n' > tree/etc/fstab
        cp /bin/sh tree/bin/sh
        mkfs.ext4 -q -F -d tree root.ext4 24M
        truncate -s 32M disk.raw
        printf 'label: gpt\nstart=2048, size=49152, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4\n' | sfdisk -q disk.raw
        dd if=root.ext4 of=disk.raw bs=512 seek=2048 conv=notrunc status=none
        qemu-img convert -q -c -O qcow2 disk.raw images/disk.qcow2"#,
        d = dir.display()
    ));
    dir.join("images/disk.qcow2")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inspect_jobs_complete_fail_or_reject_as_the_contract_says() {
    let _shared = BROKER_LOCK.read().await;
    let dir = tempdir();
    let image = linux_qcow2(dir.path());
    let roots = dir.path().join("images");
    // A corrupt copy: the qcow2 L1 table offset pointing far past the end of the file.
    let corrupt = roots.join("corrupt.qcow2");
    std::fs::copy(&image, &corrupt).unwrap();
    sh(&format!("printf '\\x7f\\xff\\xff\\xff\\xff\\xff\\x00\\x00' | dd of={} bs=1 seek=40 conv=notrunc status=none", corrupt.display()));
    std::os::unix::fs::symlink("/etc/passwd", roots.join("escape.img")).unwrap();
    let sum = sha256sum(&image);

    let pool = Pool::new("inspect").await;
    let _worker = WorkerProcess::spawn(pool.pool(), &["--image-root", roots.to_str().unwrap()]);
    pool.publish(&inspect_job(
        "job-inspect-good",
        json!({"path": image, "format": "qcow2", "checksum": format!("sha256:{sum}")}),
    ))
    .await;
    pool.publish(&inspect_job(
        "job-inspect-badsum",
        json!({"path": image, "checksum": format!("sha256:{}", "0".repeat(64))}),
    ))
    .await;
    pool.publish(&inspect_job(
        "job-inspect-format",
        json!({"path": image, "format": "raw"}),
    ))
    .await;
    pool.publish(&inspect_job(
        "job-inspect-corrupt",
        json!({"path": corrupt}),
    ))
    .await;
    pool.publish(&inspect_job(
        "job-inspect-escape",
        json!({"path": roots.join("escape.img")}),
    ))
    .await;
    pool.publish(&inspect_job(
        "job-inspect-outside",
        json!({"path": "/etc/hostname"}),
    ))
    .await;

    let results = pool.results(6, Duration::from_secs(120)).await;
    let get = |id: &str| {
        results
            .iter()
            .find(|r| r.body["job_id"] == id)
            .unwrap_or_else(|| panic!("{id}"))
            .body
            .clone()
    };

    let good = get("job-inspect-good");
    assert_eq!(good["status"], "completed", "{good:#}");
    let report = &good["output"];
    assert_eq!(report["image"]["format"], "qcow2");
    assert_eq!(report["image"]["sha256"], sum.as_str());
    assert_eq!(report["partition_table"], "gpt");
    let os = &report["operating_systems"][0];
    assert_eq!(
        (os["distro"].as_str(), os["hostname"].as_str()),
        (Some("alpine"), Some("broker-guest"))
    );

    let badsum = get("job-inspect-badsum");
    assert_eq!(
        (badsum["status"].as_str(), badsum["error"]["kind"].as_str()),
        (Some("failed"), Some("checksum_mismatch"))
    );
    let format = get("job-inspect-format");
    assert_eq!(format["status"], "failed");
    assert!(
        format["error"]["message"]
            .as_str()
            .unwrap()
            .contains("qcow2"),
        "{format:#}"
    );
    let corrupt = get("job-inspect-corrupt");
    assert_eq!(
        (
            corrupt["status"].as_str(),
            corrupt["error"]["kind"].as_str()
        ),
        (Some("failed"), Some("image_error"))
    );
    assert!(
        corrupt["error"]["message"]
            .as_str()
            .unwrap()
            .contains("offset"),
        "precise message: {corrupt:#}"
    );
    for id in ["job-inspect-escape", "job-inspect-outside"] {
        let r = get(id);
        assert_eq!(
            (r["status"].as_str(), r["error"]["kind"].as_str()),
            (Some("rejected"), Some("image_outside_root")),
            "{r:#}"
        );
    }
    pool.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn html_output_travels_with_its_content_type_and_headers() {
    let _shared = BROKER_LOCK.read().await;
    let dir = tempdir();
    let image = linux_qcow2(dir.path());
    let roots = dir.path().join("images");
    let pool = Pool::new("html").await;
    let _worker = WorkerProcess::spawn(pool.pool(), &["--image-root", roots.to_str().unwrap()]);
    let mut job = inspect_job("job-inspect-html", json!({"path": image}));
    job["payload"]["data"]["output"] = json!({"format": "html", "template": "detailed"});
    pool.publish(&job).await;
    let raw = pool.results(1, Duration::from_secs(60)).await.remove(0);
    assert_eq!(raw.content_type.as_deref(), Some("text/html"));
    assert_eq!(raw.headers["x-guestkit-format"], "html");
    assert_eq!(raw.headers["x-guestkit-status"], "completed");
    assert_eq!(raw.headers["x-guestkit-job-id"], "job-inspect-html");
    assert!(!raw.headers.contains_key("x-guestkit-render-error"));
    let page = String::from_utf8(raw.data.clone()).unwrap();
    assert!(
        page.trim_start()
            .to_ascii_lowercase()
            .starts_with("<!doctype html"),
        "{}",
        &page[..200.min(page.len())]
    );
    assert!(page.contains("broker-guest"), "the report is in the page");
    assert_eq!(
        raw.routing_key,
        format!("{}.completed.guestkit.inspect", pool.pool())
    );
    pool.cleanup().await;
}

#[test]
fn inspect_subcommand_prints_the_report_without_a_broker() {
    let dir = tempdir();
    let image = linux_qcow2(dir.path());
    let out = run(
        std::process::Command::new(env!("CARGO_BIN_EXE_guestkit-worker"))
            .arg("inspect")
            .arg(&image),
    );
    let report: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(report["operating_systems"][0]["hostname"], "broker-guest");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_guestkit-worker"))
        .args(["inspect", "--format", "raw"])
        .arg(&image)
        .output()
        .unwrap();
    assert!(!out.status.success(), "asserted format mismatch fails");
}
