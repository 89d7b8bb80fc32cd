//! Least-privilege users: the README's `rabbitmqctl` lines, applied as written on a
//! private broker node, and each user's boundary tried from both sides (what it needs
//! works, what it must not do is refused by the broker).

use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use guestkit_worker::broker::topology::{reply_code, PoolNames, JOBS_EXCHANGE, RESULTS_EXCHANGE};
use lapin::options::*;
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection, ExchangeKind};
use serde_json::json;

use crate::common::broker::{connect_to, echo_job, Pool, WorkerProcess};
use crate::common::rabbit_node::PrivateNode;

/// One user of the README's permission block.
struct ReadmeUser {
    role: String,
    tags: Vec<String>,
    /// configure, write, read.
    perms: [String; 3],
}

/// Splits a shell line into words: single quotes group (the README quotes every
/// regex), `"$VAR"` stays a word.
fn shell_words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut in_word = false;
    for c in line.chars() {
        match c {
            '\'' => {
                quoted = !quoted;
                in_word = true;
            }
            c if c.is_whitespace() && !quoted => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                }
                in_word = false;
            }
            c => {
                cur.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        words.push(cur);
    }
    words
}

/// The users of README's "Users and permissions" block, `<pool>` replaced by `pool`.
fn readme_users(pool: &str) -> Vec<ReadmeUser> {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let mut users: Vec<ReadmeUser> = Vec::new();
    for line in readme.lines() {
        let w = shell_words(&line.replace("<pool>", pool));
        match w.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
            ["rabbitmqctl", "set_user_tags", user, tags @ ..] => users.push(ReadmeUser {
                role: user.trim_start_matches("guestkit-").to_string(),
                tags: tags.iter().map(|t| t.to_string()).collect(),
                perms: Default::default(),
            }),
            ["rabbitmqctl", "set_permissions", "-p", "/", user, c, w, r] => {
                let role = user.trim_start_matches("guestkit-");
                let u = users
                    .iter_mut()
                    .find(|u| u.role == role)
                    .expect("set_user_tags comes first");
                u.perms = [c.to_string(), w.to_string(), r.to_string()];
            }
            _ => {}
        }
    }
    let roles: Vec<&str> = users.iter().map(|u| u.role.as_str()).collect();
    assert_eq!(roles, ["worker", "publisher", "monitoring", "operator"]);
    users
}

/// The README's users created on `node` for `pool`, each named `<role>-<pool>` (tests
/// run at once on one node) with its name as password; returns role -> user name.
fn create_users(node: &PrivateNode, pool: &str) -> std::collections::HashMap<String, String> {
    let mut names = std::collections::HashMap::new();
    for u in readme_users(pool) {
        let name = format!("{}-{pool}", u.role);
        let tags: Vec<&str> = u.tags.iter().map(String::as_str).collect();
        let [c, w, r] = &u.perms;
        node.add_user(&name, &tags, Some([c.as_str(), w.as_str(), r.as_str()]));
        names.insert(u.role, name);
    }
    names
}

/// Waits for `op` to fail and returns the broker's reply code (403 access refused, 405
/// resource locked); panics if the broker allowed it.
async fn refused<T>(op: impl std::future::Future<Output = lapin::Result<T>>) -> u16 {
    match op.await {
        Ok(_) => panic!("the broker allowed what it must refuse"),
        Err(err) => reply_code(&err).unwrap_or_else(|| panic!("not a broker refusal: {err}")),
    }
}

/// Publishes one message on a fresh confirm channel: `Ok` when the broker took it,
/// else the reply code of the channel error.
async fn try_publish(conn: &Connection, exchange: &str, key: &str) -> Result<(), u16> {
    let ch = conn.create_channel().await.unwrap();
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    let sent = async {
        ch.basic_publish(
            exchange.into(),
            key.into(),
            BasicPublishOptions::default(),
            b"{}",
            BasicProperties::default(),
        )
        .await?
        .await
    }
    .await;
    match sent {
        Ok(confirm) if confirm.is_ack() => Ok(()),
        Ok(_) => Err(0),
        Err(err) => Err(reply_code(&err).unwrap_or(0)),
    }
}

async fn channel(conn: &Connection) -> Channel {
    conn.create_channel().await.unwrap()
}

async fn consume(ch: &Channel, queue: &str) -> lapin::Result<lapin::Consumer> {
    ch.basic_consume(
        queue.into(),
        "".into(),
        BasicConsumeOptions::default(),
        FieldTable::default(),
    )
    .await
}

