//! Operating the worker: `/metrics` counts what happened, `/readyz` follows
//! the database, and the `dlq` commands (run as the real binary) list, replay, delete and
//! archive without losing a message.

use std::{
    collections::{HashMap, HashSet},
    os::unix::fs::PermissionsExt,
    path::Path,
    process::Stdio,
    time::Duration,
};

use lapin::{
    BasicProperties,
    message::Delivery,
    types::{AMQPValue, FieldTable},
};
use prometheus_parse::Scrape;

use support::*;

/// Publishes `n` requests whose PRIDs have no application (PRG_DATA_SYNC_011) and `m` with a
/// wrong version (PRG_PAM_CORE_002), waits until all are dead-lettered; returns the PRIDs of
/// the first kind by transaction ID.
pub(crate) async fn dead_letter_some(
    broker: &Broker,
    n: usize,
    m: usize,
) -> HashMap<String, Vec<String>> {
    let mut unknown = HashMap::new();
    for i in 0..n {
        let ids = prids(2);
        broker
            .publish(
                &request_body(&ids),
                properties(&format!("tx-unknown-{i}"), Some("rp.replies")),
            )
            .await;
        unknown.insert(format!("tx-unknown-{i}"), ids);
    }
    for i in 0..m {
        let body = String::from_utf8(request_body(&prids(1)))
            .unwrap()
            .replace("\"1.0\"", "\"9.9\"");
        broker
            .publish(
                body.as_bytes(),
                properties(&format!("tx-version-{i}"), Some("rp.replies")),
            )
            .await;
    }
    broker
        .wait_for_depth(DLQ, (n + m) as u32, Duration::from_secs(30))
        .await;
    unknown
}

/// A worker dead-letters `n` requests with unknown PRIDs and `m` with a wrong version (as
/// [`dead_letter_some`]) and is stopped: the queue the `dlq` commands then work on alone.
pub(crate) async fn dead_letters_of_a_stopped_worker(
    env: &mut TestEnv,
    n: usize,
    m: usize,
) -> (Broker, HashMap<String, Vec<String>>) {
    env.spawn_app().await;
    let broker = env.broker().await;
    broker.reply_queue("rp.replies").await;
    let unknown = dead_letter_some(&broker, n, m).await;
    env.stop_app().await;
    (broker, unknown)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_exactly_what_happened() {
    let mut env = TestEnv::new();
    env.spawn_app().await;
    let ids = prids(6);
    env.seed_applications(&ids[..5]).await;
    let broker = env.broker().await;
    let replies = broker.reply_queue("rp.replies").await;
    publish_one_of_each_outcome(&broker, &ids, &replies).await;
    broker.get_n(&replies, 6, Duration::from_secs(30)).await;
    // An outcome is counted once its ack is sent, after the reply.
    wait_until(
        Duration::from_secs(10),
        Duration::from_millis(50),
        "not every outcome was counted",
        async || {
            let text = env.metrics().await;
            sample_sum(&parse(&text), "prereg_sync_messages_total", None) >= 6.0
        },
    )
    .await;

    let text = env.metrics().await;
    let scrape = parse(&text);
    assert_one_of_each_outcome_counted(&scrape);
    assert_no_identifier_in_labels(&scrape, &ids);
    assert!(!text.contains(&ids[0]), "no PRID anywhere in /metrics");
    env.stop_app().await;
}

/// 2 stored (one with an unknown PRID rejected), 1 duplicate, 1 rejected, 1 dead-lettered:
/// transactions `tx-m1` to `tx-m5`, `tx-m1` twice; the first five of `ids` are known.
async fn publish_one_of_each_outcome(broker: &Broker, ids: &[String], replies: &str) {
    broker
        .publish(&request_body(&ids[..2]), properties("tx-m1", Some(replies)))
        .await;
    broker
        .publish(
            &request_body(&ids[2..4]),
            properties("tx-m2", Some(replies)),
        )
        .await;
    broker
        .publish(
            &request_body(&[ids[4].clone(), ids[5].clone()]),
            properties("tx-m3", Some(replies)),
        )
        .await;
    // tx-m1 again once the first is answered (stored), so it is a duplicate.
    broker
        .wait_for_depth(replies, 3, Duration::from_secs(20))
        .await;
    broker
        .publish(&request_body(&ids[..2]), properties("tx-m1", Some(replies)))
        .await;
    broker
        .publish(b"not json", properties("tx-m4", Some(replies)))
        .await;
    let mut crash_looping = FieldTable::default();
    crash_looping.insert("x-delivery-count".into(), AMQPValue::LongLongInt(19));
    let props: BasicProperties = properties("tx-m5", Some(replies)).with_headers(crash_looping);
    broker.publish(&request_body(&ids[..1]), props).await;
}

/// The sum of `name`'s samples (those with `label` when given).
/// A `/metrics` text, parsed.
fn parse(text: &str) -> Scrape {
    Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).expect("Prometheus text")
}

