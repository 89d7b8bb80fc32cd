//! Remote images over HTTP range requests, against a real nginx started here (TLS from a
//! CA this file makes with `openssl`) and a fault-injecting proxy written here.
//!
//! Oracles: the report of the same image inspected from the local file (through the
//! real broker, each job in its isolated child, which reads through the parent's
//! fetcher); the image file's own bytes; nginx's access log (which ranges were asked,
//! and that an allow-list miss or a redirect out of the list made no request).

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use guestkit_worker::inspect::image::http::{HttpError, HttpSource, RemoteConfig, RemoteJob};
use guestkit_worker::inspect::image::http_url::RemoteUrl;
use guestkit_worker::inspect::image::remote::serve_in_thread;
use guestkit_worker::inspect::pipeline::{self, InspectError, InspectOptions};
use guestkit_worker::inspect::source::ReadAt;
use guestkit_worker::inspect::source::ReadError;
use guestkit_worker::ops::image_request::ImageRequest;
use serde_json::{json, Value};

use crate::common::broker::{free_port, Pool, WorkerProcess, BROKER_LOCK};
use crate::common::{run, sh, sha256sum, tempdir, Rng};

/// The signature part of our fake pre-signed URLs: must never show anywhere.
const SECRET: &str = "X-Amz-Signature=s3cr3t0123456789";

/// A CA and a server certificate for 127.0.0.1/localhost, made with openssl.
fn make_ca(dir: &Path) {
    sh(&format!(
        r#"cd {d}
        openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 2 -subj /CN=guestkit-test-ca 2>/dev/null
        openssl req -newkey rsa:2048 -nodes -keyout srv.key -out srv.csr -subj /CN=localhost 2>/dev/null
        printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' > srv.ext
        openssl x509 -req -in srv.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out srv.pem -days 2 -extfile srv.ext 2>/dev/null"#,
        d = dir.display()
    ));
}

/// nginx in the foreground (`daemon off`), killed on drop. `/img/` serves `root`,
/// `/secret/` too (outside every allow-list here), `/out/` redirects to `/secret/`.
pub struct Nginx {
    child: Child,
    pub https: u16,
    pub http: u16,
    dir: PathBuf,
}

