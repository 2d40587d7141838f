//! End-to-end benchmark (`scripts/bench`): the worker's throughput against the physical limits
//! of the local RabbitMQ and PostgreSQL measured in the same run, plus the consumed-status job.
//! Each scenario runs the real release binary in its own vhost and database and is verified at
//! its end (every PRID stored once, every request answered once): a fast wrong run fails.

use std::{
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, ensure};
use futures_util::StreamExt;
use lapin::{
    BasicProperties, Channel, Connection,
    options::{
        BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
        ConfirmSelectOptions, QueueDeclareOptions,
    },
    types::FieldTable,
};
use prereg_sync::{
    config::Settings,
    loadgen::{generate_prids, percentile, request_body, seed_applications},
    storage::{Database, migrate},
};
use support::must;

const BIN: &str = env!("CARGO_BIN_EXE_prereg-sync");
const CONFIG: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/config");

/// `--cluster`: the broker is `scripts/cluster`'s three nodes (the worker given all three),
/// not the machine's node, for docs/scaling.md's cluster-against-one-node comparison.
fn on_cluster() -> bool {
    std::env::args().any(|a| a == "--cluster")
}

fn rabbitmqctl() -> Command {
    let mut cmd = Command::new("rabbitmqctl");
    if on_cluster() {
        cmd.args(["-n", "c1@localhost"]);
    }
    cmd
}

fn amqp_url(vhost: &str) -> String {
    let ports: &[u16] = if on_cluster() {
        &[5681, 5682, 5683]
    } else {
        &[5672]
    };
    ports
        .iter()
        .map(|port| format!("amqp://guest:guest@127.0.0.1:{port}/{vhost}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// One isolated environment: a vhost and a database, removed at the end.
struct Env {
    name: String,
}

impl Env {
    fn new(name: &str) -> Env {
        let name = format!("prs_bench_{name}");
        let _ = rabbitmqctl().args(["delete_vhost", &name]).output();
        must(rabbitmqctl().args(["add_vhost", &name]));
        must(rabbitmqctl().args(["set_permissions", "-p", &name, "guest", ".*", ".*", ".*"]));
        psql(
            "postgres",
            &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
        );
        Env { name }
    }

    fn vars(&self) -> Vec<(String, String)> {
        vec![
            ("AMQP_URL".into(), amqp_url(&self.name)),
            (
                "DATABASE_URL".into(),
                format!("postgres://postgres@127.0.0.1:5432/{}", self.name),
            ),
            ("PREREG_SYNC__HTTP__LISTEN".into(), "127.0.0.1:0".into()),
            ("PREREG_SYNC__CONSUMED_JOB__ENABLED".into(), "false".into()),
        ]
    }

    fn settings(&self) -> Settings {
        Settings::load_from(CONFIG.as_ref(), &self.vars().into_iter().collect()).expect("settings")
    }

    fn spawn_worker(&self) -> Worker {
        let mut cmd = Command::new(BIN);
        cmd.args(["--config-dir", CONFIG, "run"])
            .envs(self.vars())
            .env("RUST_LOG", "warn");
        Worker(
            cmd.stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("worker starts"),
        )
    }

    fn count(&self, sql: &str) -> i64 {
        psql(&self.name, sql).trim().parse().expect("a count")
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        let _ = rabbitmqctl().args(["delete_vhost", &self.name]).output();
        psql(
            "postgres",
            &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
        );
    }
}

fn psql(db: &str, sql: &str) -> String {
    must(Command::new("psql").args(["-h", "127.0.0.1", "-U", "postgres", "-d", db, "-qAtc", sql]))
}

/// A worker process, stopped with SIGTERM (and waited for) when dropped.
struct Worker(Child);

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        let _ = self.0.wait();
    }
}

fn stop(worker: Worker) {
    drop(worker);
}

/// Peak resident memory of a process, sampled until it exits or `stop` is set.
fn sample_rss(
    pid: u32,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<u64> {
    std::thread::spawn(move || {
        let mut peak = 0;
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
                break;
            };
            let rss = status
                .lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
                .unwrap_or(0);
            peak = peak.max(rss);
            std::thread::sleep(Duration::from_millis(50));
        }
        peak
    })
}

