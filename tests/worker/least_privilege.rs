//! The documented least-privilege RabbitMQ permissions and PostgreSQL role (sql/roles/) are
//! enough for the worker's full store-and-reply flow and for the consumed-status job.

use std::time::Duration;

use support::*;

/// The permission set docs/security.md documents for the worker's RabbitMQ user.
const CONFIGURE: &str = r"^prereg\.reverse-sync(\..+)?$";
const WRITE: &str = r"^(amq\.default|prereg\.reverse-sync(\..+)?)$";
const READ: &str = r"^prereg\.reverse-sync(\..+)?$";

/// Removes the PostgreSQL role when dropped; the broker user removes itself.
pub(crate) struct Cleanup {
    _broker_user: BrokerUser,
    role: String,
    database: String,
}

impl Drop for Cleanup {
    #[allow(
        clippy::let_underscore_must_use,
        reason = "cleanup at best: a drop, maybe while a failed assertion unwinds, cannot fail the test"
    )]
    fn drop(&mut self) {
        let sql = format!("DROP OWNED BY {0}; ", self.role);
        let _ = psql(&self.database).args(["-c", &sql]).output();
        let _ = psql("postgres")
            .arg("-c")
            .arg(format!("DROP ROLE IF EXISTS {}", self.role))
            .output();
    }
}

/// Creates the documented RabbitMQ user and PostgreSQL role (the database migrated) and points
/// the worker at them, with no migration or creation of its own; both are removed when the
/// returned guard is dropped.
pub(crate) fn restrict_to_least_privilege(env: &mut TestEnv) -> Cleanup {
    let broker = BrokerUser::add(
        env,
        &format!("prs-lp-{}", env.id),
        "lp-password",
        [CONFIGURE, WRITE, READ],
    );
    env.vars.insert("AMQP_URL".into(), broker.url());
    // The guard before the role: it is removed even if a step below fails.
    let cleanup = Cleanup {
        _broker_user: broker,
        role: format!("prs_lp_{}", env.id),
        database: env.database.clone(),
    };
    let role = &cleanup.role;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/sql/roles/least_privilege.sql");
    must(psql(&env.database).args([
        "-v",
        &format!("worker_role={role}"),
        "-v",
        "worker_password=lp-password",
        "-f",
        script,
    ]));
    env.vars.insert(
        "DATABASE_URL".into(),
        postgres_url(&format!("{role}:lp-password"), &env.database),
    );
    env.vars.insert(
        "PREREG_SYNC__DATABASE__MIGRATE_ON_START".into(),
        "false".into(),
    );
    env.vars.insert(
        "PREREG_SYNC__DATABASE__CREATE_IF_MISSING".into(),
        "false".into(),
    );
    cleanup
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_least_privilege_roles_run_the_worker() {
    let mut env = TestEnv::new();
    env.migrate().await; // as the owner
    let _cleanup = restrict_to_least_privilege(&mut env);
    env.spawn_app().await;

    // Requests stored and answered, under the restricted roles.
    let ids = prids(3);
    env.seed_applications(&ids).await;
    let broker = env.broker().await; // the test's own client is guest
    let replies = broker.reply_queue("rp.replies").await;
    broker
        .publish(&request_body(&ids), properties("tx-lp", Some(&replies)))
        .await;
    let reply = broker
        .get(&replies, Duration::from_secs(20))
        .await
        .expect("a reply");
    assert_eq!(error_code(&reply), "");
    assert_eq!(json(&reply)["response"]["countOfStoredPreRegIds"], "3");
    assert_eq!(env.rows("processed_prereg_list").await, 3);
    assert_eq!(env.rows("intf_processed_prereg_list").await, 3);
    assert_eq!(
        env.count("SELECT count(*) FROM prereg.sync_audit WHERE event = 'STORED'")
            .await,
        1
    );
    // A rejected one: error reply and dead-letter copy under the same permissions.
    broker
        .publish(b"{}", properties("tx-lp-bad", Some(&replies)))
        .await;
    let rejected = broker
        .get(&replies, Duration::from_secs(20))
        .await
        .expect("an error reply");
    assert_eq!(error_code(&rejected), "PRG_PAM_CORE_001");
    assert!(broker.get(DLQ, Duration::from_secs(10)).await.is_some());
    env.stop_app().await;

    // The consumed-status job and the dlq tools with the same roles.
    let out = env.cli_ok(&["consumed-job", "run"]);
    assert!(
        out.contains("status=SUCCESS") && out.contains("moved=3"),
        "{out}"
    );
    let listed = env.cli_ok(&["dlq", "list"]);
    assert!(listed.contains("(0 message(s))"), "{listed}");
}
