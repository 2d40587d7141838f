//! The PostgreSQL primary killed under the worker and its synchronous standby promoted.

use std::time::{Duration, Instant};

use support::*;

use crate::harness::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serial_the_postgresql_primary_killed_mid_stream_and_the_standby_promoted() {
    log_failovers();
    pg_standby(&["up"]);
    let mut env = TestEnv::new();
    let url = format!(
        "postgres://postgres@127.0.0.1:5433,127.0.0.1:5434/{}?target_session_attrs=read-write",
        env.database
    );
    env.vars.insert("DATABASE_URL".into(), url);
    env.admin_db =
        "host=127.0.0.1,127.0.0.1 port=5433,5434 user=postgres target_session_attrs=read-write"
            .into();
    let broker_url = amqp_url("guest:guest", &env.vhost);
    publish_stream(&env, &broker_url).await;
    env.spawn_app().await;
    let addr = env.http.unwrap();
    let clock = ReplyClock::start(vec![addr]);
    wait_for_acks(&[addr], 500.0).await;
    pg_standby(&["kill-primary"]);
    let fault = Instant::now();
    pg_standby(&["promote"]);
    wait_for_acks(&[addr], REQUESTS as f64).await;
    let recovery = clock.finish(fault).await;
    env.wait_ready(Duration::from_secs(30)).await;
    assert_eq!(
        env.count("SELECT inet_server_port()::bigint").await,
        5434,
        "the promoted standby is the primary now"
    );
    check_stream(&env, &broker_url, "postgresql_primary_killed", &recovery).await;
    env.stop_app().await;
}