fn sample_sum(scrape: &Scrape, name: &str, label: Option<(&str, &str)>) -> f64 {
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == name)
        .filter(|s| label.is_none_or(|(k, v)| s.labels.get(k) == Some(v)))
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            _ => 0.0,
        })
        .sum()
}

/// What `/metrics` says after [`publish_one_of_each_outcome`], every reply taken.
fn assert_one_of_each_outcome_counted(scrape: &Scrape) {
    let value = |name: &str, label: Option<(&str, &str)>| sample_sum(scrape, name, label);
    let messages = "prereg_sync_messages_total";
    assert_eq!(value(messages, Some(("outcome", "stored"))), 3.0);
    assert_eq!(value(messages, Some(("outcome", "duplicate"))), 1.0);
    assert_eq!(value(messages, Some(("outcome", "rejected"))), 1.0);
    assert_eq!(value(messages, Some(("outcome", "dead_lettered"))), 1.0);
    assert_eq!(
        value(
            "prereg_sync_error_replies_total",
            Some(("error_code", "PRG_CORE_REQ_015"))
        ),
        1.0
    );
    assert_eq!(
        value(
            "prereg_sync_error_replies_total",
            Some(("error_code", "PRS_DELIVERY_LIMIT"))
        ),
        1.0
    );
    assert_eq!(
        value("prereg_sync_replies_published_total", Some(("kind", "ack"))),
        4.0
    );
    assert_eq!(
        value(
            "prereg_sync_replies_published_total",
            Some(("kind", "error"))
        ),
        2.0
    );
    assert_eq!(
        value("prereg_sync_prids_total", Some(("result", "stored"))),
        5.0
    );
    assert_eq!(
        value(
            "prereg_sync_prids_total",
            Some(("result", "rejected_unknown"))
        ),
        1.0
    );
    assert_eq!(value("prereg_sync_broker_connected", None), 1.0);
    assert_eq!(value("prereg_sync_database_up", None), 1.0);
    assert_eq!(value("prereg_sync_in_flight_messages", None), 0.0);
    assert_eq!(value("prereg_sync_build_info", None), 1.0);
    assert!(value("prereg_sync_db_pool_connections", Some(("state", "max"))) >= 1.0);
    assert!(
        scrape
            .samples
            .iter()
            .any(|s| s.metric == "process_resident_memory_bytes")
    );
}