impl Nginx {
    pub fn start(root: &Path, dir: &Path) -> Nginx {
        std::fs::create_dir_all(dir).unwrap();
        make_ca(dir);
        let (https, http) = (free_port(), free_port());
        for sub in ["tmp", "logs"] {
            std::fs::create_dir_all(dir.join(sub)).unwrap();
        }
        let d = dir.display();
        let r = root.display();
        let conf = format!(
            r#"daemon off;
master_process off;
user root;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/logs/error.log;
events {{ worker_connections 64; }}
http {{
  log_format ranges '$request_method $uri $status $body_bytes_sent "$http_range"';
  access_log {d}/logs/access.log ranges;
  client_body_temp_path {d}/tmp/body;
  proxy_temp_path {d}/tmp/proxy;
  fastcgi_temp_path {d}/tmp/fastcgi;
  uwsgi_temp_path {d}/tmp/uwsgi;
  scgi_temp_path {d}/tmp/scgi;
  default_type application/octet-stream;
  server {{
    listen 127.0.0.1:{https} ssl;
    listen 127.0.0.1:{http};
    ssl_certificate {d}/srv.pem;
    ssl_certificate_key {d}/srv.key;
    location /img/ {{ alias {r}/; }}
    location /secret/ {{ alias {r}/; }}
    location /out/ {{ return 302 /secret/disk.qcow2; }}
  }}
}}
"#
        );
        std::fs::write(dir.join("nginx.conf"), conf).unwrap();
        let child = Command::new("nginx")
            .arg("-p")
            .arg(dir)
            .arg("-c")
            .arg(dir.join("nginx.conf"))
            .spawn()
            .expect("nginx (Debian package nginx-light)");
        let n = Nginx {
            child,
            https,
            http,
            dir: dir.to_path_buf(),
        };
        for _ in 0..100 {
            if TcpStream::connect(("127.0.0.1", https)).is_ok()
                && TcpStream::connect(("127.0.0.1", http)).is_ok()
            {
                return n;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "nginx did not start: {}",
            std::fs::read_to_string(dir.join("logs/error.log")).unwrap_or_default()
        );
    }

    pub fn ca(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// `(method, uri, status, body bytes, Range header)` of every request so far.
    pub fn log(&self) -> Vec<(String, String, u16, u64, String)> {
        std::fs::read_to_string(self.dir.join("logs/access.log"))
            .unwrap_or_default()
            .lines()
            .map(|l| {
                let (head, range) = l.split_once(" \"").unwrap();
                let f: Vec<&str> = head.split(' ').collect();
                (
                    f[0].to_string(),
                    f[1].to_string(),
                    f[2].parse().unwrap(),
                    f[3].parse().unwrap(),
                    range.trim_end_matches('"').to_string(),
                )
            })
            .collect()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn config(allow: &[String], ca: Option<&Path>, timeout: Duration) -> Arc<RemoteConfig> {
    Arc::new(RemoteConfig::new(allow, ca, timeout).unwrap())
}

/// Inspects `url` with the fetcher on a thread of this process (as the CLI does).
fn inspect_url(
    url: &str,
    config: &Arc<RemoteConfig>,
) -> Result<(Value, pipeline::InspectStats), InspectError> {
    let url = RemoteUrl::parse(url).unwrap();
    let (client, _thread) =
        serve_in_thread(RemoteJob::new(config.clone(), None), url.clone()).expect("fetch thread");
    let opts = InspectOptions {
        remote: Some(client),
        ..Default::default()
    };
    pipeline::inspect_with_stats(Path::new(&url.redacted()), &opts)
        .map(|(r, s)| (serde_json::to_value(r).unwrap(), s))
}

/// A report without the sections that name the file (`image`, `disks`).
fn without_image(mut v: Value) -> Value {
    v["image"] = Value::Null;
    v["disks"] = Value::Null;
    v
}

fn qemu_img(args: &[&str], dir: &Path) {
    run(Command::new("qemu-img").args(args).current_dir(dir));
}

/// Allow-list misses (the job's URL, a backing file named by an allowed image, a
/// redirect), and a server whose CA we do not trust: typed errors, the query nowhere,
/// and nginx's log shows no request for anything outside the list.
#[test]
fn outside_the_allow_list_nothing_is_fetched() {
    let dir = tempdir();
    let image = crate::worker_inspect::linux_qcow2(dir.path());
    let d = image.parent().unwrap().to_path_buf();
    // An allowed image whose backing file is outside the list (same host, /secret/).
    qemu_img(
        &[
            "create",
            "-q",
            "-f",
            "qcow2",
            "-u",
            "-b",
            "/secret/disk.qcow2",
            "-F",
            "qcow2",
            "escape.qcow2",
            "32M",
        ],
        &d,
    );
    let ngx = Nginx::start(&d, &dir.path().join("nginx"));
    let base = format!("https://127.0.0.1:{}/img/", ngx.https);
    let cfg = config(
        std::slice::from_ref(&base),
        Some(&ngx.ca()),
        Duration::from_secs(30),
    );
    let secret_url = format!("https://127.0.0.1:{}/secret/disk.qcow2?{SECRET}", ngx.https);
    for (url, remote) in [
        (secret_url.as_str(), Some(&*cfg)),
        (&format!("{base}disk.qcow2"), None),
    ] {
        let err = ImageRequest::from_data(&json!({"image": {"url": url}}), &[])
            .and_then(|r| r.check_remote(remote))
            .unwrap_err();
        assert_eq!(err.reason, "image_url_not_allowed", "{url}");
        assert!(!err.message.contains("s3cr3t"), "{}", err.message);
    }
    assert_eq!(ngx.log().len(), 0, "an allow-list miss made a request");

    let e = inspect_url(&format!("{base}escape.qcow2?{SECRET}"), &cfg).unwrap_err();
    assert!(
        matches!(
            &e,
            InspectError::Image {
                source: ReadError::BackingOutsideRoots { .. },
                ..
            }
        ),
        "{e}"
    );
    assert!(!e.to_string().contains("s3cr3t"), "{e}");

    let out_cfg = config(
        &[format!("https://127.0.0.1:{}/out/", ngx.https)],
        Some(&ngx.ca()),
        Duration::from_secs(30),
    );
    let e = inspect_url(
        &format!("https://127.0.0.1:{}/out/x?{SECRET}", ngx.https),
        &out_cfg,
    )
    .unwrap_err();
    assert!(
        matches!(
            &e,
            InspectError::Image {
                source: ReadError::Remote(HttpError::Redirect { .. }),
                ..
            }
        ),
        "{e}"
    );
    assert!(!e.to_string().contains("s3cr3t"), "{e}");
    let log = ngx.log();
    assert!(
        log.iter().all(|l| !l.1.starts_with("/secret/")),
        "a request left the allow-list: {log:?}"
    );

    let untrusted = config(std::slice::from_ref(&base), None, Duration::from_secs(5));
    let e = inspect_url(&format!("{base}disk.qcow2?{SECRET}"), &untrusted).unwrap_err();
    assert!(
        e.to_string().contains("TLS") || e.to_string().contains("certificate"),
        "{e}"
    );
    assert!(!e.to_string().contains("s3cr3t"), "{e}");
}

/// What the proxy does to one request.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Fault {
    Pass,
    /// Closes the connection without answering.
    Drop,
    /// Closes with the request unread: the kernel answers with a TCP reset.
    Reset,
    /// Answers after `ms`.
    Delay(u64),
    Status503,
    /// Sends half the body, then closes.
    Short,
    /// Shifts the start of `Content-Range` by one.
    WrongRange,
    /// Answers 200 with the whole object, as a server ignoring `Range`.
    NoRange,
    /// Another ETag: the object was replaced.
    NewEtag,
    /// A correct range, then bytes without end.
    Endless,
    /// Headers, then one byte every 200 ms.
    Slowloris,
}

/// A proxy on 127.0.0.1 in front of nginx's plain-http port, one request per
/// connection, applying the next fault of its script to each.
struct Proxy {
    port: u16,
    script: Arc<Mutex<VecDeque<Fault>>>,
    seen: Arc<Mutex<u64>>,
    /// Connections being served now.
    open: Arc<AtomicUsize>,
}

impl Proxy {
    fn start(upstream: u16) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let script: Arc<Mutex<VecDeque<Fault>>> = Arc::default();
        let seen: Arc<Mutex<u64>> = Arc::default();
        let open: Arc<AtomicUsize> = Arc::default();
        let (s, n, o) = (script.clone(), seen.clone(), open.clone());
        // Detached: it blocks in accept() until the test binary exits.
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let fault = s.lock().unwrap().pop_front().unwrap_or(Fault::Pass);
                *n.lock().unwrap() += 1;
                o.fetch_add(1, Ordering::SeqCst);
                let o = o.clone();
                std::thread::spawn(move || {
                    let _ = serve(conn, upstream, fault);
                    o.fetch_sub(1, Ordering::SeqCst);
                });
            }
        });
        Proxy {
            port,
            script,
            seen,
            open,
        }
    }

    fn then(&self, faults: &[Fault]) {
        let mut s = self.script.lock().unwrap();
        s.clear();
        s.extend(faults);
    }
}

