//! A private RabbitMQ node, for what the shared node on 5672 does not have and must not
//! be given: the management API, users with narrow permissions, a TLS listener whose
//! certificates the test makes. Started from the installed RabbitMQ on spare loopback
//! ports, with its own config, enabled-plugins file, data, logs and Erlang cookie in a
//! temporary directory (the shared node's `/etc/rabbitmq/rabbitmq-env.conf` and
//! `rabbitmq.conf` are never read: they name the shared node and its port 5672).
//! Tests running at once share one node; the last one to drop its handle stops it.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use super::broker::free_port;
use super::run;

/// The installed RabbitMQ scripts (Debian's path), called directly: the wrappers in
/// /usr/sbin switch to the `rabbitmq` user and its environment.
fn rabbit_bin(tool: &str) -> PathBuf {
    let dir = std::env::var_os("GUESTKIT_RABBITMQ_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/lib/rabbitmq/bin"));
    dir.join(tool)
}

/// Certificates made by openssl for the node: a CA, the server's certificate for the
/// DNS name `localhost` only (so `127.0.0.1` is a wrong host name), a client
/// certificate from the same CA, and a second CA that signed nothing the node uses.
pub struct Certs {
    pub ca: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
    pub other_ca: PathBuf,
    server_cert: PathBuf,
    server_key: PathBuf,
}

impl Certs {
    fn make(dir: &Path) -> Certs {
        let p = |name: &str| dir.join(name);
        let ca = |name: &str| {
            run(Command::new("openssl")
                .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
                .args(["ec_paramgen_curve:prime256v1", "-nodes", "-days", "2"])
                .args(["-subj", &format!("/CN=guestkit test {name}")])
                .args(["-addext", "basicConstraints=critical,CA:TRUE"])
                .args(["-addext", "keyUsage=critical,keyCertSign,cRLSign"])
                .arg("-keyout")
                .arg(p(&format!("{name}.key")))
                .arg("-out")
                .arg(p(&format!("{name}.pem"))));
        };
        ca("ca");
        ca("other-ca");
        let leaf = |name: &str, cn: &str, ext: &str| {
            run(Command::new("openssl")
                .args(["req", "-new", "-newkey", "ec", "-pkeyopt"])
                .args(["ec_paramgen_curve:prime256v1", "-nodes"])
                .args(["-subj", &format!("/CN={cn}")])
                .arg("-keyout")
                .arg(p(&format!("{name}.key")))
                .arg("-out")
                .arg(p(&format!("{name}.csr"))));
            std::fs::write(p(&format!("{name}.ext")), ext).unwrap();
            run(Command::new("openssl")
                .args(["x509", "-req", "-days", "2", "-in"])
                .arg(p(&format!("{name}.csr")))
                .arg("-CA")
                .arg(p("ca.pem"))
                .arg("-CAkey")
                .arg(p("ca.key"))
                .arg("-CAcreateserial")
                .arg("-extfile")
                .arg(p(&format!("{name}.ext")))
                .arg("-out")
                .arg(p(&format!("{name}.pem"))));
        };
        leaf(
            "server",
            "localhost",
            "subjectAltName=DNS:localhost\nextendedKeyUsage=serverAuth\n",
        );
        leaf("client", "guestkit-worker", "extendedKeyUsage=clientAuth\n");
        Certs {
            ca: p("ca.pem"),
            client_cert: p("client.pem"),
            client_key: p("client.key"),
            other_ca: p("other-ca.pem"),
            server_cert: p("server.pem"),
            server_key: p("server.key"),
        }
    }
}

/// One running private node.
pub struct PrivateNode {
    pub name: String,
    /// Plain AMQP listener.
    pub amqp_port: u16,
    /// TLS listener: `verify_peer` and `fail_if_no_peer_cert`, so clients need a
    /// certificate from [`Certs::ca`].
    pub tls_port: u16,
    /// Management API (HTTP).
    pub mgmt_port: u16,
    pub certs: Certs,
    dir: tempfile::TempDir,
    server: Mutex<Child>,
}

static NODE: Mutex<Weak<PrivateNode>> = Mutex::new(Weak::new());

impl PrivateNode {
    /// The node of this test process, started on first use.
    pub fn shared() -> Arc<PrivateNode> {
        let mut slot = NODE.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(node) = slot.upgrade() {
            return node;
        }
        let node = Arc::new(PrivateNode::start());
        *slot = Arc::downgrade(&node);
        node
    }

