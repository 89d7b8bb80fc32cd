//! The Python publisher example (pika) against the real worker and broker: another
//! team's way in.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::common::broker::{Pool, WorkerProcess, AMQP_URL, BROKER_LOCK};
use crate::common::{fixture_cache, run, sh, tempdir};

/// A virtualenv with pika, cached between runs.
fn python_with_pika() -> std::path::PathBuf {
    let venv = fixture_cache().join("pika-venv");
    let python = venv.join("bin/python3");
    if !python.exists() {
        run(Command::new("python3").args(["-m", "venv"]).arg(&venv));
        let reqs =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("integration/python/requirements.txt");
        run(Command::new(&python)
            .args(["-m", "pip", "install", "-q", "-r"])
            .arg(reqs));
    }
    python
}

/// A small Linux root (os-release, hostname, passwd) as a raw ext4 disk image.
fn tiny_linux_image(dir: &Path) -> std::path::PathBuf {
    let tree = dir.join("tree");
    let image = dir.join("images/tiny.img");
    sh(&format!(
        r#"mkdir -p {t}/etc {t}/bin {t}/usr/bin {d}/images
        printf 'NAME="Debian GNU/Linux"\nID=debian\nVERSION_ID="12"\nPRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\n' > {t}/etc/os-release
        echo 12.5 > {t}/etc/debian_version
        echo py-guest > {t}/etc/hostname
        printf 'root:x:0:0:root:/root:/bin/bash\nalice:x:1000:1000::/home/alice:/bin/bash\n' > {t}/etc/passwd
        printf '127.0.0.1 localhost\n' > {t}/etc/hosts
        cp /bin/sh {t}/bin/sh
        mkfs.ext4 -q -F -d {t} {i} 32M"#,
        t = tree.display(),
        d = dir.display(),
        i = image.display()
    ));
    image
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pika_publisher_gets_an_inspection_back() {
    let _shared = BROKER_LOCK.read().await;
    let python = python_with_pika();
    let dir = tempdir();
    let image = tiny_linux_image(dir.path());
    let pool = Pool::new("pika").await;
    let roots = dir.path().join("images");
    let _worker = WorkerProcess::spawn(pool.pool(), &["--image-root", roots.to_str().unwrap()]);
    let script =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("integration/python/publish_inspect.py");
    let pool_name = pool.pool().to_string();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(python)
            .arg(script)
            .args([
                "--url",
                AMQP_URL,
                "--pool",
                &pool_name,
                "--timeout",
                "120",
                "--image",
            ])
            .arg(&image)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "publisher failed: {stderr}");
    assert!(stderr.contains("status=completed"), "{stderr}");
    let result: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("json result on stdout");
    assert_eq!(result["status"], "completed");
    let os = &result["output"]["operating_systems"][0];
    assert_eq!(os["distro"], "debian");
    assert_eq!(os["hostname"], "py-guest");
    let users: Vec<&str> = os["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["name"].as_str().unwrap())
        .collect();
    assert_eq!(users, ["root", "alice"]);
    // The same result also went to guestkit.results.
    let on_results = pool.results(1, Duration::from_secs(10)).await;
    assert_eq!(on_results[0].body["job_id"], result["job_id"]);
    pool.cleanup().await;
}