fn read_head(s: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && head.len() < 65536 {
        if s.read(&mut b)? == 0 {
            break;
        }
        head.push(b[0]);
    }
    Ok(head)
}

fn serve(mut client: TcpStream, upstream: u16, fault: Fault) -> std::io::Result<()> {
    if fault == Fault::Reset {
        std::thread::sleep(Duration::from_millis(100));
        return Ok(()); // dropped with the request unread
    }
    let req = read_head(&mut client)?;
    if fault == Fault::Drop {
        return Ok(());
    }
    let mut up = TcpStream::connect(("127.0.0.1", upstream))?;
    let req = String::from_utf8_lossy(&req).replace("\r\n\r\n", "\r\nConnection: close\r\n\r\n");
    up.write_all(req.as_bytes())?;
    let mut resp = Vec::new();
    up.read_to_end(&mut resp)?;
    let split = resp.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    let (head, body) = resp.split_at(split);
    let head = String::from_utf8_lossy(head).to_string();
    let mut lines: Vec<String> = head.trim_end().split("\r\n").map(String::from).collect();
    lines.retain(|l| !l.to_ascii_lowercase().starts_with("connection:"));
    lines.push("Connection: close".into());
    let set = |lines: &mut Vec<String>, name: &str, value: Option<String>| {
        lines.retain(|l| !l.to_ascii_lowercase().starts_with(&format!("{name}:")));
        if let Some(v) = value {
            lines.push(format!("{name}: {v}"));
        }
    };
    let mut body = body.to_vec();
    match fault {
        Fault::Delay(ms) => std::thread::sleep(Duration::from_millis(ms)),
        Fault::Status503 => {
            lines = vec![
                "HTTP/1.1 503 Service Unavailable".into(),
                "Content-Length: 0".into(),
                "Connection: close".into(),
            ];
            body.clear();
        }
        Fault::WrongRange => {
            let cr = lines
                .iter()
                .find(|l| l.to_ascii_lowercase().starts_with("content-range:"))
                .cloned()
                .unwrap();
            let (a, rest) = cr["Content-Range: bytes ".len()..].split_once('-').unwrap();
            let a: u64 = a.parse().unwrap();
            set(
                &mut lines,
                "content-range",
                Some(format!("bytes {}-{rest}", a + 1)),
            );
        }
        Fault::NoRange => {
            let path = req.split(' ').nth(1).unwrap().to_string();
            let mut up = TcpStream::connect(("127.0.0.1", upstream))?;
            write!(
                up,
                "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
            )?;
            let mut all = Vec::new();
            up.read_to_end(&mut all)?;
            client.write_all(&all)?;
            return Ok(());
        }
        Fault::NewEtag => set(&mut lines, "etag", Some("\"replaced-0001\"".into())),
        Fault::Endless => {
            set(&mut lines, "content-length", None);
            client.write_all(format!("{}\r\n\r\n", lines.join("\r\n")).as_bytes())?;
            client.write_all(&body)?;
            loop {
                client.write_all(&[0xAA; 4096])?;
            }
        }
        Fault::Slowloris => {
            client.write_all(format!("{}\r\n\r\n", lines.join("\r\n")).as_bytes())?;
            for b in body {
                client.write_all(&[b])?;
                std::thread::sleep(Duration::from_millis(200));
            }
            return Ok(());
        }
        Fault::Short => body.truncate(body.len() / 2),
        _ => {}
    }
    client.write_all(format!("{}\r\n\r\n", lines.join("\r\n")).as_bytes())?;
    client.write_all(&body)?;
    Ok(())
}

