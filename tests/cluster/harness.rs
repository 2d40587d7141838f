//! What the cluster tests share: the scripts, a test environment on the cluster, the
//! 3,000-request stream, the recovery clock and the final accounting.

use std::{
    net::SocketAddr,
    path::PathBuf,
    process::Command,
    time::{Duration, Instant},
};

use lapin::{
    options::QueueDeclareOptions,
    types::{AMQPValue, FieldTable},
};
use tokio_util::sync::CancellationToken;

use support::*;

pub const REQUESTS: usize = 3_000;
/// The test's reply queue: a quorum queue, so replies survive the node that hosts it.
pub const REPLIES: &str = "rp.replies";
/// How long a stream may take to be answered whole, faults included.
const STREAM_LIMIT: Duration = Duration::from_secs(300);
pub const ACK_REPLIES: &str = "prereg_sync_replies_published_total{kind=\"ack\"}";

fn script_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("scripts")
        .join(name)
}

fn script(name: &str, args: &[&str]) -> String {
    must(Command::new(script_path(name)).args(args))
}

/// `scripts/cluster ARGS`.
pub fn cluster(args: &[&str]) {
    script("cluster", args);
}

/// `scripts/pg-standby ARGS`.
pub fn pg_standby(args: &[&str]) {
    script("pg-standby", args);
}

/// `rabbitmqctl` against node `cN@localhost`.
pub fn ctl(node: usize, args: &[&str]) -> String {
    let name = format!("c{node}@localhost");
    rabbitmqctl(&[&["-n", name.as_str()], args].concat())
}

/// Node `cN`'s AMQP URL on `vhost`.
pub fn node_url(node: usize, vhost: &str) -> String {
    format!("amqp://guest:guest@127.0.0.1:{}/{vhost}", 5680 + node)
}

/// An `amqp.url` list of `nodes`, in that order.
pub fn node_list(nodes: &[usize], vhost: &str) -> String {
    nodes
        .iter()
        .map(|node| node_url(*node, vhost))
        .collect::<Vec<_>>()
        .join(",")
}

/// A [`TestEnv`] whose vhost lives on the test cluster (up before it is made) and whose worker
/// is given the nodes `worker_nodes`. Its database is on the machine's PostgreSQL.
pub struct ClusterEnv {
    pub env: TestEnv,
}

impl ClusterEnv {
    pub fn new(worker_nodes: &[usize]) -> ClusterEnv {
        log_failovers();
        cluster(&["up"]);
        let mut env = TestEnv::new();
        ctl(1, &["add_vhost", &env.vhost]);
        ctl(
            1,
            &[
                "set_permissions",
                "-p",
                &env.vhost,
                "guest",
                ".*",
                ".*",
                ".*",
            ],
        );
        let url = node_list(worker_nodes, &env.vhost);
        env.vars.insert("AMQP_URL".into(), url);
        ClusterEnv { env }
    }

    pub fn url(&self, node: usize) -> String {
        node_url(node, &self.env.vhost)
    }

    /// The node (1-3) the worker at `addr`, given `worker_nodes`, consumes from.
    pub async fn consuming_node(addr: SocketAddr, worker_nodes: &[usize]) -> usize {
        for (position, node) in worker_nodes.iter().enumerate() {
            let sample = format!("prereg_sync_broker_node{{index=\"{}\"}}", position + 1);
            if metric_at(addr, &sample).await == 1.0 {
                return *node;
            }
        }
        panic!("the worker reports no node in use")
    }

    /// The node (1-3) leading the request queue.
    pub fn request_queue_leader(&self) -> usize {
        let out = ctl(
            1,
            &[
                "-q",
                "list_queues",
                "-p",
                &self.env.vhost,
                "name",
                "leader",
                "--no-table-headers",
            ],
        );
        let leader = out
            .lines()
            .find_map(|line| line.strip_prefix(REQUEST_QUEUE))
            .expect("the request queue is listed")
            .trim();
        leader[1..2].parse().expect("a leader named cN@localhost")
    }
}

impl Drop for ClusterEnv {
    #[allow(
        clippy::let_underscore_must_use,
        reason = "cleanup at best: a drop, maybe while a failed assertion unwinds, cannot fail the test"
    )]
    fn drop(&mut self) {
        // Whatever the test left down comes back for the next one.
        let _ = Command::new(script_path("cluster")).arg("up").output();
        let _ = rabbitmqctl_command()
            .args(["-n", "c1@localhost", "delete_vhost", &self.env.vhost])
            .output();
    }
}

/// The worker's connection events on stderr (not one line per request), to read a recovery.
pub fn log_failovers() {
    prereg_sync::telemetry::init_logging(&prereg_sync::config::LogSettings {
        format: prereg_sync::config::LogFormat::Text,
        level: "warn,prereg_sync::amqp=info,prereg_sync::worker=info,prereg_sync::worker::suspects=warn,prereg_sync::health=info"
            .into(),
    });
}

