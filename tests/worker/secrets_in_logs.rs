//! At the most verbose log level, no PRID, body or password reaches the logs (in any encoding:
//! text, byte arrays, hex, base64) or the audit table.

use std::{collections::HashMap, time::Duration};

use support::*;

/// A broker user with a distinctive password and a database URL with another, installed in
/// the environment; the user is removed on drop.
struct Credentials {
    broker: BrokerUser,
    pg_password: String,
}

impl Credentials {
    fn install(env: &mut TestEnv) -> Credentials {
        let broker = BrokerUser::add(
            env,
            &format!("prs-secret-{}", env.id),
            &format!("S3cret-{}-pw", env.id),
            ALL_PERMISSIONS,
        );
        let pg_password = format!("PgS3cret-{}-pw", env.id);
        env.vars.insert("AMQP_URL".into(), broker.url());
        env.vars.insert(
            "DATABASE_URL".into(),
            postgres_url(&format!("postgres:{pg_password}"), &env.database),
        );
        Credentials {
            broker,
            pg_password,
        }
    }

    /// Panics if either password is in `text`, which is `what`.
    fn assert_not_in(&self, what: &str, text: &str) {
        for secret in [&self.broker.password, &self.pg_password] {
            assert!(
                !text.contains(secret.as_str()),
                "a password leaked into {what}:\n{text}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trace_logs_and_audit_hold_no_prid_body_or_password() {
    let mut env = TestEnv::new();
    let credentials = Credentials::install(&mut env);
    let (password, pg_password) = (&credentials.broker.password, &credentials.pg_password);
    env.migrate().await;
    let ids = prids(5);
    env.seed_applications(&ids[..4]).await;
    let log = std::env::temp_dir().join(format!("prs-{}-secrets.log", env.id));
    let mut worker = env.spawn_process(
        &[("RUST_LOG", "trace"), ("PREREG_SYNC__LOG__LEVEL", "trace")],
        &log,
    );

    let broker = env.broker().await;
    let replies = broker.reply_queue("rp.replies").await;
    // Stored, duplicate, partly rejected, invalid: every path that logs.
    let cases = [
        (request_body(&ids[..2]), "tx-a"),
        (request_body(&ids[..2]), "tx-a"),
        (request_body(&ids[2..]), "tx-b"),
        (request_body(&ids[4..]), "tx-c"),
        (b"{\"broken".to_vec(), "tx-d"),
    ];
    // The worker declares the topology; wait for it to consume before publishing.
    wait_for_consumer(&broker).await;
    for (body, tx) in &cases {
        broker.publish(body, properties(tx, Some(&replies))).await;
    }
    broker
        .get_n(&replies, cases.len(), Duration::from_secs(30))
        .await;
    // A reply to a queue that does not exist comes back from the broker, body and all.
    broker
        .publish(
            &request_body(&ids[..1]),
            properties("tx-e", Some("rp.nowhere")),
        )
        .await;
    env.wait_for_count(
        "SELECT count(*) FROM prereg.sync_audit WHERE event = 'REPLY_UNROUTABLE'",
        1,
        Duration::from_secs(30),
    )
    .await;
    terminate(&worker);
    assert!(worker.wait().unwrap().success());

    let logs = with_decoded_payloads(&std::fs::read_to_string(&log).unwrap());
    assert!(logs.contains("DEBUG"), "verbose logging produced output");
    assert!(logs.contains("tx-a"), "transaction IDs are logged");
    for prid in &ids {
        assert!(!logs.contains(prid.as_str()), "a PRID leaked into the logs");
    }
    for needle in [
        password.as_str(),
        pg_password.as_str(),
        "preRegistrationIds",
        "datasync.store",
        "broken",
    ] {
        assert!(!logs.contains(needle), "`{needle}` leaked into the logs");
    }
    let db = env.db().await;
    let audit = db
        .query("SELECT CAST(t AS text) FROM prereg.sync_audit t", &[])
        .await
        .unwrap();
    assert!(audit.len() >= 5);
    for row in audit {
        let text: String = row.get(0);
        assert!(
            ids.iter().all(|p| !text.contains(p.as_str())),
            "a PRID in the audit trail"
        );
    }
}

/// Waits until the worker process consumes the request queue.
async fn wait_for_consumer(broker: &Broker) {
    wait_until(
        Duration::from_secs(30),
        Duration::from_millis(100),
        "the worker never consumed",
        async || broker.consumers(REQUEST_QUEUE).await > 0,
    )
    .await;
}

/// The logs, followed by every byte array (`[123, 34, …]`), hex run and base64 run in them
/// decoded as text: a body logged in any of these encodings shows up in plain text.
fn with_decoded_payloads(logs: &str) -> String {
    use base64::Engine;
    let mut all = logs.to_owned();
    let arrays = regex::Regex::new(r"\[(\d{1,3}(?:, ?\d{1,3}){7,})\]").unwrap();
    for array in arrays.captures_iter(logs) {
        let bytes: Vec<u8> = array[1]
            .split(',')
            .filter_map(|b| b.trim().parse().ok())
            .collect();
        all.push_str(&String::from_utf8_lossy(&bytes));
    }
    for run in regex::Regex::new(r"[0-9a-fA-F]{16,}")
        .unwrap()
        .find_iter(logs)
    {
        if let Ok(bytes) = hex::decode(run.as_str()) {
            all.push_str(&String::from_utf8_lossy(&bytes));
        }
    }
    for run in regex::Regex::new(r"[A-Za-z0-9+/]{16,}={0,2}")
        .unwrap()
        .find_iter(logs)
    {
        for offset in 0..4 {
            let text = &run.as_str()[offset.min(run.len())..];
            let text = &text[..text.len() / 4 * 4];
            if let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(text) {
                all.push_str(&String::from_utf8_lossy(&bytes));
            }
        }
    }
    all
}

/// The security issue's secret-leak test: a configured password never appears in logs, error
/// messages, `--help`, the start-up configuration dump or `/metrics`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configured_passwords_never_leak() {
    let mut env = TestEnv::new();
    let credentials = Credentials::install(&mut env);
    assert_no_password_from_a_running_worker(&mut env, &credentials).await;
    assert_no_password_in_errors(&env, &credentials);
    assert_no_password_in_help(&env, &credentials);
}

/// Logs (with the start-up configuration dump) and /metrics of a running worker.
async fn assert_no_password_from_a_running_worker(env: &mut TestEnv, credentials: &Credentials) {
    env.spawn_app().await;
    credentials.assert_not_in("/metrics", &env.metrics().await);
    let settings = env.settings();
    credentials.assert_not_in("the configuration dump", &settings.redacted_summary());
    credentials.assert_not_in("Debug output", &format!("{settings:?}"));
    env.stop_app().await;
    let log = std::env::temp_dir().join(format!("prs-{}-leak.log", env.id));
    let mut worker = env.spawn_process(&[("RUST_LOG", "trace")], &log);
    // Consuming: the start-up logs, the configuration dump among them, are written.
    wait_for_consumer(&env.broker().await).await;
    terminate(&worker);
    assert!(worker.wait().unwrap().success());
    let logs = std::fs::read_to_string(&log).unwrap();
    assert!(logs.contains("***"), "URLs are logged redacted");
    credentials.assert_not_in("the logs", &logs);
}

/// Errors: a refused login, an unreachable database, a malformed URL.
fn assert_no_password_in_errors(env: &TestEnv, credentials: &Credentials) {
    let Credentials {
        broker,
        pg_password,
    } = credentials;
    let mut wrong = env.vars.clone();
    wrong.insert(
        "AMQP_URL".into(),
        amqp_url(&format!("{}:{}x", broker.name, broker.password), &env.vhost),
    );
    wrong.insert(
        "DATABASE_URL".into(),
        format!(
            "postgres://postgres:{pg_password}@127.0.0.1:1/{}",
            env.database
        ),
    );
    let refused = output(&wrong, &["dlq", "list"]);
    assert!(refused.contains("error:"), "{refused}");
    credentials.assert_not_in("a refused-login error", &refused);
    let unreachable = output(&wrong, &["migrate"]);
    assert!(unreachable.contains("error:"), "{unreachable}");
    credentials.assert_not_in("a connection error", &unreachable);
    let mut malformed = env.vars.clone();
    malformed.insert("DATABASE_URL".into(), format!("not a url {pg_password}"));
    let bad = output(&malformed, &["migrate"]);
    assert!(bad.contains("error:"), "{bad}");
    credentials.assert_not_in("a configuration error", &bad);
}

/// --help of every command, with the secrets in the environment.
fn assert_no_password_in_help(env: &TestEnv, credentials: &Credentials) {
    for args in [
        vec!["--help"],
        vec!["run", "--help"],
        vec!["migrate", "--help"],
        vec!["dlq", "--help"],
        vec!["dlq", "replay", "--help"],
        vec!["consumed-job", "run", "--help"],
        vec!["maintenance", "purge-audit", "--help"],
        vec!["loadgen", "--help"],
    ] {
        let help = output(&env.vars, &args);
        assert!(help.contains("Usage"), "{help}");
        credentials.assert_not_in("--help", &help);
    }
}

/// What `prereg-sync ARGS` printed, stdout then stderr, run with `vars`.
fn output(vars: &HashMap<String, String>, args: &[&str]) -> String {
    let out = prereg_sync(vars).args(args).output().unwrap();
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}