/// Transient faults (drop, reset, delay past the timeout, 503, short body) are retried
/// and the bytes read equal the file's; permanent ones (a wrong Content-Range, a server
/// ignoring Range, a replaced object) and a slowloris that outlasts every retry fail with
/// their own typed error, in bounded time.
#[test]
fn faults_are_retried_or_fail_typed() {
    let dir = tempdir();
    let d = dir.path().join("img");
    std::fs::create_dir_all(&d).unwrap();
    let mut rng = Rng(7);
    let data: Vec<u8> = (0..(3 << 20) + 12345).map(|_| rng.byte()).collect();
    std::fs::write(d.join("blob"), &data).unwrap();
    let ngx = Nginx::start(&d, &dir.path().join("nginx"));
    let proxy = Proxy::start(ngx.http);
    let base = format!("http://127.0.0.1:{}/img/", proxy.port);
    let mut cfg =
        RemoteConfig::new(std::slice::from_ref(&base), None, Duration::from_secs(1)).unwrap();
    cfg.retries = 3;
    cfg.backoff = Duration::from_millis(20);
    let cfg = Arc::new(cfg);
    let url = RemoteUrl::parse(&format!("{base}blob?{SECRET}")).unwrap();
    let open = || HttpSource::open(RemoteJob::new(cfg.clone(), None), url.clone());
    let check = |src: &HttpSource, offset: u64, len: usize| {
        let mut buf = vec![0u8; len];
        src.read_exact_at(offset, &mut buf)?;
        assert!(
            buf == data[offset as usize..offset as usize + len],
            "bytes at {offset}"
        );
        Ok::<(), ReadError>(())
    };

    for transient in [
        Fault::Drop,
        Fault::Reset,
        Fault::Delay(1500),
        Fault::Status503,
        Fault::Short,
    ] {
        proxy.then(&[transient, transient]);
        let src = open().unwrap_or_else(|e| panic!("{transient:?}: {e}"));
        assert_eq!(src.size(), data.len() as u64);
        proxy.then(&[transient, transient]);
        check(&src, 2 << 20, 100_000).unwrap_or_else(|e| panic!("{transient:?}: {e}"));
        check(&src, data.len() as u64 - 10, 10).unwrap();
    }

    // An endless body: exactly the range is read, the rest never.
    proxy.then(&[Fault::Endless]);
    let src = open().unwrap();
    check(&src, 0, 4096).unwrap();

    let src = open().unwrap();
    for (i, (fault, kind)) in [
        (Fault::WrongRange, "remote_bad_content_range"),
        (Fault::NoRange, "remote_range_ignored"),
        (Fault::NewEtag, "remote_image_changed"),
        (Fault::Slowloris, "remote_unavailable"),
    ]
    .into_iter()
    .enumerate()
    {
        proxy.then(&[fault; 8]);
        let before = *proxy.seen.lock().unwrap();
        let t = std::time::Instant::now();
        let offset = (1 << 20) + i as u64 * 300_000; // a block not cached yet
        let e = check(&src, offset, 1000).expect_err(kind);
        let requests = *proxy.seen.lock().unwrap() - before;
        match &e {
            ReadError::Remote(h) => assert_eq!(h.kind(), kind, "{fault:?}: {e}"),
            other => panic!("{fault:?}: {other}"),
        }
        assert!(!e.to_string().contains("s3cr3t"), "{e}");
        // Permanent failures are not retried; a slowloris is, a bounded number of times.
        let expected = if fault == Fault::Slowloris { 4 } else { 1 };
        assert_eq!(requests, expected, "{fault:?}");
        eprintln!(
            "{fault:?}: {e} after {requests} request(s), {:?}",
            t.elapsed()
        );
    }
}

