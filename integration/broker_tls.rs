//! TLS to the broker: a private node with a TLS listener that requires client
//! certificates, a CA and certificates made by openssl, the worker on `amqps://`.

use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::json;

use crate::common::broker::{echo_job, Pool, WorkerProcess};
use crate::common::rabbit_node::PrivateNode;

/// `--ca-file`, `--tls-cert`, `--tls-key` for the node's own CA and client certificate.
fn tls_args(node: &PrivateNode) -> Vec<String> {
    let c = &node.certs;
    [
        ("--ca-file", &c.ca),
        ("--tls-cert", &c.client_cert),
        ("--tls-key", &c.client_key),
    ]
    .iter()
    .flat_map(|(flag, path)| [flag.to_string(), path.display().to_string()])
    .collect()
}

/// The worker on `amqps://localhost` with the private CA and a client certificate runs
/// a job; the broker reports its connections as TLS with the client certificate's
/// subject (the oracle is the broker, not our code).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_runs_jobs_over_tls_with_a_private_ca_and_client_certificate() {
    let node = PrivateNode::shared();
    let pool = Pool::on(Some(node.clone()), &node.url("guest", "guest"), "tls").await;
    let worker_id = format!("tls-worker-{}", pool.pool());
    let mut args = tls_args(&node);
    args.extend(["--worker-id".to_string(), worker_id.clone()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let worker = WorkerProcess::spawn_on(
        &node.tls_url("localhost", "guest", "guest"),
        pool.pool(),
        &args,
    );
    worker.wait_ready(Duration::from_secs(60)).await;
    pool.publish(&echo_job("job-tls-1", json!({"secret": "over tls"})))
        .await;
    let got = pool.results(1, Duration::from_secs(30)).await;
    assert_eq!(got[0].body["status"], "completed");
    assert_eq!(got[0].body["output"]["secret"], "over tls");

    let conns = node.ctl(&[
        "list_connections",
        "-q",
        "--no-table-headers",
        "client_properties",
        "ssl",
        "peer_cert_subject",
    ]);
    let worker_conns: Vec<&str> = conns.lines().filter(|l| l.contains(&worker_id)).collect();
    // The consumer's and the publisher's connections.
    assert_eq!(worker_conns.len(), 2, "{conns}");
    for line in worker_conns {
        assert!(line.contains("true"), "not TLS: {line}");
        assert!(line.contains("CN=guestkit-worker"), "{line}");
    }
    pool.cleanup().await;
}

/// Runs `guestkit-worker declare` against `url` with `args`; (success, stderr). It
/// must end by itself well before its 60 s connect deadline: a certificate problem
/// is not retried.
async fn declare(url: String, args: Vec<String>) -> (bool, String) {
    tokio::task::spawn_blocking(move || {
        let mut child = Command::new(env!("CARGO_BIN_EXE_guestkit-worker"))
            .args(["declare", "--pool", "tls-fail"])
            .args(&args)
            .env("GUESTKIT_AMQP_URL", &url)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while child.try_wait().unwrap().is_none() {
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                let out = child.wait_with_output().unwrap();
                panic!(
                    "declare kept retrying a TLS failure ({url} {args:?}):\n{}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let out = child.wait_with_output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    })
    .await
    .unwrap()
}

/// Each certificate problem fails at once with an error that names it, and nothing
/// ever connects in plain text instead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_failures_name_the_certificate_problem_and_never_fall_back() {
    let node = PrivateNode::shared();
    let good = tls_args(&node);
    let url = node.tls_url("localhost", "guest", "guest");

    let (ok, err) = declare(url.clone(), good.clone()).await;
    assert!(ok, "the right CA and certificate work: {err}");

    // A CA that did not sign the broker's certificate.
    let mut wrong_ca = good.clone();
    wrong_ca[1] = node.certs.other_ca.display().to_string();
    let (ok, err) = declare(url.clone(), wrong_ca).await;
    assert!(!ok);
    assert!(
        err.contains("TLS handshake with the broker failed"),
        "{err}"
    );
    assert!(err.contains("UnknownIssuer"), "{err}");

    // The right CA, but a host the certificate does not name (it names localhost).
    let (ok, err) = declare(node.tls_url("127.0.0.1", "guest", "guest"), good.clone()).await;
    assert!(!ok);
    assert!(err.contains("not valid for name"), "{err}");
    assert!(err.contains("127.0.0.1"), "{err}");

    // No client certificate for a broker that requires one.
    let (ok, err) = declare(url.clone(), good[..2].to_vec()).await;
    assert!(!ok);
    assert!(
        err.contains("TLS handshake with the broker failed"),
        "{err}"
    );
    assert!(err.contains("CertificateRequired"), "{err}");

    // No CA at all: the system's roots do not know the private CA.
    let (ok, err) = declare(url.clone(), good[2..].to_vec()).await;
    assert!(!ok);
    assert!(err.contains("UnknownIssuer"), "{err}");

    // TLS files with a plain URL: refused before any connection.
    let (ok, err) = declare(node.url("guest", "guest"), good.clone()).await;
    assert!(!ok);
    assert!(
        err.contains("refusing to talk to the broker in plain text"),
        "{err}"
    );

    let admin = crate::common::broker::connect_to(&node.url("guest", "guest")).await;
    let ch = admin.create_channel().await.unwrap();
    let names = guestkit_worker::broker::topology::PoolNames::new("tls-fail");
    for q in [&names.jobs, &names.retry, &names.dead] {
        let _ = ch.queue_delete(q.as_str().into(), Default::default()).await;
    }
}