/// CPU seconds (user + system) used so far by the worker, PostgreSQL, RabbitMQ and this
/// benchmark (the client publishing and collecting). Sampled before and after a scenario, the
/// difference is a process-level profile: which program the machine's two cores worked for.
#[derive(Clone, Copy, Default)]
struct CpuSplit {
    worker: f64,
    postgres: f64,
    rabbitmq: f64,
    client: f64,
}

impl CpuSplit {
    fn sample(worker_pid: u32) -> CpuSplit {
        let mut split = CpuSplit::default();
        let me = std::process::id();
        let Ok(entries) = std::fs::read_dir("/proc") else {
            return split;
        };
        for entry in entries.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<u32>().ok())
            else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                continue;
            };
            // `pid (comm) state ...`: utime and stime are fields 14 and 15, in clock ticks.
            let Some((head, rest)) = stat.rsplit_once(") ") else {
                continue;
            };
            let comm = head.split_once(" (").map_or("", |(_, comm)| comm);
            let fields: Vec<&str> = rest.split_whitespace().collect();
            let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok());
            let (Some(user), Some(system)) = (ticks(11), ticks(12)) else {
                continue;
            };
            let seconds = (user + system) / 100.0;
            match comm {
                _ if pid == worker_pid => split.worker += seconds,
                _ if pid == me => split.client += seconds,
                "postgres" => split.postgres += seconds,
                "beam.smp" | "erl_child_setup" | "inet_gethost" | "epmd" => {
                    split.rabbitmq += seconds
                }
                _ => {}
            }
        }
        split
    }

    /// CPU seconds per 1,000 requests between two samples.
    fn per_thousand(self, earlier: CpuSplit, requests: usize) -> CpuSplit {
        let k = 1000.0 / requests as f64;
        CpuSplit {
            worker: (self.worker - earlier.worker) * k,
            postgres: (self.postgres - earlier.postgres) * k,
            rabbitmq: (self.rabbitmq - earlier.rabbitmq) * k,
            client: (self.client - earlier.client) * k,
        }
    }
}

impl std::fmt::Display for CpuSplit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "worker {:.3} s, PostgreSQL {:.3} s, RabbitMQ {:.3} s, bench client {:.3} s",
            self.worker, self.postgres, self.rabbitmq, self.client
        )
    }
}

async fn channel(env: &Env) -> anyhow::Result<(Connection, Channel)> {
    let settings = env.settings();
    let connection = prereg_sync::amqp::connect(&settings.amqp).await?;
    let channel = connection.create_channel().await?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    Ok((connection, channel))
}

async fn declare_reply_queue(channel: &Channel) -> anyhow::Result<()> {
    let durable = QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };
    channel
        .queue_declare("bench.replies".into(), durable, FieldTable::default())
        .await?;
    Ok(())
}

/// Publishes `requests` requests of `batch` PRIDs each (confirms pipelined), optionally paced.
async fn publish(
    channel: &Channel,
    settings: &Settings,
    prids: &[String],
    batch: usize,
    rate: Option<f64>,
) -> anyhow::Result<Vec<Instant>> {
    let mut sent = Vec::with_capacity(prids.len() / batch);
    let start = Instant::now();
    for (i, chunk) in prids.chunks(batch).enumerate() {
        if let Some(rate) = rate {
            tokio::time::sleep_until((start + Duration::from_secs_f64(i as f64 / rate)).into())
                .await;
        }
        let properties = BasicProperties::default()
            .with_message_id(format!("b-{i}").into())
            .with_correlation_id(i.to_string().into())
            .with_reply_to("bench.replies".into())
            .with_content_type("application/json".into())
            .with_delivery_mode(2);
        sent.push(Instant::now());
        let confirm = channel
            .basic_publish(
                settings.amqp.exchange.as_str().into(),
                settings.amqp.routing_key.as_str().into(),
                BasicPublishOptions::default(),
                &request_body(chunk),
                properties,
            )
            .await?;
        drop(confirm);
        if i % 1000 == 999 {
            channel.wait_for_confirms().await?;
        }
    }
    channel.wait_for_confirms().await?;
    Ok(sent)
}

