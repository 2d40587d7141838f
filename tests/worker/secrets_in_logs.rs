//! Acceptance 7: at the most verbose log level, no PRID, body or password reaches the logs or
//! the audit table.

use std::time::Duration;

use crate::helpers::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trace_logs_and_audit_hold_no_prid_body_or_password() {
    let mut env = TestEnv::new();
    let user = format!("prs-user-{}", env.id);
    let password = format!("S3cret-{}", env.id);
    rabbitmqctl(&["add_user", &user, &password]);
    rabbitmqctl(&["set_permissions", "-p", &env.vhost, &user, ".*", ".*", ".*"]);
    let pg_password = format!("PgS3cret-{}", env.id);
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
    let _ = std::process::Command::new("rabbitmqctl")
        .args(["delete_user", &user])
        .output();
}
