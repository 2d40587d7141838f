//! Test harness: every test gets its own RabbitMQ vhost and its own PostgreSQL database, both
//! removed when the test's [`TestEnv`] is dropped, so tests run in parallel without sharing
//! anything but the two servers. The worker runs either in process ([`TestEnv::spawn_app`]) or
//! as the real binary ([`TestEnv::spawn_process`]) for signal tests.

use std::{
    collections::HashMap,
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::LazyLock,
    time::{Duration, Instant},
};

use chrono::Utc;
use futures_util::StreamExt;
use jsonschema::Validator;
use lapin::{
    BasicProperties, Channel, Connection, ConnectionProperties,
    message::Delivery,
    options::{
        BasicAckOptions, BasicGetOptions, BasicPublishOptions, ConfirmSelectOptions,
        QueueDeclareOptions,
    },
    types::FieldTable,
};
use prereg_sync::{config::Settings, message::prid, startup::Application};
use tokio_postgres::NoTls;
use tokio_util::sync::CancellationToken;

pub const EXCHANGE: &str = "prereg.reverse-sync";
pub const ROUTING_KEY: &str = "consumed-prereg-ids";
pub const REQUEST_QUEUE: &str = "prereg.reverse-sync.requests";
pub const REPLY_QUEUE: &str = "prereg.reverse-sync.replies";
pub const DLQ: &str = "prereg.reverse-sync.dlq";