/// Reads `n` replies, each request answered exactly once with an ack; returns each request's
/// reply arrival time, by request index.
async fn collect(channel: &Channel, n: usize) -> anyhow::Result<Vec<Instant>> {
    let mut consumer = channel
        .basic_consume(
            "bench.replies".into(),
            "".into(),
            BasicConsumeOptions {
                no_ack: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await?;
    let mut arrived: Vec<Option<Instant>> = vec![None; n];
    for _ in 0..n {
        let delivery = tokio::time::timeout(Duration::from_secs(120), consumer.next())
            .await
            .context("replies stopped arriving")?
            .context("reply consumer ended")??;
        let now = Instant::now();
        ensure!(
            delivery.properties.kind().as_ref().map(|k| k.as_str()) == Some("ack"),
            "an error reply"
        );
        let index: usize = delivery
            .properties
            .correlation_id()
            .as_ref()
            .context("correlation")?
            .as_str()
            .parse()?;
        ensure!(
            arrived.get(index).is_some_and(Option::is_none),
            "request {index} answered twice"
        );
        arrived[index] = Some(now);
    }
    channel
        .basic_cancel(consumer.tag(), Default::default())
        .await?;
    Ok(arrived.into_iter().flatten().collect())
}

struct Scenario {
    requests_per_s: f64,
    prids_per_s: f64,
    peak_rss_mib: f64,
    /// CPU seconds per 1,000 requests, by process.
    cpu: CpuSplit,
}

/// Pre-publishes the requests, starts the worker, times first to last reply, verifies.
async fn scenario(name: &str, requests: usize, batch: usize) -> anyhow::Result<Scenario> {
    let env = Env::new(name);
    let settings = env.settings();
    migrate::prepare_database(&Database::new(&settings.database)?, true).await?;
    let prids = generate_prids(&settings, requests * batch);
    seed_applications(&settings, &prids).await?;
    let (connection, channel) = channel(&env).await?;
    prereg_sync::amqp::topology::declare(&connection, &settings.amqp, &settings.retry.delays)
        .await?;
    declare_reply_queue(&channel).await?;
    publish(&channel, &settings, &prids, batch, None).await?;
    let worker = env.spawn_worker();
    let cpu_before = CpuSplit::sample(worker.0.id());
    let stop_sampling = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = sample_rss(worker.0.id(), stop_sampling.clone());
    let arrived = collect(&channel, requests).await?;
    let cpu = CpuSplit::sample(worker.0.id()).per_thousand(cpu_before, requests);
    let first = arrived.iter().min().copied().context("no reply")?;
    let last = arrived.iter().max().copied().context("no reply")?;
    stop_sampling.store(true, std::sync::atomic::Ordering::Relaxed);
    let peak_kib = sampler.join().unwrap_or(0);
    stop(worker);
    ensure!(
        env.count("SELECT count(*) FROM prereg.sync_transaction") == requests as i64,
        "{name}: transactions"
    );
    ensure!(
        env.count("SELECT count(*) FROM prereg.processed_prereg_list") == prids.len() as i64,
        "{name}: PRIDs"
    );
    ensure!(
        env.count("SELECT count(DISTINCT prereg_id) FROM prereg.intf_processed_prereg_list")
            == prids.len() as i64,
        "{name}: interface rows"
    );
    let secs = (last - first).as_secs_f64().max(1e-9);
    println!(
        "  {name}: verified: {requests} requests answered once, {} PRIDs stored once",
        prids.len()
    );
    let _ = connection.close(200, "".into()).await;
    Ok(Scenario {
        requests_per_s: (requests - 1) as f64 / secs,
        prids_per_s: ((requests - 1) * batch) as f64 / secs,
        peak_rss_mib: peak_kib as f64 / 1024.0,
        cpu,
    })
}

/// Reply latency (publish to reply) at a fixed publish rate, the worker already consuming.
async fn latency(requests: usize, rate: f64) -> anyhow::Result<(Duration, Duration)> {
    let env = Env::new("latency");
    let settings = env.settings();
    migrate::prepare_database(&Database::new(&settings.database)?, true).await?;
    let prids = generate_prids(&settings, requests);
    seed_applications(&settings, &prids).await?;
    let worker = env.spawn_worker();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !must(rabbitmqctl().args(["list_consumers", "-q", "-p", &env.name])).contains("requests")
    {
        ensure!(Instant::now() < deadline, "worker did not start consuming");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (publish_connection, publish_channel) = channel(&env).await?;
    let (reply_connection, reply_channel) = channel(&env).await?;
    declare_reply_queue(&reply_channel).await?;
    let collector = tokio::spawn(async move { collect(&reply_channel, requests).await });
    let sent = publish(&publish_channel, &settings, &prids, 1, Some(rate)).await?;
    let arrived = collector.await??;
    stop(worker);
    let mut latencies: Vec<Duration> = sent
        .iter()
        .zip(&arrived)
        .map(|(s, a)| a.saturating_duration_since(*s))
        .collect();
    latencies.sort_unstable();
    ensure!(
        env.count("SELECT count(*) FROM prereg.sync_transaction") == requests as i64,
        "latency: transactions"
    );
    let _ = publish_connection.close(200, "".into()).await;
    let _ = reply_connection.close(200, "".into()).await;
    Ok((percentile(&latencies, 0.50), percentile(&latencies, 0.99)))
}

/// Limit probe A: the broker round trip with no work. A minimal consumer with the worker's
/// prefetch that, per request, publishes a confirmed persistent reply and acks it, confirms
/// pipelined across the prefetch window and acks batched (`multiple`).
async fn probe_broker(requests: usize) -> anyhow::Result<f64> {
    let env = Env::new("probe_a");
    let settings = env.settings();
    let (connection, channel) = channel(&env).await?;
    // The worker's own topology (quorum request queue), so the probe's requests take the same
    // broker path as the scenario's: the limit is the broker's, not a cheaper queue type's.
    prereg_sync::amqp::topology::declare(&connection, &settings.amqp, &settings.retry.delays)
        .await?;
    declare_reply_queue(&channel).await?;
    let prids = vec!["75124301328620".to_owned(); requests];
    publish(&channel, &settings, &prids, 1, None).await?;
    let consume_channel = connection.create_channel().await?;
    consume_channel
        .basic_qos(settings.amqp.prefetch, BasicQosOptions::default())
        .await?;
    let reply_channel = connection.create_channel().await?;
    reply_channel
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    let mut consumer = consume_channel
        .basic_consume(
            settings.amqp.request_queue.as_str().into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    let window = usize::from(settings.amqp.prefetch / 2).max(1);
    let start = Instant::now();
    let mut pending = 0;
    for done in 1..=requests {
        let delivery = consumer.next().await.context("probe consumer ended")??;
        let confirm = reply_channel
            .basic_publish(
                "".into(),
                "bench.replies".into(),
                BasicPublishOptions::default(),
                &delivery.data,
                BasicProperties::default().with_delivery_mode(2),
            )
            .await?;
        drop(confirm);
        pending += 1;
        if pending == window || done == requests {
            reply_channel.wait_for_confirms().await?;
            delivery
                .acker
                .ack(BasicAckOptions { multiple: true })
                .await?;
            pending = 0;
        }
    }
    let rate = requests as f64 / start.elapsed().as_secs_f64();
    let _ = connection.close(200, "".into()).await;
    Ok(rate)
}

/// Limit probe B: PostgreSQL COPY of the same PRID rows into tables created LIKE the two PRID
/// tables INCLUDING ALL (indexes kept, logged), in one transaction.
async fn probe_database(prids: usize) -> anyhow::Result<f64> {
    let env = Env::new("probe_b");
    let settings = env.settings();
    let database = Database::new(&settings.database)?;
    migrate::prepare_database(&database, true).await?;
    let ids = generate_prids(&settings, prids);
    let (mut client, _driver) = database.connect(None).await?;
    client
        .batch_execute(
            "CREATE TABLE probe_processed (LIKE prereg.processed_prereg_list INCLUDING ALL); \
             CREATE TABLE probe_intf (LIKE prereg.intf_processed_prereg_list INCLUDING ALL)",
        )
        .await?;
    let processed: String = ids
        .iter()
        .map(|id| format!("{id}\t2026-11-22 07:05:08.85\tConsumed\tProcessed by registration processor\tbench\teng\tprereg-sync\t2026-11-22 07:05:09\n"))
        .collect();
    let intf: String = ids
        .iter()
        .map(|id| format!("{id}\t2026-11-22 07:05:08.85\teng\tprereg-sync\t2026-11-22 07:05:09\n"))
        .collect();
    let start = Instant::now();
    let tx = client.transaction().await?;
    for (sql, data) in [
        (
            "COPY probe_processed (prereg_id, first_received_dtimes, status_code, status_comments, prereg_trn_id, lang_code, cr_by, cr_dtimes) FROM STDIN",
            processed,
        ),
        (
            "COPY probe_intf (prereg_id, received_dtimes, lang_code, cr_by, cr_dtimes) FROM STDIN",
            intf,
        ),
    ] {
        let sink = tx.copy_in(sql).await?;
        futures_util::pin_mut!(sink);
        futures_util::SinkExt::send(&mut sink, bytes::Bytes::from(data)).await?;
        sink.finish().await?;
    }
    tx.commit().await?;
    Ok(prids as f64 / start.elapsed().as_secs_f64())
}

/// The consumed-status job over `n` pending PRIDs with documents: seconds and peak RSS (MiB).
async fn consumed_job(n: usize) -> anyhow::Result<(f64, f64)> {
    let env = Env::new(&format!("job_{n}"));
    let settings = env.settings();
    migrate::prepare_database(&Database::new(&settings.database)?, true).await?;
    let prids = generate_prids(&settings, n);
    seed_applications(&settings, &prids).await?;
    psql(
        &env.name,
        "INSERT INTO prereg.applicant_document (id, prereg_id, doc_name, doc_cat_code, doc_typ_code, doc_file_format, \
        doc_id, doc_hash, encrypted_dtimes, status_code, lang_code, cr_by, cr_dtimes) \
        SELECT prereg_id || '-1', prereg_id, 'doc', 'POA', 'CRN', 'pdf', 'd', 'h', now(), 'Pending', 'eng', 'prereg', now() \
        FROM prereg.applicant_demographic",
    );
    psql(
        &env.name,
        "INSERT INTO prereg.processed_prereg_list (prereg_id, first_received_dtimes, status_code, status_comments, \
        prereg_trn_id, lang_code, cr_by, cr_dtimes) SELECT prereg_id, now(), 'Consumed', 'Processed by registration processor', \
        'bench', 'eng', 'prereg-sync', now() FROM prereg.applicant_demographic",
    );
    let start = Instant::now();
    let job = Command::new(BIN)
        .args(["--config-dir", CONFIG, "consumed-job", "run"])
        .envs(env.vars())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let stop_sampling = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = sample_rss(job.id(), stop_sampling.clone());
    let out = job.wait_with_output()?;
    let secs = start.elapsed().as_secs_f64();
    stop_sampling.store(true, std::sync::atomic::Ordering::Relaxed);
    let peak = sampler.join().unwrap_or(0) as f64 / 1024.0;
    let summary = String::from_utf8_lossy(&out.stdout);
    ensure!(
        summary.contains(&format!("status=SUCCESS selected={n} moved={n}")),
        "job: {summary}"
    );
    ensure!(
        env.count("SELECT count(*) FROM prereg.applicant_document_consumed") == n as i64,
        "job: documents"
    );
    println!("  consumed job {n}: verified: {n} applications moved once");
    Ok((secs, peak))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let quick = std::env::args().any(|a| a == "--quick");
    let scale = if quick { 10 } else { 1 };
    let settings = Settings::load_from(CONFIG.as_ref(), &Default::default())?;
    println!(
        "prereg-sync e2e benchmark: prefetch={} concurrency={} pool_size={}{}",
        settings.amqp.prefetch,
        settings.worker.concurrency,
        settings.database.pool_size,
        if quick { " (quick: 1/10 scale)" } else { "" }
    );
    // `--jobs-only`: just the consumed-status job rows (for iterating on the job).
    if std::env::args().any(|a| a == "--jobs-only") {
        return print_jobs(scale).await;
    }
    let probe_a = probe_broker(20_000 / scale).await?;
    // `--s1-only`: probe A and S1 (for iterating on the per-request path).
    if std::env::args().any(|a| a == "--s1-only") {
        let s1 = scenario("s1", 20_000 / scale, 1).await?;
        println!(
            "| S1 1 PRID/request | {:.0} requests/s | A: {:.0} requests/s | {:.0}% | ≥ 50% |",
            s1.requests_per_s,
            probe_a,
            100.0 * s1.requests_per_s / probe_a
        );
        println!("| S1 CPU per 1000 requests | {} | | | |", s1.cpu);
        return Ok(());
    }
    let probe_b = probe_database(200_000 / scale).await?;
    // The database's own scaling: the same COPY at S3's size. S3's ratio to S2 is read
    // against this one (index maintenance costs more per row as the indexes outgrow memory).
    let probe_b_large = probe_database(1_000_000 / scale).await?;
    let s1 = scenario("s1", 20_000 / scale, 1).await?;
    let (p50, p99) = latency(5_000 / scale, s1.requests_per_s / 2.0).await?;
    let s2 = scenario("s2", 2_000 / scale, 100).await?;
    let s3 = scenario("s3", 10_000 / scale, 100).await?;
    println!();
    println!("| scenario | figure | limit probe | ratio | target |");
    println!("| --- | --- | --- | --- | --- |");
    println!(
        "| S1 1 PRID/request | {:.0} requests/s | A: {:.0} requests/s | {:.0}% | ≥ 50% |",
        s1.requests_per_s,
        probe_a,
        100.0 * s1.requests_per_s / probe_a
    );
    println!(
        "| S1 latency at {:.0} requests/s | p50 {:.1} ms, p99 {:.1} ms | | | |",
        s1.requests_per_s / 2.0,
        p50.as_secs_f64() * 1e3,
        p99.as_secs_f64() * 1e3
    );
    println!(
        "| S2 100 PRIDs/request | {:.0} PRIDs/s | B: {:.0} PRIDs/s | {:.0}% | ≥ 40% |",
        s2.prids_per_s,
        probe_b,
        100.0 * s2.prids_per_s / probe_b
    );
    println!(
        "| S3 1M PRIDs | {:.0} PRIDs/s, peak RSS {:.1} MiB | S2: {:.0} PRIDs/s | {:.0}% | ≥ 90%, RSS < 64 MiB |",
        s3.prids_per_s,
        s3.peak_rss_mib,
        s2.prids_per_s,
        100.0 * s3.prids_per_s / s2.prids_per_s
    );
    println!(
        "| probe B at S3's size | {:.0} PRIDs/s | B: {:.0} PRIDs/s | {:.0}% | (the database's own scaling) |",
        probe_b_large,
        probe_b,
        100.0 * probe_b_large / probe_b
    );
    println!("| S1 CPU per 1000 requests | {} | | | |", s1.cpu);
    println!("| S2 CPU per 1000 requests | {} | | | |", s2.cpu);
    println!("| S3 CPU per 1000 requests | {} | | | |", s3.cpu);
    print_jobs(scale).await
}

/// Runs the consumed-status job over 10,000 and 100,000 PRIDs and prints their table rows:
/// equal peak memory shows the job's memory does not grow with the work.
async fn print_jobs(scale: usize) -> anyhow::Result<()> {
    let sizes = [10_000 / scale, 100_000 / scale];
    let mut rows = Vec::new();
    for n in sizes {
        let (secs, rss) = consumed_job(n).await?;
        rows.push(format!(
            "| consumed job {n} PRIDs | {secs:.1} s, {:.0} rows/s, peak RSS {rss:.1} MiB | | | flat memory |",
            n as f64 / secs
        ));
    }
    for row in rows {
        println!("{row}");
    }
    Ok(())
}
