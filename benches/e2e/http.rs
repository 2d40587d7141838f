//! S6: MOSIP's REST call through the HTTP ingress (`prereg-sync ingress`, a process of its own)
//! and a worker: one-PRID requests over HTTP/1.1 keep-alive, 64 in flight, with a JWT the
//! ingress verifies on every request; then the answer latency at half that rate; the ingress's
//! peak RSS throughout.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context, ensure};
use prereg_sync::{
    loadgen::{
        generate_prids,
        http::{HttpTarget, Sent, send_all},
        percentile, seed_applications,
    },
    storage::{Database, migrate},
};
use support::Keys;

use crate::{
    env::{Env, checkpoint, stop},
    measure::{CpuSplit, sample_rss},
};

pub struct HttpScenario {
    pub requests_per_s: f64,
    /// Send to answer at half `requests_per_s`.
    pub latency: (Duration, Duration),
    pub ingress_peak_rss_mib: f64,
    /// CPU seconds per 1,000 requests of the throughput step; `workers` is [worker, ingress].
    pub cpu: CpuSplit,
}

pub async fn s6(requests: usize, latency_requests: usize) -> anyhow::Result<HttpScenario> {
    let env = Env::new("s6");
    let settings = env.settings();
    migrate::prepare_database(&Database::new(&settings.database)?, true).await?;
    let prids = generate_prids(&settings, requests + latency_requests);
    seed_applications(&settings, &prids).await?;
    let keys = Keys::new();
    let (listen, http) = (free_port(), free_port());
    let mut vars = keys.vars(&format!("127.0.0.1:{listen}"));
    vars.push((
        "PREREG_SYNC__HTTP__LISTEN".into(),
        format!("127.0.0.1:{http}"),
    ));
    let worker = env.spawn_worker();
    let ingress = env.spawn("ingress", &vars);
    let ready = format!("http://127.0.0.1:{http}/readyz");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !reqwest::get(&ready)
        .await
        .is_ok_and(|r| r.status().is_success())
    {
        ensure!(
            Instant::now() < deadline,
            "the ingress did not become ready"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    checkpoint();
    let stop_sampling = Arc::new(AtomicBool::new(false));
    let sampler = sample_rss(ingress.0.id(), stop_sampling.clone());
    let target = HttpTarget {
        url: format!("http://127.0.0.1:{listen}/preregistration/v1/sync/consumedPreRegIds"),
        token: Some(keys.token()),
        concurrency: 64,
    };
    let (throughput, rest) = prids.split_at(requests);
    let pids = [worker.0.id(), ingress.0.id()];
    let cpu_before = CpuSplit::sample(&pids);
    let sent = send_all(&target, throughput, 1, None, Instant::now()).await?;
    let cpu = CpuSplit::sample(&pids).per_thousand(&cpu_before, requests);
    let first = sent.iter().map(|s| s.sent).min().context("no request")?;
    let last = sent.iter().map(|s| s.answered).max().context("no answer")?;
    let requests_per_s = requests as f64 / (last - first).as_secs_f64().max(1e-9);
    let paced = send_all(&target, rest, 1, Some(requests_per_s / 2.0), Instant::now()).await?;
    stop_sampling.store(true, Ordering::Relaxed);
    let peak_kib = sampler.join().unwrap_or(0);
    stop(ingress);
    stop(worker);
    ensure!(
        sent.iter().chain(&paced).all(|s| s.ok),
        "s6: an answer was not the worker's success reply"
    );
    ensure!(
        env.count("SELECT count(*) FROM prereg.sync_transaction") == prids.len() as i64,
        "s6: transactions"
    );
    println!(
        "  s6: verified: {} requests answered 200 and stored once",
        prids.len()
    );
    let mut latencies: Vec<Duration> = paced.iter().map(Sent::latency).collect();
    latencies.sort_unstable();
    Ok(HttpScenario {
        requests_per_s,
        latency: (percentile(&latencies, 0.50), percentile(&latencies, 0.99)),
        ingress_peak_rss_mib: peak_kib as f64 / 1024.0,
        cpu,
    })
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("a free loopback port")
}
