//! The worker under load: S1–S4 (throughput from the first reply to the last, verified at the
//! end), the reply latency at a fixed rate, and the consumed-status job.

use std::{
    process::{Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context, ensure};
use prereg_sync::{
    loadgen::{generate_prids, percentile, seed_applications},
    storage::{Database, migrate},
};

use crate::{
    env::{BIN, CONFIG, Env, Placement, checkpoint, must, psql, rabbitmqctl, stop},
    measure::{CpuSplit, sample_rss},
    traffic::{channel, collect, declare_reply_queue, publish},
};

pub struct Scenario {
    pub requests_per_s: f64,
    pub prids_per_s: f64,
    /// Peak resident memory of the first worker.
    pub peak_rss_mib: f64,
    /// CPU seconds per 1,000 requests, by process.
    pub cpu: CpuSplit,
}

/// Pre-publishes `requests` requests of `batch` PRIDs, starts `workers` worker processes on the
/// one request queue, times the first to the last reply, and verifies every request answered
/// once and every PRID stored once (so several workers sharing the queue are checked too).
pub async fn scenario(
    name: &str,
    requests: usize,
    batch: usize,
    workers: usize,
) -> anyhow::Result<Scenario> {
    scenario_at(name, requests, batch, workers, Placement::Leader).await
}

/// [`scenario`] with the workers connected at `placement` (S5).
pub async fn scenario_at(
    name: &str,
    requests: usize,
    batch: usize,
    workers: usize,
    placement: Placement,
) -> anyhow::Result<Scenario> {
    let env = Env::placed(name, placement);
    let settings = env.settings();
    migrate::prepare_database(&Database::new(&settings.database)?, true).await?;
    let prids = generate_prids(&settings, requests * batch);
    seed_applications(&settings, &prids).await?;
    let (connection, channel) = channel(&env).await?;
    prereg_sync::amqp::topology::declare(&connection, &settings.amqp, &settings.retry.delays)
        .await?;
    declare_reply_queue(&channel).await?;
    publish(&channel, &settings, &prids, batch, None).await?;
    checkpoint();
    let running: Vec<_> = (0..workers).map(|_| env.spawn_worker()).collect();
    let pids: Vec<u32> = running.iter().map(|w| w.0.id()).collect();
    let cpu_before = CpuSplit::sample(&pids);
    let stop_sampling = Arc::new(AtomicBool::new(false));
    let sampler = sample_rss(pids[0], stop_sampling.clone());
    let arrived = collect(&channel, requests).await?;
    let cpu = CpuSplit::sample(&pids).per_thousand(&cpu_before, requests);
    let first = arrived.iter().min().copied().context("no reply")?;
    let last = arrived.iter().max().copied().context("no reply")?;
    stop_sampling.store(true, Ordering::Relaxed);
    let peak_kib = sampler.join().unwrap_or(0);
    running.into_iter().for_each(stop);
    verify_stored(&env, name, requests, prids.len())?;
    let secs = (last - first).as_secs_f64().max(1e-9);
    #[allow(
        clippy::let_underscore_must_use,
        reason = "the figures are taken; how the connection closes does not change them"
    )]
    let _ = connection.close(200, "".into()).await;
    Ok(Scenario {
        requests_per_s: (requests - 1) as f64 / secs,
        prids_per_s: ((requests - 1) * batch) as f64 / secs,
        peak_rss_mib: peak_kib as f64 / 1024.0,
        cpu,
    })
}

/// One transaction record per request and every PRID once in both PRID tables.
fn verify_stored(env: &Env, name: &str, requests: usize, prids: usize) -> anyhow::Result<()> {
    ensure!(
        env.count("SELECT count(*) FROM prereg.sync_transaction") == requests as i64,
        "{name}: transactions"
    );
    ensure!(
        env.count("SELECT count(*) FROM prereg.processed_prereg_list") == prids as i64,
        "{name}: PRIDs"
    );
    ensure!(
        env.count("SELECT count(DISTINCT prereg_id) FROM prereg.intf_processed_prereg_list")
            == prids as i64,
        "{name}: interface rows"
    );
    println!("  {name}: verified: {requests} requests answered once, {prids} PRIDs stored once");
    Ok(())
}

/// Reply latency (publish to reply) at a fixed publish rate, the worker already consuming.
pub async fn latency(requests: usize, rate: f64) -> anyhow::Result<(Duration, Duration)> {
    let env = Env::new("latency");
    let settings = env.settings();
    migrate::prepare_database(&Database::new(&settings.database)?, true).await?;
    let prids = generate_prids(&settings, requests);
    seed_applications(&settings, &prids).await?;
    checkpoint();
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
    #[allow(
        clippy::let_underscore_must_use,
        reason = "the figures are taken; how the connection closes does not change them"
    )]
    let _ = publish_connection.close(200, "".into()).await;
    #[allow(
        clippy::let_underscore_must_use,
        reason = "the figures are taken; how the connection closes does not change them"
    )]
    let _ = reply_connection.close(200, "".into()).await;
    Ok((percentile(&latencies, 0.50), percentile(&latencies, 0.99)))
}
/// The consumed-status job over `n` pending PRIDs with documents: seconds and peak RSS (MiB).
pub async fn consumed_job(n: usize) -> anyhow::Result<(f64, f64)> {
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
    checkpoint();
    let start = Instant::now();
    let job = Command::new(BIN)
        .args(["--config-dir", CONFIG, "consumed-job", "run"])
        .envs(env.vars())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let stop_sampling = Arc::new(AtomicBool::new(false));
    let sampler = sample_rss(job.id(), stop_sampling.clone());
    let out = job.wait_with_output()?;
    let secs = start.elapsed().as_secs_f64();
    stop_sampling.store(true, Ordering::Relaxed);
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