/// No label value is a PRID of `ids` or a transaction ID of [`publish_one_of_each_outcome`].
fn assert_no_identifier_in_labels(scrape: &Scrape, ids: &[String]) {
    let forbidden: HashSet<&str> = ids
        .iter()
        .map(String::as_str)
        .chain(["tx-m1", "tx-m2", "tx-m3", "tx-m4", "tx-m5"])
        .collect();
    for sample in &scrape.samples {
        for (_, label) in sample.labels.iter() {
            assert!(
                !forbidden.contains(label.as_str()),
                "label value {label} in {}",
                sample.metric
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_follows_the_database_and_liveness_stays() {
    let pg = Proxy::start(postgres_addr(), true).await;
    let mut env = TestEnv::new();
    env.database_via(pg.port());
    env.spawn_app().await;
    let addr = env.http.unwrap();
    let status = |path: &'static str| async move {
        reqwest::get(format!("http://{addr}{path}"))
            .await
            .unwrap()
            .status()
            .as_u16()
    };
    // `prereg-sync probe` (the container HEALTHCHECK) agrees with /readyz, by exit status.
    let probe = |path: &str| {
        prereg_sync(&HashMap::new())
            .args(["probe", "--path", path])
            .env("PREREG_SYNC__HTTP__LISTEN", addr.to_string())
            .output()
            .unwrap()
            .status
            .code()
    };
    assert_eq!(status("/readyz").await, 200);
    assert_eq!(status("/healthz").await, 200);
    assert_eq!(probe("/readyz"), Some(0));
    pg.cut();
    wait_until(
        Duration::from_secs(10),
        Duration::from_millis(100),
        "still ready with the database down",
        async || status("/readyz").await == 503,
    )
    .await;
    assert_eq!(status("/healthz").await, 200);
    assert_eq!(probe("/readyz"), Some(1), "not ready: the probe fails");
    assert_eq!(
        probe("/healthz"),
        Some(0),
        "alive: the liveness probe passes"
    );
    assert_eq!(env.metric("prereg_sync_database_up").await, 0.0);
    pg.restore();
    env.wait_ready(Duration::from_secs(20)).await;
    assert_eq!(env.metric("prereg_sync_database_up").await, 1.0);
    env.stop_app().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dlq_list_filters_groups_and_hides_prids() {
    let mut env = TestEnv::new();
    let (broker, unknown) = dead_letters_of_a_stopped_worker(&mut env, 3, 2).await;

    let table = env.cli_ok(&["dlq", "list"]);
    assert!(
        table.contains("tx-unknown-0") && table.contains("tx-version-1"),
        "{table}"
    );
    assert!(table.contains("PRG_DATA_SYNC_011") && table.contains("PRG_PAM_CORE_002"));
    assert!(table.contains("(5 message(s))"));
    for ids in unknown.values() {
        assert!(
            ids.iter().all(|id| !table.contains(id.as_str())),
            "no PRIDs without --show-ids"
        );
    }
    let with_ids = env.cli_ok(&["dlq", "list", "--show-ids"]);
    assert!(
        unknown["tx-unknown-0"]
            .iter()
            .all(|id| with_ids.contains(id.as_str()))
    );

    let filtered = env.cli_ok(&["dlq", "list", "--error-code", "PRG_PAM_CORE_002", "--json"]);
    let rows: Vec<serde_json::Value> = serde_json::from_str(&filtered).unwrap();
    assert_eq!(rows.len(), 2);
    assert!(
        rows.iter()
            .all(|r| r["error_code"] == "PRG_PAM_CORE_002" && r["retry_count"] == 0)
    );
    assert!(
        rows.iter()
            .all(|r| r["first_failure_time"].is_string() && r["app_id"] == "rp-test")
    );
    let one = env.cli_ok(&["dlq", "list", "--transaction-id", "tx-unknown-2", "--json"]);
    assert_eq!(
        serde_json::from_str::<Vec<serde_json::Value>>(&one)
            .unwrap()
            .len(),
        1
    );
    let future = env.cli_ok(&["dlq", "list", "--since", "2999-01-01T00:00:00Z", "--json"]);
    assert_eq!(
        serde_json::from_str::<Vec<serde_json::Value>>(&future)
            .unwrap()
            .len(),
        0
    );
    let recent = env.cli_ok(&["dlq", "list", "--since", "1h", "--limit", "4", "--json"]);
    assert_eq!(
        serde_json::from_str::<Vec<serde_json::Value>>(&recent)
            .unwrap()
            .len(),
        4
    );
    let groups: HashMap<String, u64> =
        serde_json::from_str(&env.cli_ok(&["dlq", "list", "--group", "--json"])).unwrap();
    assert_eq!(
        groups,
        HashMap::from([
            ("PRG_DATA_SYNC_011".into(), 3),
            ("PRG_PAM_CORE_002".into(), 2)
        ])
    );
    let detail = env.cli_ok(&["dlq", "show", "tx-version-0"]);
    assert!(detail.contains("x-error-code") && detail.contains("PRG_PAM_CORE_002"));
    assert!(!env.cli(&["dlq", "show", "tx-missing"]).status.success());
    assert_eq!(broker.depth(DLQ).await, 5, "listing changes nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dlq_replay_moves_exactly_what_matches_and_it_is_processed() {
    let mut env = TestEnv::new();
    env.spawn_app().await;
    let broker = env.broker().await;
    let replies = broker.reply_queue("rp.replies").await;
    let unknown = dead_letter_some(&broker, 5, 2).await;
    broker.get_n(&replies, 7, Duration::from_secs(10)).await;

    let dry = env.cli_ok(&[
        "dlq",
        "replay",
        "--error-code",
        "PRG_DATA_SYNC_011",
        "--dry-run",
    ]);
    assert!(dry.contains("matched=5 acted=0"), "{dry}");
    // Nothing marks "not reprocessed": a moved request would be answered within this window.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(broker.depth(DLQ).await, 7, "a dry run moves nothing");
    assert_eq!(broker.depth(&replies).await, 0, "nothing was reprocessed");

    // Fix the cause: the applications now exist.
    let all: Vec<String> = unknown.values().flatten().cloned().collect();
    env.seed_applications(&all).await;
    let out = env.cli_ok(&[
        "dlq",
        "replay",
        "--error-code",
        "PRG_DATA_SYNC_011",
        "--limit",
        "3",
    ]);
    assert!(out.contains("matched=3 acted=3 kept=4"), "{out}");
    let answered = broker.get_n(&replies, 3, Duration::from_secs(20)).await;
    for reply in &answered {
        assert_eq!(error_code(reply), "", "replayed requests succeed");
    }
    // Acked, so counted: the replayed requests are done with.
    env.wait_for_metric(
        "prereg_sync_messages_total{outcome=\"stored\"}",
        3.0,
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(broker.depth(DLQ).await, 4);
    assert_eq!(env.rows("sync_transaction").await, 3);
    assert_eq!(
        env.count("SELECT count(*) FROM prereg.sync_audit WHERE event = 'REPLAYED'")
            .await,
        3
    );
    assert_eq!(
        env.count("SELECT count(*) FROM prereg.sync_audit WHERE event = 'DLQ_REPLAY_RUN'")
            .await,
        1
    );
    assert_eq!(
        env.metric("prereg_sync_replayed_messages_received_total")
            .await,
        3.0
    );
    let groups: HashMap<String, u64> =
        serde_json::from_str(&env.cli_ok(&["dlq", "list", "--group", "--json"])).unwrap();
    assert_eq!(
        groups,
        HashMap::from([
            ("PRG_DATA_SYNC_011".into(), 2),
            ("PRG_PAM_CORE_002".into(), 2)
        ])
    );
    env.stop_app().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_killed_midway_loses_nothing() {
    let mut env = TestEnv::new();
    // Stopped: replayed messages stay in the request queue for counting.
    let (broker, unknown) = dead_letters_of_a_stopped_worker(&mut env, 60, 0).await;

    let mut child = env
        .command()
        .args(["dlq", "replay", "--all", "--rate", "20"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // The replay has started.
    broker
        .wait_for_depth(REQUEST_QUEUE, 10, Duration::from_secs(30))
        .await;
    child.kill().unwrap(); // SIGKILL midway
    child.wait().unwrap();
    // The broker has closed the killed connection: what it held unacked is back in the DLQ.
    wait_until(
        Duration::from_secs(10),
        Duration::from_millis(50),
        "fewer than 60 messages in the two queues: held by the killed replay, or lost",
        async || broker.depth(REQUEST_QUEUE).await + broker.depth(DLQ).await >= 60,
    )
    .await;
    let moved = broker.depth(REQUEST_QUEUE).await;
    let left = broker.depth(DLQ).await;
    assert!(moved < 60, "killed midway ({moved} moved)");
    let mut seen: HashSet<String> = HashSet::new();
    for queue in [REQUEST_QUEUE, DLQ] {
        let n = broker.depth(queue).await as usize;
        for message in broker.get_n(queue, n, Duration::from_secs(10)).await {
            seen.insert(
                message
                    .properties
                    .message_id()
                    .as_ref()
                    .unwrap()
                    .to_string(),
            );
        }
    }
    assert!(moved + left >= 60, "at most duplicated, never lost");
    let expected: HashSet<String> = unknown.keys().cloned().collect();
    assert_eq!(seen, expected, "every message is in one of the two queues");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_then_replay_from_file_round_trips_byte_for_byte() {
    let mut env = TestEnv::new();
    env.spawn_app().await;
    let broker = env.broker().await;
    broker.reply_queue("rp.replies").await;
    dead_letter_some(&broker, 2, 2).await;
    env.stop_app().await;
    let originals = dead_letters_copied_back(&broker).await;

    let file = std::env::temp_dir().join(format!("prs-{}-archive.jsonl", env.id));
    export_then_delete_all(&env, &broker, &file).await;

    let replayed = env.cli_ok(&["dlq", "replay", "--from-file", file.to_str().unwrap()]);
    assert!(replayed.contains("acted=4"), "{replayed}");
    for message in broker
        .get_n(REQUEST_QUEUE, 4, Duration::from_secs(10))
        .await
    {
        assert_replayed_as_archived(&message, &originals);
    }
    std::fs::remove_file(file).unwrap();
}

/// Messages by message ID: body and properties.
type Messages = HashMap<String, (Vec<u8>, BasicProperties)>;

/// The four messages of the DLQ, identical copies of them left in it.
async fn dead_letters_copied_back(broker: &Broker) -> Messages {
    let originals: Messages = broker
        .get_n(DLQ, 4, Duration::from_secs(10))
        .await
        .into_iter()
        .map(|d| {
            (
                d.properties.message_id().as_ref().unwrap().to_string(),
                (d.data.clone(), d.properties.clone()),
            )
        })
        .collect();
    // get_n acked them: put identical copies back through the DLX for the tools to work on.
    for (body, props) in originals.values() {
        let confirm = broker
            .channel
            .basic_publish(
                "prereg.reverse-sync.dlx".into(),
                ROUTING_KEY.into(),
                Default::default(),
                body,
                props.clone(),
            )
            .await
            .unwrap()
            .await
            .unwrap();
        assert!(confirm.is_ack());
    }
    originals
}

/// `dlq export` writes the DLQ to `file` (owner-only, never overwritten) and leaves the queue
/// as it was; `dlq delete` wants `--yes`, and `--all` without a filter, then empties it.
async fn export_then_delete_all(env: &TestEnv, broker: &Broker, file: &Path) {
    let out = env.cli_ok(&["dlq", "export", "--file", file.to_str().unwrap()]);
    assert!(out.contains("exported 4"), "{out}");
    assert_eq!(
        std::fs::metadata(file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert!(
        !env.cli(&["dlq", "export", "--file", file.to_str().unwrap()])
            .status
            .success(),
        "never overwrites"
    );
    assert_eq!(
        broker.depth(DLQ).await,
        4,
        "export leaves the queue as it was"
    );
    assert!(
        !env.cli(&["dlq", "delete", "--all"]).status.success(),
        "delete needs --yes"
    );
    let refused = env.cli(&["dlq", "delete", "--yes"]);
    assert!(
        !refused.status.success(),
        "delete without a filter needs --all"
    );
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("add --all"),
        "{refused:?}"
    );
    assert_eq!(
        broker.depth(DLQ).await,
        4,
        "a refused delete removes nothing"
    );
    let deleted = env.cli_ok(&["dlq", "delete", "--yes", "--all"]);
    assert!(deleted.contains("acted=4"), "{deleted}");
    assert_eq!(broker.depth(DLQ).await, 0);
}

/// A message replayed from the archive is its original (`originals` by message ID): the same
/// body and properties, counted as replayed, without the failure headers.
fn assert_replayed_as_archived(message: &Delivery, originals: &Messages) {
    let id = message
        .properties
        .message_id()
        .as_ref()
        .unwrap()
        .to_string();
    let (body, props) = &originals[&id];
    assert_eq!(&message.data, body, "body byte for byte");
    assert_eq!(message.properties.correlation_id(), props.correlation_id());
    assert_eq!(message.properties.reply_to(), props.reply_to());
    assert_eq!(message.properties.app_id(), props.app_id());
    assert_eq!(message.properties.content_type(), props.content_type());
    assert_eq!(header_int(message, "x-replay-count"), Some(1));
    assert_eq!(
        header_str(message, "x-error-code"),
        None,
        "failure headers removed"
    );
    assert_eq!(
        header_str(message, "x-transaction-id").as_deref(),
        Some(id.as_str())
    );
}

/// Retention purges want `--yes`, refuse a cutoff younger than a day, count with `--dry-run`,
/// and answer scripts in JSON.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purges_want_confirmation_and_a_day_and_dry_run_counts() {
    let env = TestEnv::new();
    env.migrate().await;
    let db = env.db().await;
    db.batch_execute(
        "INSERT INTO prereg.sync_audit (event_time, app_id, event, outcome) VALUES
           (now() - interval '40 days', 'rp', 'STORED', 'SUCCESS'),
           (now() - interval '2 hours', 'rp', 'STORED', 'SUCCESS')",
    )
    .await
    .unwrap();
    let refused = |args: &[&str], why: &str| {
        let out = env.cli(args);
        assert!(!out.status.success(), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(why), "{args:?}: {stderr}");
    };
    refused(
        &["maintenance", "purge-audit", "--older-than", "30d"],
        "--yes",
    );
    refused(
        &["maintenance", "purge-audit", "--older-than", "0s", "--yes"],
        "at least 1day",
    );
    let dry = env.cli_ok(&[
        "maintenance",
        "purge-audit",
        "--older-than",
        "1d",
        "--dry-run",
        "--json",
    ]);
    let dry: serde_json::Value = serde_json::from_str(&dry).unwrap();
    assert_eq!(dry["rows"], 1, "{dry}");
    assert_eq!(dry["dry_run"], true);
    let done = env.cli_ok(&["maintenance", "purge-audit", "--older-than", "1d", "--yes"]);
    assert_eq!(done.trim(), "deleted 1 audit rows older than 1day");
    let left: i64 = db
        .query_one("SELECT count(*) FROM prereg.sync_audit", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(left, 1, "the young row stays");
}