    fn start() -> PrivateNode {
        let dir = tempfile::Builder::new()
            .prefix("guestkit-rabbit-")
            .tempdir()
            .unwrap();
        let d = dir.path();
        let certs = Certs::make(d);
        let (amqp_port, tls_port, mgmt_port, dist_port) =
            (free_port(), free_port(), free_port(), free_port());
        let name = format!(
            "gk{}-{}@localhost",
            std::process::id(),
            ulid::Ulid::new().to_string().to_lowercase()
        );
        std::fs::write(
            d.join("rabbitmq.conf"),
            format!(
                "listeners.tcp.1 = 127.0.0.1:{amqp_port}\n\
                 listeners.ssl.1 = 127.0.0.1:{tls_port}\n\
                 ssl_options.cacertfile = {}\n\
                 ssl_options.certfile = {}\n\
                 ssl_options.keyfile = {}\n\
                 ssl_options.verify = verify_peer\n\
                 ssl_options.fail_if_no_peer_cert = true\n\
                 management.tcp.ip = 127.0.0.1\n\
                 management.tcp.port = {mgmt_port}\n\
                 collect_statistics_interval = 500\n",
                certs.ca.display(),
                certs.server_cert.display(),
                certs.server_key.display(),
            ),
        )
        .unwrap();
        std::fs::write(d.join("enabled_plugins"), "[rabbitmq_management].\n").unwrap();
        std::fs::write(d.join("rabbitmq-env.conf"), "# private test node\n").unwrap();
        std::fs::create_dir_all(d.join("conf.d")).unwrap();
        std::fs::create_dir_all(d.join("home")).unwrap();
        let log = std::fs::File::create(d.join("server.log")).unwrap();
        let mut cmd = Command::new(rabbit_bin("rabbitmq-server"));
        node_env(&mut cmd, d, &name);
        cmd.env("RABBITMQ_CONFIG_FILE", d.join("rabbitmq.conf"))
            .env("RABBITMQ_CONFIG_FILES", d.join("conf.d"))
            .env("RABBITMQ_ADVANCED_CONFIG_FILE", d.join("advanced.config"))
            .env("RABBITMQ_ENABLED_PLUGINS_FILE", d.join("enabled_plugins"))
            .env("RABBITMQ_MNESIA_BASE", d.join("mnesia"))
            .env("RABBITMQ_LOG_BASE", d.join("log"))
            .env("RABBITMQ_PID_FILE", d.join("node.pid"))
            .env("RABBITMQ_DIST_PORT", dist_port.to_string())
            .env(
                "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS",
                "-kernel inet_dist_use_interface {127,0,0,1}",
            )
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        let server = cmd.spawn().expect("start rabbitmq-server");
        let node = PrivateNode {
            name,
            amqp_port,
            tls_port,
            mgmt_port,
            certs,
            dir,
            server: Mutex::new(server),
        };
        node.wait_listening(Duration::from_secs(120));
        node
    }

    /// Waits until the AMQP, TLS and management ports accept connections (the
    /// management listener comes last), failing early with the log if the node died.
    fn wait_listening(&self, wait: Duration) {
        let deadline = Instant::now() + wait;
        for port in [self.amqp_port, self.tls_port, self.mgmt_port] {
            while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
                let exited = self.server.lock().unwrap().try_wait().unwrap();
                if exited.is_some() || Instant::now() > deadline {
                    let log = std::fs::read_to_string(self.dir.path().join("server.log"))
                        .unwrap_or_default();
                    panic!("private RabbitMQ node not listening on {port} ({exited:?}):\n{log}");
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    }

    /// `amqp://user:pass@127.0.0.1:<port>/%2f`.
    pub fn url(&self, user: &str, pass: &str) -> String {
        format!("amqp://{user}:{pass}@127.0.0.1:{}/%2f", self.amqp_port)
    }

    /// `amqps://user:pass@<host>:<tls port>/%2f`.
    pub fn tls_url(&self, host: &str, user: &str, pass: &str) -> String {
        format!("amqps://{user}:{pass}@{host}:{}/%2f", self.tls_port)
    }

    /// Runs `rabbitmqctl` against this node; its stdout.
    pub fn ctl(&self, args: &[&str]) -> String {
        let mut cmd = Command::new(rabbit_bin("rabbitmqctl"));
        node_env(&mut cmd, self.dir.path(), &self.name);
        let out = run(cmd.arg("-n").arg(&self.name).args(args));
        String::from_utf8_lossy(&out).into_owned()
    }

    /// (ready, unacked) of `queue`, from `rabbitmqctl list_queues`.
    pub fn queue_counts(&self, queue: &str) -> (u64, u64) {
        let text = self.ctl(&super::broker::LIST_QUEUE_COUNTS);
        super::broker::parse_queue_counts(&text, queue)
    }

    /// Creates `user` (password = user name) with `tags` and, when given, the
    /// (configure, write, read) regexes on vhost `/`; replaces an earlier one.
    pub fn add_user(&self, user: &str, tags: &[&str], perms: Option<[&str; 3]>) {
        let _ = self.ctl_status(&["delete_user", user]);
        self.ctl(&["add_user", user, user]);
        let mut args = vec!["set_user_tags", user];
        args.extend_from_slice(tags);
        self.ctl(&args);
        if let Some([configure, write, read]) = perms {
            self.ctl(&["set_permissions", "-p", "/", user, configure, write, read]);
        }
    }

    fn ctl_status(&self, args: &[&str]) -> bool {
        let mut cmd = Command::new(rabbit_bin("rabbitmqctl"));
        node_env(&mut cmd, self.dir.path(), &self.name);
        cmd.arg("-n")
            .arg(&self.name)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }
}

/// What the server and rabbitmqctl share: the node name, a private HOME (the Erlang
/// cookie lives there), an empty env file instead of /etc's, epmd on loopback.
fn node_env(cmd: &mut Command, dir: &Path, name: &str) {
    cmd.env("HOME", dir.join("home"))
        .env("RABBITMQ_CONF_ENV_FILE", dir.join("rabbitmq-env.conf"))
        .env("RABBITMQ_NODENAME", name)
        .env("ERL_EPMD_ADDRESS", "127.0.0.1");
}

impl Drop for PrivateNode {
    fn drop(&mut self) {
        self.ctl_status(&["stop"]);
        let mut server = self.server.lock().unwrap_or_else(|e| e.into_inner());
        let deadline = Instant::now() + Duration::from_secs(30);
        while matches!(server.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
        if matches!(server.try_wait(), Ok(None)) {
            // `stop` failed: kill the Erlang VM itself (the script is only a proxy).
            if let Ok(pid) = std::fs::read_to_string(self.dir.path().join("node.pid")) {
                let _ = Command::new("kill").args(["-9", pid.trim()]).status();
            }
            let _ = server.kill();
        }
        let _ = server.wait();
    }
}