/// A pool on the private node, its topology declared by the node's administrator
/// (`guest`), and the README's users for it.
async fn pool_with_users(
    name: &str,
) -> (
    Arc<PrivateNode>,
    Pool,
    std::collections::HashMap<String, String>,
) {
    let node = PrivateNode::shared();
    let pool = Pool::on(Some(node.clone()), &node.url("guest", "guest"), name).await;
    let users = create_users(&node, pool.pool());
    (node, pool, users)
}

fn user_url(node: &PrivateNode, user: &str) -> String {
    node.url(user, user)
}

/// The worker with only the worker user's rights runs the delivery paths: results,
/// progress events, retries through the retry queue, a rejected message, a reply by
/// direct reply-to and one to `submit --wait`'s server-named queue, both requested by
/// the publisher user. The operator user declares a pool of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_with_least_privilege_delivers_retries_and_replies() {
    let (node, pool, users) = pool_with_users("lpwork").await;
    let worker_url = user_url(&node, &users["worker"]);
    let worker = WorkerProcess::spawn_on(&worker_url, pool.pool(), &[]);
    worker.wait_ready(Duration::from_secs(60)).await;

    // The publisher user publishes the jobs.
    let publisher = connect_to(&user_url(&node, &users["publisher"])).await;
    let ch = channel(&publisher).await;
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    let mut jobs = Vec::new();
    for i in 0..20 {
        jobs.push(echo_job(&format!("job-lp-{i:02}"), json!({ "i": i })));
    }
    let mut retried = echo_job("job-lp-retry", json!({"succeed_on_attempt": 3}));
    retried["execution"] = json!({"max_attempts": 3});
    jobs.push(retried);
    for job in &jobs {
        let confirm = ch
            .basic_publish(
                JOBS_EXCHANGE.into(),
                pool.pool().into(),
                BasicPublishOptions::default(),
                &serde_json::to_vec(job).unwrap(),
                BasicProperties::default().with_delivery_mode(2),
            )
            .await
            .unwrap()
            .await
            .unwrap();
        assert!(confirm.is_ack());
    }
    pool.publish_raw(b"not json", BasicProperties::default())
        .await;
    let results = pool.results(22, Duration::from_secs(90)).await;
    let mut completed = 0;
    for r in &results {
        match r.body["job_id"].as_str() {
            Some("job-lp-retry") => {
                assert_eq!(r.body["status"], "completed");
                assert_eq!(r.body["attempt"], 3, "two retries through the retry queue");
            }
            Some(id) if id.starts_with("job-lp-") => {
                assert_eq!(r.body["status"], "completed", "{:?}", r.body);
                completed += 1;
            }
            _ => assert_eq!(r.body["status"], "rejected", "{:?}", r.body),
        }
    }
    assert_eq!(completed, 20);
    pool.wait_events("finished", 20, Duration::from_secs(30))
        .await;

    // Direct reply-to, asked for by the publisher user.
    let replies = ch
        .basic_consume(
            "amq.rabbitmq.reply-to".into(),
            "".into(),
            BasicConsumeOptions {
                no_ack: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await;
    let mut replies = replies.expect("direct reply-to needs no permission");
    ch.basic_publish(
        JOBS_EXCHANGE.into(),
        pool.pool().into(),
        BasicPublishOptions::default(),
        &serde_json::to_vec(&echo_job("job-lp-direct", json!({"r": 1}))).unwrap(),
        BasicProperties::default().with_reply_to("amq.rabbitmq.reply-to".into()),
    )
    .await
    .unwrap();
    let reply = tokio::time::timeout(Duration::from_secs(30), replies.next())
        .await
        .expect("a reply in time")
        .unwrap()
        .unwrap();
    let reply: serde_json::Value = serde_json::from_slice(&reply.data).unwrap();
    assert_eq!(reply["job_id"], "job-lp-direct");

    // `submit --wait` as the publisher user: an exclusive server-named reply queue.
    let pool_name = pool.pool().to_string();
    let publisher_url = user_url(&node, &users["publisher"]);
    let out = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_guestkit-worker"))
            .args([
                "submit",
                "--operation",
                "system.echo",
                "--data",
                "{\"w\":2}",
            ])
            .args(["--wait", "--wait-timeout", "60", "--pool", &pool_name])
            .env("GUESTKIT_AMQP_URL", publisher_url)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(printed["output"]["w"], 2);

    pool.wait_drained(Duration::from_secs(30)).await;
    pool.wait_counts(&pool.names.retry, (0, 0), Duration::from_secs(10))
        .await;
    // The rejected message, dead-lettered through the queue's DLX.
    pool.wait_counts(&pool.names.dead, (1, 0), Duration::from_secs(10))
        .await;
    // The results of the two replies also went to guestkit.results.
    pool.results(2, Duration::from_secs(30)).await;

    // The operator user declares another pool from nothing but its rights.
    let other = PoolNames::new(&format!("{}-op", pool.pool()));
    let op_url = user_url(&node, &users["operator"]);
    let other_pool = other.pool.clone();
    let status = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_guestkit-worker"))
            .args(["declare", "--pool", &other_pool])
            .env("GUESTKIT_AMQP_URL", op_url)
            .status()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(status.success(), "declare as the operator user");
    for q in [&other.jobs, &other.retry, &other.dead] {
        assert_eq!(node.queue_counts(q), (0, 0));
    }
    let bindings = node.ctl(&[
        "list_bindings",
        "-q",
        "--no-table-headers",
        "source_name",
        "destination_name",
    ]);
    assert!(
        bindings
            .lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>()
                == [JOBS_EXCHANGE, other.jobs.as_str()]),
        "{bindings}"
    );
    let admin = connect_to(&node.url("guest", "guest")).await;
    let ach = channel(&admin).await;
    for q in [&other.jobs, &other.retry, &other.dead] {
        ach.queue_delete(q.as_str().into(), QueueDeleteOptions::default())
            .await
            .unwrap();
    }
    pool.cleanup().await;
}

