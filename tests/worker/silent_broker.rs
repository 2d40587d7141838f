//! A node that accepts TCP but never speaks AMQP (a hung VM, a load balancer with no backend)
//! holds nothing: the connection open has a deadline, so start-up and failover move on to the
//! next node, and SIGTERM ends the process within `worker.shutdown_grace` whatever the broker
//! does.

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use support::*;
use tokio::net::TcpListener;

/// A TCP listener that accepts every connection and never sends a byte; counts the connections.
async fn silent_listener() -> (u16, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = accepted.clone();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::Relaxed);
            held.push(socket);
        }
    });
    (port, accepted)
}

fn url(port: u16, vhost: &str) -> String {
    format!("amqp://guest:guest@127.0.0.1:{port}/{vhost}")
}

/// The silent node first in `amqp.url`: every start becomes ready on the live node (the worker
/// starts at a random node, so four starts meet the silent one first about half the time).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_node_is_passed_over_at_start() {
    let (silent, accepted) = silent_listener().await;
    for _ in 0..4 {
        let mut env = TestEnv::with_vars(&[("PREREG_SYNC__AMQP__CONNECT_TIMEOUT", "1s")]);
        let live = url(rabbitmq_addr().port(), &env.vhost);
        let urls = format!("{},{live}", url(silent, &env.vhost));
        env.vars.insert("AMQP_URL".into(), urls);
        env.spawn_app().await;
        env.stop_app().await;
    }
    assert!(
        accepted.load(Ordering::Relaxed) > 0,
        "the silent node was tried"
    );
}

/// The silent node alone: SIGTERM still ends the process, cleanly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_ends_a_worker_whose_broker_never_answers() {
    let (silent, accepted) = silent_listener().await;
    let env = TestEnv::new();
    env.migrate().await;
    let log = std::env::temp_dir().join(format!("prs-{}-silent.log", env.id));
    let mut worker = env.spawn_process(
        &[
            ("AMQP_URL", url(silent, &env.vhost).as_str()),
            ("PREREG_SYNC__WORKER__SHUTDOWN_GRACE", "3s"),
        ],
        &log,
    );
    wait_until(
        Duration::from_secs(20),
        Duration::from_millis(50),
        "the worker never tried the broker",
        async || accepted.load(Ordering::Relaxed) > 0,
    )
    .await;
    terminate(&worker);
    let mut status = None;
    wait_until(
        Duration::from_secs(20),
        Duration::from_millis(50),
        "SIGTERM did not end the worker",
        async || {
            status = worker.try_wait().unwrap();
            status.is_some()
        },
    )
    .await;
    assert!(status.unwrap().success(), "a clean exit");
}