/// Runs a command and panics with its output if it fails: a missing service must fail the
/// test loudly, never skip it.
pub fn must(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn rabbitmqctl(args: &[&str]) -> String {
    must(Command::new("rabbitmqctl").args(args))
}

/// `psql` on the local server as the superuser, connected to `database`, quiet.
pub fn psql(database: &str) -> Command {
    let mut cmd = Command::new("psql");
    cmd.args(["-h", "127.0.0.1", "-U", "postgres", "-d", database, "-q"]);
    cmd
}

/// One test's private vhost and database.
pub struct TestEnv {
    pub id: String,
    pub vhost: String,
    pub database: String,
    /// `PREREG_SYNC__*` and URL variables that point the worker at this environment.
    pub vars: HashMap<String, String>,
    /// libpq-style connection settings (without `dbname`) of the test's own queries: the
    /// local server, or a primary/standby pair in the cluster tests.
    pub admin_db: String,
    app: Option<(
        CancellationToken,
        tokio::task::JoinHandle<anyhow::Result<()>>,
    )>,
    pub http: Option<std::net::SocketAddr>,
}

impl TestEnv {
    pub fn new() -> TestEnv {
        Self::with_vars(&[])
    }

    /// A fresh vhost and database name, plus `extra` configuration variables.
    pub fn with_vars(extra: &[(&str, &str)]) -> TestEnv {
        let id = uuid::Uuid::new_v4().simple().to_string()[..12].to_owned();
        let vhost = format!("prs-test-{id}");
        let database = format!("prs_test_{id}");
        rabbitmqctl(&["add_vhost", &vhost]);
        rabbitmqctl(&["set_permissions", "-p", &vhost, "guest", ".*", ".*", ".*"]);
        let mut vars: HashMap<String, String> = [
            (
                "AMQP_URL",
                format!("amqp://guest:guest@127.0.0.1:5672/{vhost}"),
            ),
            (
                "DATABASE_URL",
                format!("postgres://postgres@127.0.0.1:5432/{database}"),
            ),
            ("PREREG_SYNC__HTTP__LISTEN", "127.0.0.1:0".to_owned()),
            ("PREREG_SYNC__RETRY__DELAYS", "1s,2s".to_owned()),
            ("PREREG_SYNC__RETRY__IMMEDIATE_MIN_DELAY", "20ms".to_owned()),
            (
                "PREREG_SYNC__RETRY__IMMEDIATE_MAX_DELAY",
                "100ms".to_owned(),
            ),
            ("PREREG_SYNC__RETRY__OUTAGE_MAX_DELAY", "1s".to_owned()),
            ("PREREG_SYNC__AMQP__RECONNECT_MAX_DELAY", "1s".to_owned()),
            ("PREREG_SYNC__WORKER__SHUTDOWN_GRACE", "10s".to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        for (k, v) in extra {
            vars.insert((*k).to_owned(), (*v).to_owned());
        }
        TestEnv {
            id,
            vhost,
            database,
            vars,
            admin_db: "host=127.0.0.1 user=postgres".to_owned(),
            app: None,
            http: None,
        }
    }

    pub fn settings(&self) -> Settings {
        Settings::load_from(&config_dir(), &self.vars).expect("test settings load")
    }

    /// Builds and starts the worker in process; returns once it consumes.
    pub async fn spawn_app(&mut self) {
        self.start_app().await;
        self.wait_ready(Duration::from_secs(30)).await;
    }

    /// Builds and starts the worker in process without waiting for it to become ready.
    pub async fn start_app(&mut self) {
        let app = Application::build(self.settings())
            .await
            .expect("application builds");
        self.http = Some(app.http_addr());
        let token = CancellationToken::new();
        let handle = tokio::spawn(app.run_until_stopped(token.clone()));
        self.app = Some((token, handle));
    }

    pub async fn metrics(&self) -> String {
        metrics_at(self.http.expect("app spawned")).await
    }

    /// The value of one sample of `/metrics`, e.g. `prereg_sync_retries_total{kind="delayed"}`;
    /// 0 when the sample is absent.
    pub async fn metric(&self, sample: &str) -> f64 {
        metric_at(self.http.expect("app spawned"), sample).await
    }

    /// Stops the in-process worker gracefully.
    pub async fn stop_app(&mut self) {
        if let Some((token, handle)) = self.app.take() {
            token.cancel();
            handle
                .await
                .expect("worker task")
                .expect("worker exits cleanly");
        }
    }

    pub async fn ready(&self) -> bool {
        let Some(addr) = self.http else { return false };
        match reqwest::get(format!("http://{addr}/readyz")).await {
            Ok(response) => response.status().is_success(),
            Err(_) => false,
        }
    }

    pub async fn wait_ready(&self, limit: Duration) {
        let deadline = Instant::now() + limit;
        while !self.ready().await {
            assert!(
                Instant::now() < deadline,
                "worker not ready within {limit:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Starts the real binary against this environment; stderr (logs) goes to `log`.
    pub fn spawn_process(&self, extra: &[(&str, &str)], log: &std::path::Path) -> Child {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_prereg-sync"));
        cmd.arg("--config-dir").arg(config_dir()).arg("run");
        cmd.env_remove("RUST_LOG");
        for (k, v) in &self.vars {
            cmd.env(k, v);
        }
        for (k, v) in extra {
            cmd.env(k, v);
        }
        cmd.stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawning the worker binary")
    }

    /// Runs a `prereg-sync` command (not `run`) against this environment.
    pub fn cli(&self, args: &[&str]) -> std::process::Output {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_prereg-sync"));
        cmd.arg("--config-dir")
            .arg(config_dir())
            .args(args)
            .env_remove("RUST_LOG");
        for (k, v) in &self.vars {
            cmd.env(k, v);
        }
        cmd.output().expect("running prereg-sync")
    }

    /// Like [`TestEnv::cli`], panicking unless the command succeeds; returns stdout.
    pub fn cli_ok(&self, args: &[&str]) -> String {
        let out = self.cli(args);
        assert!(
            out.status.success(),
            "prereg-sync {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Holds an ACCESS EXCLUSIVE lock on the processed table until the returned client ends
    /// its transaction: every store waits (and times out under a short statement timeout).
    pub async fn lock_processed_table(&self) -> tokio_postgres::Client {
        let client = self.db().await;
        client
            .batch_execute(
                "BEGIN; LOCK TABLE prereg.processed_prereg_list IN ACCESS EXCLUSIVE MODE",
            )
            .await
            .unwrap();
        client
    }

    pub async fn db(&self) -> tokio_postgres::Client {
        let (client, connection) = tokio_postgres::connect(
            &format!("{} dbname={}", self.admin_db, self.database),
            NoTls,
        )
        .await
        .expect("connecting to the test database");
        tokio::spawn(connection);
        client
    }

    /// Runs the migrations without a worker (for fixtures before the worker starts).
    pub async fn migrate(&self) {
        let settings = self.settings();
        let database = prereg_sync::storage::Database::new(&settings.database).unwrap();
        prereg_sync::storage::migrate::prepare_database(&database, true)
            .await
            .unwrap();
    }

    pub async fn broker(&self) -> Broker {
        Broker::connect(&self.vhost).await
    }

    /// Declares the worker's topology without a worker, so requests can be published before it
    /// starts (the same idempotent declaration the worker performs).
    pub async fn declare_topology(&self) {
        let settings = self.settings();
        let connection = prereg_sync::amqp::connect(&settings.amqp).await.unwrap();
        prereg_sync::amqp::topology::declare(&connection, &settings.amqp, &settings.retry.delays)
            .await
            .unwrap();
        let _ = connection.close(200, "".into()).await;
    }

    /// Polls `sql` (a count) until it reaches `at_least`; panics after `limit`.
    pub async fn wait_for_count(&self, sql: &str, at_least: i64, limit: Duration) -> i64 {
        let deadline = Instant::now() + limit;
        loop {
            let n = self.count(sql).await;
            if n >= at_least {
                return n;
            }
            assert!(
                Instant::now() < deadline,
                "{sql} stayed at {n} < {at_least} for {limit:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Rows in `prereg.<table>`.
    pub async fn rows(&self, table: &str) -> i64 {
        self.count(&format!("SELECT count(*) FROM prereg.{table}"))
            .await
    }

    /// Points the worker's database URL at `port` on this machine (a test's TCP proxy).
    pub fn database_via(&mut self, port: u16) {
        let url = format!("postgres://postgres@127.0.0.1:{port}/{}", self.database);
        self.vars.insert("DATABASE_URL".into(), url);
    }

    pub async fn count(&self, sql: &str) -> i64 {
        self.db().await.query_one(sql, &[]).await.unwrap().get(0)
    }

    /// Seeds `applicant_demographic` rows so the known-application check passes.
    pub async fn seed_applications(&self, prids: &[String]) {
        self.db()
            .await
            .execute(
                "INSERT INTO prereg.applicant_demographic (prereg_id, demog_detail, demog_detail_hash, encrypted_dtimes, \
                 status_code, lang_code, cr_appuser_id, cr_by, cr_dtimes) \
                 SELECT id, '\\x00'::bytea, 'h', now(), 'Booked', 'eng', 'u', 'test', now() FROM unnest($1::varchar[]) id \
                 ON CONFLICT DO NOTHING",
                &[&prids],
            )
            .await
            .unwrap();
    }
}

impl Drop for TestEnv {
    fn drop(&mut self) {
        if let Some((token, handle)) = self.app.take() {
            token.cancel();
            handle.abort();
        }
        let _ = Command::new("rabbitmqctl")
            .args(["delete_vhost", &self.vhost])
            .output();
        let _ = psql("postgres")
            .arg("-c")
            .arg(format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.database
            ))
            .output();
    }
}

/// The `/metrics` text of a worker serving HTTP on `addr`.
pub async fn metrics_at(addr: std::net::SocketAddr) -> String {
    reqwest::get(format!("http://{addr}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// One sample of [`metrics_at`]; 0 when absent.
pub async fn metric_at(addr: std::net::SocketAddr, sample: &str) -> f64 {
    metrics_at(addr)
        .await
        .lines()
        .find_map(|line| {
            line.strip_prefix(sample)
                .and_then(|rest| rest.trim().parse().ok())
        })
        .unwrap_or(0.0)
}

pub fn config_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("config")
}

/// A test-side AMQP client on the test's vhost.
pub struct Broker {
    pub connection: Connection,
    pub channel: Channel,
}

impl Broker {
    pub async fn connect(vhost: &str) -> Broker {
        Self::connect_url(&format!("amqp://guest:guest@127.0.0.1:5672/{vhost}")).await
    }

    /// A test-side client on any broker (a node of the test cluster).
    pub async fn connect_url(url: &str) -> Broker {
        let connection = Connection::connect(url, ConnectionProperties::default())
            .await
            .expect("test broker connection");
        let channel = connection.create_channel().await.unwrap();
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .unwrap();
        Broker {
            connection,
            channel,
        }
    }

    /// Declares a reply queue owned by the test (durable so it survives worker restarts).
    pub async fn reply_queue(&self, name: &str) -> String {
        self.channel
            .queue_declare(
                name.into(),
                QueueDeclareOptions {
                    durable: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .unwrap();
        name.to_owned()
    }

    /// Publishes a request to the request exchange and waits for the broker's confirm.
    pub async fn publish(&self, body: &[u8], properties: BasicProperties) {
        let confirm = self
            .channel
            .basic_publish(
                EXCHANGE.into(),
                ROUTING_KEY.into(),
                BasicPublishOptions::default(),
                body,
                properties,
            )
            .await
            .unwrap()
            .await
            .unwrap();
        assert!(confirm.is_ack(), "request publish confirmed");
    }

    /// Publishes without waiting for each confirm; call [`Broker::confirm_all`] after.
    pub async fn publish_pipelined(&self, body: &[u8], properties: BasicProperties) {
        // The confirm is collected by `wait_for_confirms`, not awaited one by one.
        let confirm = self
            .channel
            .basic_publish(
                EXCHANGE.into(),
                ROUTING_KEY.into(),
                BasicPublishOptions::default(),
                body,
                properties,
            )
            .await
            .unwrap();
        drop(confirm);
    }

    pub async fn confirm_all(&self) {
        self.channel.wait_for_confirms().await.unwrap();
    }

    /// Publishes one request per chunk of `per_request` PRIDs, transaction IDs `tx-0`, `tx-1`…,
    /// confirms pipelined and all awaited at the end.
    pub async fn publish_stream(&self, ids: &[String], per_request: usize, reply_to: &str) {
        for (i, chunk) in ids.chunks(per_request).enumerate() {
            self.publish_pipelined(
                &request_body(chunk),
                properties(&format!("tx-{i}"), Some(reply_to)),
            )
            .await;
        }
        self.confirm_all().await;
    }

    /// Takes one message from `queue`, waiting up to `limit`; a reply must match its schema.
    pub async fn get(&self, queue: &str, limit: Duration) -> Option<Delivery> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(message) = self
                .channel
                .basic_get(queue.into(), BasicGetOptions::default())
                .await
                .unwrap()
            {
                message
                    .delivery
                    .acker
                    .ack(BasicAckOptions::default())
                    .await
                    .unwrap();
                check_reply(&message.delivery);
                return Some(message.delivery);
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Takes `n` messages from `queue` within `limit`, panicking if fewer arrive; replies must
    /// match their schemas.
    pub async fn get_n(&self, queue: &str, n: usize, limit: Duration) -> Vec<Delivery> {
        let deadline = Instant::now() + limit;
        let mut out = Vec::with_capacity(n);
        let mut consumer = self
            .channel
            .basic_consume(
                queue.into(),
                "".into(),
                Default::default(),
                FieldTable::default(),
            )
            .await
            .unwrap();
        while out.len() < n {
            let remaining = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(remaining, consumer.next()).await {
                Ok(Some(Ok(delivery))) => {
                    delivery
                        .acker
                        .ack(BasicAckOptions::default())
                        .await
                        .unwrap();
                    check_reply(&delivery);
                    out.push(delivery);
                }
                _ => panic!(
                    "only {} of {n} messages arrived on {queue} within {limit:?}",
                    out.len()
                ),
            }
        }
        self.channel
            .basic_cancel(consumer.tag(), Default::default())
            .await
            .unwrap();
        out
    }

    /// Message count of a queue (passive declare).
    pub async fn depth(&self, queue: &str) -> u32 {
        let channel = self.connection.create_channel().await.unwrap();
        let q = channel
            .queue_declare(
                queue.into(),
                QueueDeclareOptions {
                    passive: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .unwrap();
        let _ = channel.close(200, "".into()).await;
        q.message_count()
    }
}

/// Valid, unique PRIDs under the default MOSIP rules.
pub fn prids(n: usize) -> Vec<String> {
    let rules = prid::PridRules::default();
    let mut rng = rand::rng();
    let mut seen = std::collections::HashSet::with_capacity(n);
    let mut out: Vec<String> = Vec::with_capacity(n);
    while out.len() < n {
        let candidate = prid::generate_valid(&rules, &mut rng);
        if seen.insert(candidate.clone()) {
            out.push(candidate);
        }
    }
    out
}

pub const REQUEST_TIME: &str = "2026-11-22T07:05:08.850Z";

pub fn request_body(prids: &[String]) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "id": "mosip.pre-registration.datasync.store",
        "version": "1.0",
        "requesttime": REQUEST_TIME,
        "request": {"preRegistrationIds": prids},
    }))
    .unwrap()
}

pub fn properties(message_id: &str, reply_to: Option<&str>) -> BasicProperties {
    let mut props = BasicProperties::default()
        .with_message_id(message_id.into())
        .with_correlation_id(format!("corr-{message_id}").into())
        .with_content_type("application/json".into())
        .with_app_id("rp-test".into())
        .with_delivery_mode(2);
    if let Some(reply_to) = reply_to {
        props = props.with_reply_to(reply_to.into());
    }
    props
}

pub fn json(delivery: &Delivery) -> serde_json::Value {
    serde_json::from_slice(&delivery.data).expect("reply is JSON")
}

pub fn error_code(delivery: &Delivery) -> String {
    json(delivery)["errors"][0]["errorCode"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

pub fn header_str(delivery: &Delivery, key: &str) -> Option<String> {
    prereg_sync::amqp::headers::string(delivery.properties.headers().as_ref(), key)
        .map(str::to_owned)
}

pub fn header_int(delivery: &Delivery, key: &str) -> Option<i64> {
    prereg_sync::amqp::headers::integer(delivery.properties.headers().as_ref(), key)
}

pub fn now_utc() -> chrono::NaiveDateTime {
    Utc::now().naive_utc()
}

// The JSON Schemas of schemas/ (tests/worker/schemas.rs checks them against the worker).

fn load_schema(name: &str) -> Validator {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("schemas")
        .join(name);
    let schema: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap())
        .unwrap_or_else(|err| panic!("{}: {err}", path.display()));
    jsonschema::draft202012::new(&schema).unwrap_or_else(|err| panic!("{name}: {err}"))
}

pub static REQUEST_SCHEMA: LazyLock<Validator> = LazyLock::new(|| load_schema("request.json"));
pub static SUCCESS_SCHEMA: LazyLock<Validator> =
    LazyLock::new(|| load_schema("reply-success.json"));
pub static ERROR_SCHEMA: LazyLock<Validator> = LazyLock::new(|| load_schema("reply-error.json"));

pub fn assert_valid(validator: &Validator, what: &str, instance: &serde_json::Value) {
    let errors: Vec<String> = validator
        .iter_errors(instance)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(errors.is_empty(), "{what} fails its schema: {errors:?}");
}

/// A reply taken from a queue (AMQP `type` `ack` or `error`) validates against its schema;
/// anything else (a dead-letter copy, a request) is not a reply and passes through.
pub fn check_reply(delivery: &Delivery) {
    let validator = match delivery.properties.kind().as_ref().map(|k| k.as_str()) {
        Some("ack") => &*SUCCESS_SCHEMA,
        Some("error") => &*ERROR_SCHEMA,
        _ => return,
    };
    let body: serde_json::Value = serde_json::from_slice(&delivery.data).expect("a reply is JSON");
    assert_valid(validator, "a received reply", &body);
}
