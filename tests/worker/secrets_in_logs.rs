//! Acceptance 7: at the most verbose log level, no PRID, body or password reaches the logs or
//! the audit table.

use std::time::Duration;

use support::*;

/// A broker user with a distinctive password and a database URL with another, installed in
/// the environment; the user is removed on drop.
struct Credentials {
    user: String,
    password: String,
    pg_password: String,
}

impl Credentials {
    fn install(env: &mut TestEnv) -> Credentials {
        let user = format!("prs-secret-{}", env.id);
        let password = format!("S3cret-{}-pw", env.id);
        let pg_password = format!("PgS3cret-{}-pw", env.id);
        rabbitmqctl(&["add_user", &user, &password]);
        rabbitmqctl(&["set_permissions", "-p", &env.vhost, &user, ".*", ".*", ".*"]);
        env.vars.insert(
            "AMQP_URL".into(),
            format!("amqp://{user}:{password}@127.0.0.1:5672/{}", env.vhost),
        );
        env.vars.insert(
            "DATABASE_URL".into(),
            format!(
                "postgres://postgres:{pg_password}@127.0.0.1:5432/{}",
                env.database
            ),
        );
        Credentials {
            user,
            password,
            pg_password,
        }
    }
}

impl Drop for Credentials {
    fn drop(&mut self) {
        let _ = std::process::Command::new("rabbitmqctl")
            .args(["delete_user", &self.user])
            .output();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trace_logs_and_audit_hold_no_prid_body_or_password() {
    let mut env = TestEnv::new();
    let credentials = Credentials::install(&mut env);
    let (password, pg_password) = (&credentials.password, &credentials.pg_password);
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
    // The worker declares the topology; wait for it before publishing.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while env
        .count("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'prereg-sync'")
        .await
        == 0
    {
        assert!(
            std::time::Instant::now() < deadline,
            "worker never connected"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    for (body, tx) in &cases {
        broker.publish(body, properties(tx, Some(&replies))).await;
    }
    broker
        .get_n(&replies, cases.len(), Duration::from_secs(30))
        .await;
    must(std::process::Command::new("kill").args(["-TERM", &worker.id().to_string()]));
    assert!(worker.wait().unwrap().success());

    let logs = std::fs::read_to_string(&log).unwrap();
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

/// The security issue's secret-leak test: a configured password never appears in logs, error
/// messages, `--help`, the start-up configuration dump or `/metrics`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configured_passwords_never_leak() {
    let mut env = TestEnv::new();
    let credentials = Credentials::install(&mut env);
    let (user, password, pg_password) = (
        &credentials.user,
        &credentials.password,
        &credentials.pg_password,
    );
    let secrets = [password.as_str(), pg_password.as_str()];
    let assert_clean = |what: &str, text: &str| {
        for secret in secrets {
            assert!(
                !text.contains(secret),
                "a password leaked into {what}:\n{text}"
            );
        }
    };

    // Logs (with the start-up configuration dump) and /metrics of a running worker.
    env.spawn_app().await;
    assert_clean("/metrics", &env.metrics().await);
    let settings = env.settings();
    assert_clean("the configuration dump", &settings.redacted_summary());
    assert_clean("Debug output", &format!("{settings:?}"));
    env.stop_app().await;
    let log = std::env::temp_dir().join(format!("prs-{}-leak.log", env.id));
    let mut worker = env.spawn_process(&[("RUST_LOG", "trace")], &log);
    tokio::time::sleep(Duration::from_secs(2)).await;
    must(std::process::Command::new("kill").args(["-TERM", &worker.id().to_string()]));
    assert!(worker.wait().unwrap().success());
    let logs = std::fs::read_to_string(&log).unwrap();
    assert!(logs.contains("***"), "URLs are logged redacted");
    assert_clean("the logs", &logs);

    // Errors: a refused login, an unreachable database, a malformed URL.
    let mut wrong = env.vars.clone();
    wrong.insert(
        "AMQP_URL".into(),
        format!("amqp://{user}:{password}x@127.0.0.1:5672/{}", env.vhost),
    );
    wrong.insert(
        "DATABASE_URL".into(),
        format!(
            "postgres://postgres:{pg_password}@127.0.0.1:1/{}",
            env.database
        ),
    );
    let run = |vars: &std::collections::HashMap<String, String>, args: &[&str]| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_prereg-sync"));
        cmd.arg("--config-dir")
            .arg(config_dir())
            .args(args)
            .env_remove("RUST_LOG");
        for (k, v) in vars {
            cmd.env(k, v);
        }
        let out = cmd.output().unwrap();
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    };
    let refused = run(&wrong, &["dlq", "list"]);
    assert!(refused.contains("error:"), "{refused}");
    assert_clean("a refused-login error", &refused);
    let unreachable = run(&wrong, &["migrate"]);
    assert!(unreachable.contains("error:"), "{unreachable}");
    assert_clean("a connection error", &unreachable);
    let mut malformed = env.vars.clone();
    malformed.insert("DATABASE_URL".into(), format!("not a url {pg_password}"));
    let bad = run(&malformed, &["migrate"]);
    assert!(bad.contains("error:"), "{bad}");
    assert_clean("a configuration error", &bad);

    // --help of every command, with the secrets in the environment.
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
        let help = run(&env.vars, &args);
        assert!(help.contains("Usage"), "{help}");
        assert_clean("--help", &help);
    }
}
