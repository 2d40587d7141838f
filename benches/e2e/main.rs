//! End-to-end benchmark (`scripts/bench`): the worker's throughput against the physical limits
//! of the local RabbitMQ and PostgreSQL measured in the same run, plus the consumed-status job.
//! Each scenario runs the real release binary in its own vhost and database and is verified at
//! its end (every PRID stored once, every request answered once): a fast wrong run fails.
//!
//! A full run is repeated (`--runs`, 3 by default) and every run's table printed, then the
//! median of each ratio: one lucky run proves nothing on a shared host.
//!
//! Layout: `env` (vhosts, databases, the worker process), `traffic` (the bench's own AMQP
//! client), `probes` (limits A and B), `scenarios` (S1–S4, latency, the job), `http` (S6, the
//! HTTP ingress), `measure`
//! (`/proc` sampling), `report` (tables and medians).
#![allow(
    clippy::print_stdout,
    reason = "the report tables are the benchmark's output"
)]

mod env;
mod http;
mod measure;
mod probes;
mod report;
mod scenarios;
mod traffic;

use prereg_sync::config::Settings;

use crate::{
    env::{CONFIG, Placement, on_cluster},
    probes::{probe_broker, probe_broker_at, probe_database},
    report::{ClusterRun, FullRun},
    scenarios::{consumed_job, latency, scenario, scenario_at},
};

/// The command line: `--quick` (1/10 scale, one run), `--runs N`, `--jobs-only`, `--s1-only`,
/// `--s3-only`, `--s6-only`, `--cluster` (S5: against `scripts/cluster`'s three nodes).
struct Args {
    scale: usize,
    runs: usize,
}

impl Args {
    fn parse() -> Args {
        let args: Vec<String> = std::env::args().collect();
        let quick = args.iter().any(|a| a == "--quick");
        let runs = args
            .iter()
            .position(|a| a == "--runs")
            .and_then(|i| args.get(i + 1))
            .map(|n| n.parse().expect("--runs takes a number"))
            .unwrap_or(if quick { 1 } else { 3 });
        Args {
            scale: if quick { 10 } else { 1 },
            runs,
        }
    }

    fn has(flag: &str) -> bool {
        std::env::args().any(|a| a == flag)
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let settings = Settings::load_from(CONFIG.as_ref(), &Default::default())?;
    println!(
        "prereg-sync e2e benchmark: prefetch={} concurrency={} pool_size={}{}{}, {} run(s)",
        settings.amqp.prefetch,
        settings.worker.concurrency,
        settings.database.pool_size,
        if args.scale > 1 {
            " (quick: 1/10 scale)"
        } else {
            ""
        },
        if on_cluster() {
            " on the three-node cluster"
        } else {
            ""
        },
        args.runs
    );
    // `--jobs-only`: just the consumed-status job rows (for iterating on the job).
    if Args::has("--jobs-only") {
        return print_jobs(args.scale).await;
    }
    // `--s1-only`: probe A and S1 (for iterating on the per-request path).
    if Args::has("--s1-only") {
        let probe_a = probe_broker(20_000 / args.scale).await?;
        let s1 = scenario("s1", 20_000 / args.scale, 1, 1).await?;
        report::s1_only(&probe_a, &s1);
        return Ok(());
    }
    // `--s6-only`: S1 and S6 (the same one-PRID requests over AMQP and over the HTTP ingress).
    if Args::has("--s6-only") {
        let s1 = scenario("s1", 20_000 / args.scale, 1, 1).await?;
        let s6 = http::s6(20_000 / args.scale, 5_000 / args.scale).await?;
        report::s6_only(&s1, &s6);
        return Ok(());
    }
    // `--s3-only`: S2 and S3 (for iterating on the store at scale).
    if Args::has("--s3-only") {
        let s2 = scenario("s2", 2_000 / args.scale, 100, 1).await?;
        let s3 = scenario("s3", 10_000 / args.scale, 100, 1).await?;
        report::s3_only(&s2, &s3);
        return Ok(());
    }
    if on_cluster() {
        let mut runs = Vec::new();
        for i in 1..=args.runs {
            let run = cluster_run(args.scale).await?;
            run.print(i);
            runs.push(run);
        }
        report::cluster_medians(&runs);
        return Ok(());
    }
    let mut runs = Vec::new();
    for i in 1..=args.runs {
        let run = full_run(args.scale).await?;
        run.print(i);
        runs.push(run);
    }
    report::medians(&runs);
    print_jobs(args.scale).await
}

/// Probes A and B, S1 with its latency, S2, S3 and S4 (S2 with 2 and 3 workers).
async fn full_run(scale: usize) -> anyhow::Result<FullRun> {
    let probe_a = probe_broker(20_000 / scale).await?;
    let probe_b = probe_database(200_000 / scale).await?;
    // The database's own scaling: the same COPY at S3's size. S3's ratio to S2 is read
    // against this one (index maintenance costs more per row as the indexes outgrow memory).
    let probe_b_large = probe_database(1_000_000 / scale).await?;
    let s1 = scenario("s1", 20_000 / scale, 1, 1).await?;
    let latency = latency(5_000 / scale, s1.requests_per_s / 2.0).await?;
    let s2 = scenario("s2", 2_000 / scale, 100, 1).await?;
    let s3 = scenario("s3", 10_000 / scale, 100, 1).await?;
    let mut s4 = Vec::new();
    for workers in [2, 3] {
        s4.push((workers, scenario("s4", 2_000 / scale, 100, workers).await?));
    }
    Ok(FullRun {
        probe_a,
        probe_b,
        probe_b_large,
        s1,
        latency,
        s2,
        s3,
        s4,
    })
}

/// S5: probes A and B, S1 and S2 on the cluster, the worker on the node that leads the queues;
/// then probe A and S1 again with the consumer and the worker on a follower node.
async fn cluster_run(scale: usize) -> anyhow::Result<ClusterRun> {
    Ok(ClusterRun {
        probe_a: probe_broker(20_000 / scale).await?,
        probe_b: probe_database(200_000 / scale).await?,
        s1: scenario("s1", 20_000 / scale, 1, 1).await?,
        s2: scenario("s2", 2_000 / scale, 100, 1).await?,
        probe_a_follower: probe_broker_at(20_000 / scale, Placement::Follower).await?,
        s1_follower: scenario_at("s1", 20_000 / scale, 1, 1, Placement::Follower).await?,
    })
}

/// Runs the consumed-status job over 10,000 and 100,000 PRIDs and prints their table rows:
/// equal peak memory shows the job's memory does not grow with the work.
async fn print_jobs(scale: usize) -> anyhow::Result<()> {
    let mut rows = Vec::new();
    for n in [10_000 / scale, 100_000 / scale] {
        let (secs, rss) = consumed_job(n).await?;
        rows.push(format!(
            "| consumed job {n} PRIDs | {secs:.1} s, {:.0} rows/s, peak RSS {rss:.1} MiB | | | flat memory |",
            n as f64 / secs
        ));
    }
    println!();
    for row in rows {
        println!("{row}");
    }
    Ok(())
}