/// Migrates, seeds 3,000 known PRIDs, declares the worker's topology and the quorum reply
/// queue, and publishes one request per PRID through `publish_url`, every confirm awaited.
pub async fn publish_stream(env: &TestEnv, publish_url: &str) {
    env.migrate().await;
    let ids = prids(REQUESTS);
    env.seed_applications(&ids).await;
    env.declare_topology().await;
    let broker = Broker::connect_url(publish_url).await;
    let mut arguments = FieldTable::default();
    arguments.insert(
        "x-queue-type".into(),
        AMQPValue::LongString("quorum".into()),
    );
    broker
        .channel
        .queue_declare(
            REPLIES.into(),
            QueueDeclareOptions {
                durable: true,
                ..Default::default()
            },
            arguments,
        )
        .await
        .unwrap();
    broker.publish_stream(&ids, 1, REPLIES).await;
    #[allow(
        clippy::let_underscore_must_use,
        reason = "the test's figures are taken; a connection the broker closed first changes nothing"
    )]
    let _ = broker.connection.close(200, "".into()).await;
}

/// Waits until the workers at `addrs` have published `at_least` ack replies together.
pub async fn wait_for_acks(addrs: &[SocketAddr], at_least: f64) {
    let failure = format!("fewer than {at_least} replies");
    wait_until(
        STREAM_LIMIT,
        Duration::from_millis(20),
        &failure,
        async || total_acks(addrs).await >= at_least,
    )
    .await;
}

async fn total_acks(addrs: &[SocketAddr]) -> f64 {
    let mut total = 0.0;
    for addr in addrs {
        total += metric_at(*addr, ACK_REPLIES).await;
    }
    total
}

/// Records when the workers' confirmed ack replies grow, to time the recovery from a fault.
pub struct ReplyClock {
    stop: CancellationToken,
    task: tokio::task::JoinHandle<Vec<(Instant, f64)>>,
}

/// Seconds from the fault to the first reply after it, and the longest time without a reply
/// from the fault until the stream was answered.
#[derive(Debug)]
pub struct Recovery {
    pub first_reply: Duration,
    pub longest_stall: Duration,
}

impl ReplyClock {
    pub fn start(addrs: Vec<SocketAddr>) -> ReplyClock {
        let stop = CancellationToken::new();
        let token = stop.clone();
        let task = tokio::spawn(async move {
            let mut changes = Vec::new();
            let mut last = -1.0;
            while !token.is_cancelled() {
                let now = total_acks(&addrs).await;
                if now != last {
                    changes.push((Instant::now(), now));
                    last = now;
                }
                // The sampling interval of the clock: acks are counted, not announced.
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            changes
        });
        ReplyClock { stop, task }
    }

    pub async fn finish(self, fault: Instant) -> Recovery {
        self.stop.cancel();
        let changes = self.task.await.unwrap();
        let after: Vec<Instant> = changes
            .iter()
            .filter(|(at, _)| *at > fault)
            .map(|(at, _)| *at)
            .collect();
        let first = *after.first().expect("a reply after the fault");
        let longest_stall = std::iter::once(fault)
            .chain(after.iter().copied())
            .zip(after.iter().copied())
            .map(|(before, at)| at - before)
            .max()
            .unwrap_or_default();
        Recovery {
            first_reply: first - fault,
            longest_stall,
        }
    }
}

/// Takes every reply from the reply queue through `url` until all requests are answered, then
/// whatever arrives in the next seconds (repeated answers), and checks the stream came through
/// whole; prints one `RESULT` line for docs/scaling.md.
pub async fn check_stream(env: &TestEnv, url: &str, test: &str, recovery: &Recovery) {
    let broker = Broker::connect_url(url).await;
    let mut answered = Answers::new();
    // One `basic.get` at a time: a consumer would take more than it is asked for, and what
    // it holds beyond that stays unacked until the channel closes.
    let deadline = Instant::now() + STREAM_LIMIT;
    loop {
        let wait = if answered.len() < REQUESTS {
            deadline.saturating_duration_since(Instant::now())
        } else {
            Duration::from_secs(3)
        };
        match broker.get(REPLIES, wait).await {
            Some(reply) => {
                assert_eq!(error_code(&reply), "", "no error reply");
                record_answer(&mut answered, &reply);
            }
            None => break,
        }
    }
    let replies: usize = answered.values().map(Vec::len).sum();
    assert_eq!(answered.len(), REQUESTS, "every request answered");
    assert!(
        all_identical(&answered),
        "all replies for one transaction are byte-identical"
    );
    let stored = env.rows("processed_prereg_list").await;
    let distinct = env
        .count("SELECT count(DISTINCT prereg_id) FROM prereg.processed_prereg_list")
        .await;
    assert_eq!((stored, distinct), (REQUESTS as i64, REQUESTS as i64));
    assert_eq!(env.rows("sync_transaction").await, REQUESTS as i64);
    let duplicates = env
        .count("SELECT count(*) FROM prereg.sync_audit WHERE event = 'DUPLICATE'")
        .await;
    // Acks of the last replies may still be on their way to the queue.
    wait_until(
        Duration::from_secs(15),
        Duration::from_millis(100),
        "requests left in the queue",
        async || broker.depth(REQUEST_QUEUE).await == 0,
    )
    .await;
    assert_eq!(broker.depth(DLQ).await, 0, "nothing dead-lettered");
    #[allow(
        clippy::let_underscore_must_use,
        reason = "the test's figures are taken; a connection the broker closed first changes nothing"
    )]
    let _ = broker.connection.close(200, "".into()).await;
    println!(
        "RESULT {test}: recovery {:.2}s (longest stall {:.2}s), answered {}, replies {}, \
         PRIDs stored {stored}, repeated replies {}, DUPLICATE audit rows {duplicates}",
        recovery.first_reply.as_secs_f64(),
        recovery.longest_stall.as_secs_f64(),
        answered.len(),
        replies,
        replies - answered.len(),
    );
}