/// A job that times out while the parent fetches for it (a server trickling its body,
/// per-request timeout 300 s): the child is killed, the job fails with `timeout`, and the
/// parent's fetch thread drops the connection within moments and makes no new request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timed_out_job_stops_its_fetcher() {
    let _shared = BROKER_LOCK.read().await;
    let dir = tempdir();
    let d = dir.path().join("img");
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(d.join("blob"), vec![7u8; 1 << 20]).unwrap();
    let ngx = Nginx::start(&d, &dir.path().join("nginx"));
    let proxy = Proxy::start(ngx.http);
    proxy.then(&[Fault::Slowloris; 8]);
    let base = format!("http://127.0.0.1:{}/img/", proxy.port);
    let pool = Pool::new("remote-timeout").await;
    let _worker = WorkerProcess::spawn(
        pool.pool(),
        &[
            "--image-root",
            d.to_str().unwrap(),
            "--image-url-allow",
            &base,
            "--remote-timeout",
            "300",
        ],
    );
    pool.publish(&json!({
        "version": "1.0", "job_id": "job-remote-slow", "kind": "VMOperation",
        "operation": "guestkit.inspect",
        "payload": { "type": "guestkit.inspect.v1",
                     "data": { "image": { "url": format!("{base}blob?{SECRET}") } } },
        "execution": { "max_attempts": 1, "timeout_seconds": 3 },
    }))
    .await;
    let results = pool.results(1, Duration::from_secs(60)).await;
    let r = &results[0].body;
    assert_eq!(
        (r["status"].as_str(), r["error"]["kind"].as_str()),
        (Some("failed"), Some("timeout")),
        "{r:#}"
    );
    assert!(!r.to_string().contains("s3cr3t"));
    // Far below the 300 s the request would otherwise have left (a liveness bound, not
    // a timing).
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while proxy.open.load(Ordering::SeqCst) > 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the parent still fetches for a killed job"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let seen = *proxy.seen.lock().unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        *proxy.seen.lock().unwrap(),
        seen,
        "a request after the job ended"
    );
    pool.cleanup().await;
}