/// What the worker user must not do, whatever a bug or a job made it try.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_user_is_confined_to_its_pool() {
    let (node, pool, users) = pool_with_users("lpconf").await;
    let victim = Pool::on(Some(node.clone()), &node.url("guest", "guest"), "lpvict").await;
    let conn = connect_to(&user_url(&node, &users["worker"])).await;

    // No job injection through the jobs exchange, into any pool.
    assert_eq!(
        try_publish(&conn, JOBS_EXCHANGE, victim.pool()).await,
        Err(403)
    );
    assert_eq!(
        try_publish(&conn, JOBS_EXCHANGE, pool.pool()).await,
        Err(403)
    );
    // Results and events it may write.
    assert_eq!(
        try_publish(&conn, RESULTS_EXCHANGE, "x.completed.y").await,
        Ok(())
    );
    // Another pool's queues: no consuming, no declaring, no deleting.
    let ch = channel(&conn).await;
    assert_eq!(refused(consume(&ch, &victim.names.jobs)).await, 403);
    let ch = channel(&conn).await;
    assert_eq!(
        refused(ch.queue_declare(
            victim.names.dead.as_str().into(),
            QueueDeclareOptions {
                durable: true,
                ..Default::default()
            },
            FieldTable::default(),
        ))
        .await,
        403
    );
    let ch = channel(&conn).await;
    assert_eq!(
        refused(ch.queue_delete(
            victim.names.jobs.as_str().into(),
            QueueDeleteOptions::default()
        ))
        .await,
        403
    );
    // Its own dead-letter queue it may declare but not read.
    let ch = channel(&conn).await;
    assert_eq!(refused(consume(&ch, &pool.names.dead)).await, 403);
    // No reading results: binding its own queue to guestkit.results needs read there.
    let ch = channel(&conn).await;
    assert_eq!(
        refused(ch.queue_bind(
            pool.names.dead.as_str().into(),
            RESULTS_EXCHANGE.into(),
            "#".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        ))
        .await,
        403
    );
    // No changing the exchanges.
    let ch = channel(&conn).await;
    assert_eq!(
        refused(ch.exchange_delete(RESULTS_EXCHANGE.into(), ExchangeDeleteOptions::default()))
            .await,
        403
    );
    let ch = channel(&conn).await;
    assert_eq!(
        refused(ch.exchange_declare(
            "guestkit.other".into(),
            ExchangeKind::Fanout,
            ExchangeDeclareOptions::default(),
            FieldTable::default(),
        ))
        .await,
        403
    );
    // What RabbitMQ cannot confine (README): the default exchange is checked as
    // `amq.default`, whatever queue the routing key names. The worker's reply_to rule
    // is the guard; this documents why it is needed.
    assert_eq!(try_publish(&conn, "", &victim.names.jobs).await, Ok(()));
    victim
        .wait_counts(&victim.names.jobs, (1, 0), Duration::from_secs(10))
        .await;
    pool.cleanup().await;
    victim.cleanup().await;
}

/// The publisher user publishes jobs and reads its own replies, nothing more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publisher_cannot_read_results_declare_or_consume_jobs() {
    let (node, pool, users) = pool_with_users("lppub").await;
    let conn = connect_to(&user_url(&node, &users["publisher"])).await;

    assert_eq!(try_publish(&conn, JOBS_EXCHANGE, pool.pool()).await, Ok(()));
    pool.wait_counts(&pool.names.jobs, (1, 0), Duration::from_secs(10))
        .await;
    // Jobs: neither consumed nor fetched nor purged.
    let ch = channel(&conn).await;
    assert_eq!(refused(consume(&ch, &pool.names.jobs)).await, 403);
    let ch = channel(&conn).await;
    assert_eq!(
        refused(ch.basic_get(pool.names.jobs.as_str().into(), BasicGetOptions::default())).await,
        403
    );
    let ch = channel(&conn).await;
    assert_eq!(
        refused(ch.queue_purge(
            pool.names.jobs.as_str().into(),
            QueuePurgeOptions::default()
        ))
        .await,
        403
    );
    // Results of others: a reply queue of its own may not be bound to guestkit.results,
    // and the test's results queue may not be consumed.
    let ch = channel(&conn).await;
    let own = ch
        .queue_declare(
            "".into(),
            QueueDeclareOptions {
                exclusive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .expect("a server-named reply queue is allowed");
    assert_eq!(
        refused(ch.queue_bind(
            own.name().clone(),
            RESULTS_EXCHANGE.into(),
            "#".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        ))
        .await,
        403
    );
    let ch = channel(&conn).await;
    assert_eq!(
        refused(consume(&ch, &format!("{}.test-results", pool.names.jobs))).await,
        403
    );
    // Another client's exclusive reply queue: locked by RabbitMQ.
    let other = connect_to(&user_url(&node, &users["publisher"])).await;
    let och = channel(&other).await;
    let theirs = och
        .queue_declare(
            "".into(),
            QueueDeclareOptions {
                exclusive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    let ch = channel(&conn).await;
    assert_eq!(refused(consume(&ch, theirs.name().as_str())).await, 405);
    // No declaring: neither guestkit queues nor exchanges, nor a named queue.
    for q in [
        pool.names.retry.as_str(),
        "guestkit.jobs.new-pool",
        "my-queue",
    ] {
        let ch = channel(&conn).await;
        assert_eq!(
            refused(ch.queue_declare(
                q.into(),
                QueueDeclareOptions::default(),
                FieldTable::default()
            ))
            .await,
            403,
            "{q}"
        );
    }
    let ch = channel(&conn).await;
    assert_eq!(
        refused(ch.exchange_declare(
            JOBS_EXCHANGE.into(),
            ExchangeKind::Direct,
            ExchangeDeclareOptions {
                durable: true,
                ..Default::default()
            },
            FieldTable::default(),
        ))
        .await,
        403
    );
    // No writing anywhere but guestkit.jobs, the default exchange included.
    assert_eq!(try_publish(&conn, "", &pool.names.retry).await, Err(403));
    assert_eq!(
        try_publish(&conn, RESULTS_EXCHANGE, "x.completed.y").await,
        Err(403)
    );
    pool.cleanup().await;
}

/// GET on the node's management API with `curl` (as KEDA's http client does: basic
/// auth, the vhost escaped in the path); (status, body).
fn management_get(node: &PrivateNode, user: &str, path: &str) -> (u16, String) {
    management(node, user, "GET", path, None)
}

fn management(
    node: &PrivateNode,
    user: &str,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> (u16, String) {
    let mut cmd = Command::new("curl");
    cmd.args([
        "-s",
        "-w",
        "\n%{http_code}",
        "-u",
        &format!("{user}:{user}"),
    ])
    .args(["-X", method]);
    if let Some(b) = body {
        cmd.args(["-H", "content-type: application/json", "-d", b]);
    }
    let out = crate::common::run(cmd.arg(format!("http://127.0.0.1:{}{path}", node.mgmt_port)));
    let text = String::from_utf8_lossy(&out).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap();
    (code.trim().parse().unwrap(), body.to_string())
}

/// KEDA's rabbitmq scaler with `protocol: http` asks the management API for the queue
/// (`GET /api/queues/%2F/<queue>`) and scales on `messages`; with the monitoring user
/// that returns the queue's length (compared with rabbitmqctl), and nothing else of
/// the data is within reach.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keda_query_with_the_monitoring_user_returns_the_queue_length() {
    let (node, pool, users) = pool_with_users("lpkeda").await;
    let mon = &users["monitoring"];
    for i in 0..7 {
        pool.publish(&echo_job(&format!("job-keda-{i}"), json!({})))
            .await;
    }
    pool.wait_counts(&pool.names.jobs, (7, 0), Duration::from_secs(10))
        .await;
    let path = format!("/api/queues/%2F/{}", pool.names.jobs);
    // Statistics reach the API a moment later (collect_statistics_interval).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (code, body) = management_get(&node, mon, &path);
        assert_eq!(code, 200, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        if v["messages"] == 7 {
            assert_eq!(v["messages_ready"], 7);
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{body}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    // No data: no get, no publish, no delete through the API; no consume over AMQP.
    let (code, body) = management(
        &node,
        mon,
        "POST",
        &format!("{path}/get"),
        Some(r#"{"count":1,"ackmode":"ack_requeue_true","encoding":"auto"}"#),
    );
    assert_eq!(code, 401, "{body}");
    let (code, body) = management(
        &node,
        mon,
        "POST",
        &format!("/api/exchanges/%2F/{JOBS_EXCHANGE}/publish"),
        Some(r#"{"routing_key":"x","payload":"x","payload_encoding":"string","properties":{}}"#),
    );
    assert!(
        body.contains("ACCESS_REFUSED"),
        "publish must be refused: {code} {body}"
    );
    let (code, _) = management(&node, mon, "DELETE", &path, None);
    assert_eq!(code, 401);
    let conn = connect_to(&user_url(&node, mon)).await;
    let ch = channel(&conn).await;
    assert_eq!(refused(consume(&ch, &pool.names.jobs)).await, 403);
    assert_eq!(pool.counts(&pool.names.jobs), (7, 0), "nothing was taken");

    // A user with the tag but no grant on the vhost gets nothing: the empty grant of
    // the README is needed.
    let bare = format!("bare-{}", pool.pool());
    node.add_user(&bare, &["monitoring"], None);
    assert_eq!(management_get(&node, &bare, &path).0, 401);
    pool.cleanup().await;
}

/// The compose stack's definitions (users, tags, permissions for pool `default`) are
/// the README's, and RabbitMQ imports them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compose_definitions_are_the_readme_users_and_load() {
    let compose: serde_json::Value = serde_norway::from_str(
        &std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docker-compose.yml"))
            .unwrap(),
    )
    .unwrap();
    // `$$` is compose's escape of a literal `$`.
    let content = compose["configs"]["rabbitmq-definitions"]["content"]
        .as_str()
        .unwrap()
        .replace("$$", "$");
    let defs: serde_json::Value = serde_json::from_str(&content).unwrap();
    for u in readme_users("default") {
        let name = format!("guestkit-{}", u.role);
        let user = defs["users"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["name"] == name.as_str())
            .unwrap_or_else(|| panic!("{name} missing"));
        assert_eq!(user["tags"], json!(u.tags), "{name}");
        let perm = defs["permissions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["user"] == name.as_str())
            .unwrap_or_else(|| panic!("{name} has no permissions"));
        assert_eq!(
            [&perm["configure"], &perm["write"], &perm["read"]],
            [&json!(u.perms[0]), &json!(u.perms[1]), &json!(u.perms[2])],
            "{name}"
        );
    }
    let node = PrivateNode::shared();
    let dir = crate::common::tempdir();
    let file = dir.path().join("definitions.json");
    std::fs::write(&file, &content).unwrap();
    node.ctl(&["import_definitions", file.to_str().unwrap()]);
    let perms = node.ctl(&["list_user_permissions", "-q", "guestkit-worker"]);
    assert!(
        perms.contains(r"^guestkit\.jobs\.default(\.retry|\.dead)?$"),
        "{perms}"
    );
    let (code, _) = management_get(&node, "guestkit-monitoring", "/api/overview");
    // The imported password works (password = user name here).
    assert_eq!(code, 200);
}