/// The Debian fixture over HTTPS through the real broker, each job in its isolated
/// child (no network) reading through the worker's fetcher: qcow2, a qcow2 overlay whose
/// backing file is a relative name, and every other format give the report of the local
/// qcow2 (but for the sections naming the file); only ranges were asked (all 206), each
/// far less than its image; a checksum job streams the whole object; a URL outside
/// `--image-url-allow` is `rejected` with `image_url_not_allowed` and fetches nothing;
/// the metrics count what nginx served; the query is in no result, log or metric. Then
/// the CLI on the URL gives the same report.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn debian_over_https_through_the_broker_equals_local() {
    let _shared = BROKER_LOCK.read().await;
    let dir = tempdir();
    let d = dir.path().join("img");
    std::fs::create_dir_all(&d).unwrap();
    run(
        Command::new(crate::common::fixtures().join("debian-disk.sh"))
            .arg("bookworm")
            .arg(crate::common::fixture_cache())
            .arg(&d),
    );
    let formats = [
        ("disk.qcow2", "qcow2", ""),
        ("top.qcow2", "qcow2", ""),
        ("d-sparse.vmdk", "vmdk", "subformat=monolithicSparse"),
        ("d-stream.vmdk", "vmdk", "subformat=streamOptimized"),
        ("d-flat.vmdk", "vmdk", "subformat=monolithicFlat"),
        ("d.vhd", "vpc", "subformat=dynamic,force_size=on"),
        ("d.vhdx", "vhdx", "subformat=dynamic"),
        ("d.vdi", "vdi", "static=off"),
    ];
    for (name, fmt, opts) in &formats[2..] {
        qemu_img(
            &[
                "convert",
                "-q",
                "-f",
                "qcow2",
                "-O",
                fmt,
                "-o",
                opts,
                "disk.qcow2",
                name,
            ],
            &d,
        );
    }
    // Backing file named relative to the overlay: resolved next to its URL.
    qemu_img(
        &[
            "create",
            "-q",
            "-f",
            "qcow2",
            "-b",
            "disk.qcow2",
            "-F",
            "qcow2",
            "top.qcow2",
        ],
        &d,
    );
    let sum = sha256sum(&d.join("disk.qcow2"));
    let ngx = Nginx::start(&d, &dir.path().join("nginx"));
    let base = format!("https://127.0.0.1:{}/img/", ngx.https);
    // Job ids are 8 to 128 characters.
    let job = |id: &str, image: Value| {
        json!({
            "version": "1.0", "job_id": format!("job-remote-{id}"), "kind": "VMOperation",
            "operation": "guestkit.inspect",
            "payload": { "type": "guestkit.inspect.v1", "data": { "image": image } },
            "execution": { "max_attempts": 1, "timeout_seconds": 600 },
        })
    };
    let pool = Pool::new("remote").await;
    let log_file = dir.path().join("worker.log");
    let worker = WorkerProcess::spawn_logged(
        pool.pool(),
        &[
            "--image-root",
            d.to_str().unwrap(),
            "--image-url-allow",
            &base,
            "--image-ca-file",
            ngx.ca().to_str().unwrap(),
            "--max-concurrent",
            "2",
        ],
        Some(&log_file),
    );
    pool.publish(&job("local", json!({"path": d.join("disk.qcow2")})))
        .await;
    for (name, _, _) in &formats {
        let url = format!("{base}{name}?{SECRET}");
        pool.publish(&job(name, json!({ "url": url }))).await;
    }
    let sum_url = format!("{base}disk.qcow2?{SECRET}");
    pool.publish(&job(
        "sum",
        json!({"url": sum_url, "checksum": format!("sha256:{sum}")}),
    ))
    .await;
    let denied = format!("https://127.0.0.1:{}/secret/disk.qcow2?{SECRET}", ngx.https);
    pool.publish(&job("denied", json!({ "url": denied }))).await;
    let results = pool
        .results(formats.len() + 3, Duration::from_secs(900))
        .await;
    let get = |id: &str| {
        results
            .iter()
            .find(|r| r.body["job_id"] == format!("job-remote-{id}"))
            .unwrap_or_else(|| panic!("{id}"))
            .body
            .clone()
    };
    for r in &results {
        assert!(
            !r.body.to_string().contains("s3cr3t"),
            "query leaked: {:#}",
            r.body
        );
    }
    let local = get("local");
    assert_eq!(local["status"], "completed", "{local:#}");
    let expected = without_image(local["output"].clone());
    assert!(
        expected["operating_systems"][0]["applications"]
            .as_array()
            .is_some_and(|a| a.len() > 50),
        "the fixture's report has its packages"
    );
    for (name, fmt, _) in &formats {
        let r = get(name);
        assert_eq!(r["status"], "completed", "{name}: {r:#}");
        let report = &r["output"];
        let image = &report["image"];
        assert_eq!(image["url"], format!("{base}{name}"), "{name}");
        assert_eq!(image["format"], *fmt, "{name}");
        assert!(
            without_image(report.clone()) == expected,
            "{name}: report differs from the local one"
        );
        // The image with the files it reads: a flat VMDK's extent, the overlay's backing.
        let flat = name
            .strip_suffix(".vmdk")
            .map(|s| d.join(format!("{s}-flat.vmdk")));
        let backing = (*name == "top.qcow2").then(|| d.join("disk.qcow2"));
        let size: u64 = [Some(d.join(name)), flat, backing]
            .into_iter()
            .flatten()
            .filter_map(|p| std::fs::metadata(p).ok())
            .map(|m| m.len())
            .sum();
        let fetched = image["bytes_fetched"].as_u64().unwrap();
        assert!(
            fetched * 4 < size,
            "{name}: fetched {fetched} of {size} bytes"
        );
        eprintln!("{name:>14}: {fetched} bytes fetched of a {size}-byte image");
        if *name == "top.qcow2" {
            assert_eq!(image["backing_chain"][0], format!("{base}disk.qcow2"));
        }
    }
    // A checksum costs a full read of the object.
    let summed = get("sum");
    assert_eq!(summed["status"], "completed", "{summed:#}");
    assert_eq!(summed["output"]["image"]["sha256"], sum.as_str());
    let size = std::fs::metadata(d.join("disk.qcow2")).unwrap().len();
    assert!(summed["output"]["image"]["bytes_fetched"].as_u64().unwrap() >= size);
    let denied = get("denied");
    assert_eq!(
        (denied["status"].as_str(), denied["error"]["kind"].as_str()),
        (Some("rejected"), Some("image_url_not_allowed")),
        "{denied:#}"
    );

    let log = ngx.log();
    assert!(log.iter().all(|l| !l.1.starts_with("/secret/")), "{log:?}");
    assert!(
        log.iter()
            .all(|(m, _, st, _, range)| m == "GET" && *st == 206 && range.starts_with("bytes=")),
        "a request that was not a 206 range: {log:?}"
    );
    let served: u64 = log.iter().map(|l| l.3).sum();
    let (_, metrics) = worker.http_get("/metrics").await.expect("metrics");
    let value = |name: &str| {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or_else(|| panic!("{name} missing"))
    };
    assert_eq!(value("guestkit_remote_bytes_total"), served);
    assert_eq!(value("guestkit_remote_requests_total"), log.len() as u64);
    assert!(!metrics.contains("s3cr3t"));
    drop(worker);
    pool.cleanup().await;
    let logged = std::fs::read_to_string(&log_file).unwrap();
    assert!(
        logged.contains("/img/"),
        "the worker logged its requests' host and path"
    );
    assert!(!logged.contains("s3cr3t"), "query in the worker's log");

    // The CLI: its fetch thread, its sandboxed inspection, the same report.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_guestkit-worker"))
        .args([
            "inspect",
            &format!("{base}top.qcow2?{SECRET}"),
            "--image-ca-file",
        ])
        .arg(ngx.ca())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!String::from_utf8_lossy(&out.stderr).contains("s3cr3t"));
    let cli: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(without_image(cli.clone()) == expected, "CLI report differs");
    assert_eq!(cli["image"]["url"], format!("{base}top.qcow2"));
}
