//! The tables: one per run, then the median of each ratio over the runs against its target.

use std::time::Duration;

use crate::{http::HttpScenario, measure::CpuSplit, probes::BrokerProbe, scenarios::Scenario};

/// One full run on the machine's node.
pub struct FullRun {
    pub probe_a: BrokerProbe,
    pub probe_b: f64,
    pub probe_b_large: f64,
    pub s1: Scenario,
    /// Reply latency p50 and p99 at half S1's rate.
    pub latency: (Duration, Duration),
    pub s2: Scenario,
    pub s3: Scenario,
    /// S2 with 2 and 3 worker processes.
    pub s4: Vec<(usize, Scenario)>,
}

/// One S5 run: the same probes and S1/S2, the broker being the three-node cluster; probe A and
/// S1 once with the client on the node that leads the queues and once on a follower.
pub struct ClusterRun {
    pub probe_a: BrokerProbe,
    pub probe_b: f64,
    pub s1: Scenario,
    pub s2: Scenario,
    pub probe_a_follower: BrokerProbe,
    pub s1_follower: Scenario,
}

fn percent(part: f64, whole: f64) -> f64 {
    100.0 * part / whole
}

fn header(title: &str) {
    println!();
    println!("{title}");
    println!();
    println!("| scenario | figure | limit probe | ratio | target |");
    println!("| --- | --- | --- | --- | --- |");
}

/// A row in the limit-probe format: `value` (and a note after it), the limit it is compared
/// with in the same unit, their ratio, and the target.
fn ratio_row(
    name: &str,
    (value, note): (f64, &str),
    unit: &str,
    (limit, of): (&str, f64),
    target: &str,
) {
    println!(
        "| {name} | {value:.0} {unit}{note} | {limit}: {of:.0} {unit} | {:.0}% | {target} |",
        percent(value, of)
    );
}

/// The two scenarios judged against a limit probe (the 65% targets).
#[derive(Clone, Copy)]
enum Against {
    /// S1's requests/s against probe A.
    A,
    /// S2's PRIDs/s against probe B.
    B,
}

fn target_row(against: Against, probe: f64, scenario: &Scenario) {
    let (name, value, unit, limit) = match against {
        Against::A => (
            "S1 1 PRID/request",
            scenario.requests_per_s,
            "requests/s",
            "A",
        ),
        Against::B => ("S2 100 PRIDs/request", scenario.prids_per_s, "PRIDs/s", "B"),
    };
    ratio_row(name, (value, ""), unit, (limit, probe), "≥ 65%");
}

fn cpu_row(name: &str, cpu: &CpuSplit) {
    println!("| {name} CPU per 1000 requests | {cpu} | | | |");
}

/// Probe A's CPU per request as a share of S1's: where both saturate the machine's cores, the
/// ceiling of S1 / probe A (each run's table shows whether S1 is short of it or at it).
fn cpu_share(probe_a: &BrokerProbe, s1: &Scenario) -> f64 {
    percent(probe_a.cpu.total(), s1.cpu.total())
}

fn probe_a_cpu_rows(name: &str, probe_a: &BrokerProbe, s1: &Scenario) {
    cpu_row(name, &probe_a.cpu);
    println!(
        "| {name} CPU per request / S1's | {:.3} s / {:.3} s | | {:.0}% | (S1 / probe A when CPU-bound) |",
        probe_a.cpu.total(),
        s1.cpu.total(),
        cpu_share(probe_a, s1)
    );
}

/// S6 against S1 of the same run: throughput ratio, latency at half S6's rate, ingress RSS.
pub fn s6_only(s1: &Scenario, s6: &HttpScenario) {
    header("S1 and S6 (HTTP ingress)");
    ratio_row(
        "S6 1 PRID/request over HTTP",
        (s6.requests_per_s, ""),
        "requests/s",
        ("S1", s1.requests_per_s),
        "≥ 80%",
    );
    let (p50, p99) = s6.latency;
    println!(
        "| S6 latency at half its rate | p50 {:.1} ms, p99 {:.1} ms | | | p99 < 50 ms |",
        p50.as_secs_f64() * 1e3,
        p99.as_secs_f64() * 1e3
    );
    println!(
        "| S6 ingress peak RSS | {:.1} MiB | | | < 64 MiB |",
        s6.ingress_peak_rss_mib
    );
    cpu_row("S1", &s1.cpu);
    // `workers` are the worker and the ingress, in that order.
    cpu_row("S6 (worker + ingress)", &s6.cpu);
}

pub fn s1_only(probe_a: &BrokerProbe, s1: &Scenario) {
    header("S1 only");
    target_row(Against::A, probe_a.requests_per_s, s1);
    cpu_row("S1", &s1.cpu);
    probe_a_cpu_rows("probe A", probe_a, s1);
}

fn s3_row(s2: &Scenario, s3: &Scenario) {
    let rss = format!(", peak RSS {:.1} MiB", s3.peak_rss_mib);
    ratio_row(
        "S3 1M PRIDs",
        (s3.prids_per_s, &rss),
        "PRIDs/s",
        ("S2", s2.prids_per_s),
        "≥ 90%, RSS < 64 MiB",
    );
}

pub fn s3_only(s2: &Scenario, s3: &Scenario) {
    header("S2 and S3 only");
    s3_row(s2, s3);
    cpu_row("S2", &s2.cpu);
    cpu_row("S3", &s3.cpu);
}

impl FullRun {
    pub fn print(&self, index: usize) {
        header(&format!("Run {index}"));
        target_row(Against::A, self.probe_a.requests_per_s, &self.s1);
        let (p50, p99) = self.latency;
        println!(
            "| S1 latency at {:.0} requests/s | p50 {:.1} ms, p99 {:.1} ms | | | p99 < 50 ms |",
            self.s1.requests_per_s / 2.0,
            p50.as_secs_f64() * 1e3,
            p99.as_secs_f64() * 1e3
        );
        target_row(Against::B, self.probe_b, &self.s2);
        s3_row(&self.s2, &self.s3);
        for (workers, s4) in &self.s4 {
            ratio_row(
                &format!("S4 S2 with {workers} workers"),
                (s4.prids_per_s, ""),
                "PRIDs/s",
                ("S2", self.s2.prids_per_s),
                "(replicas)",
            );
        }
        ratio_row(
            "probe B at S3's size",
            (self.probe_b_large, ""),
            "PRIDs/s",
            ("B", self.probe_b),
            "(the database's own scaling)",
        );
        cpu_row("S1", &self.s1.cpu);
        probe_a_cpu_rows("probe A", &self.probe_a, &self.s1);
        cpu_row("S2", &self.s2.cpu);
        cpu_row("S3", &self.s3.cpu);
        for (workers, s4) in &self.s4 {
            cpu_row(&format!("S4 {workers} workers"), &s4.cpu);
        }
    }
}

impl ClusterRun {
    pub fn print(&self, index: usize) {
        header(&format!(
            "S5 run {index}: the three-node cluster (S1 and S2: worker on the queues' leader)"
        ));
        target_row(Against::A, self.probe_a.requests_per_s, &self.s1);
        target_row(Against::B, self.probe_b, &self.s2);
        ratio_row(
            "S1 on a follower node",
            (self.s1_follower.requests_per_s, ""),
            "requests/s",
            ("A on a follower", self.probe_a_follower.requests_per_s),
            "",
        );
        cpu_row("S1", &self.s1.cpu);
        probe_a_cpu_rows("probe A", &self.probe_a, &self.s1);
        cpu_row("S2", &self.s2.cpu);
        cpu_row("S1 on a follower", &self.s1_follower.cpu);
        probe_a_cpu_rows(
            "probe A on a follower",
            &self.probe_a_follower,
            &self.s1_follower,
        );
    }
}

/// The median of the values (the middle one; the mean of the middle two for an even count).
fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

/// One summary row: every run's value, their median, and the target it is held to.
fn median_row(name: &str, unit: &str, values: Vec<f64>, target: &str) {
    let each: Vec<String> = values.iter().map(|v| format!("{v:.0}{unit}")).collect();
    println!(
        "| {name} | {} | **{:.0}{unit}** | {target} |",
        each.join(", "),
        median(values)
    );
}

fn median_header(title: &str) {
    println!();
    println!("{title}");
    println!();
    println!("| figure | each run | median | target |");
    println!("| --- | --- | --- | --- |");
}

/// The two ratios held to a target in every kind of run, S1 to probe A and S2 to probe B, and
/// probe A's share of S1's CPU beside the first; given per run as (probe A, S1, probe B, S2).
fn ratio_rows<'a>(
    prefix: &str,
    runs: impl Iterator<Item = (&'a BrokerProbe, &'a Scenario, f64, &'a Scenario)>,
) {
    let (mut s1, mut share, mut s2) = (Vec::new(), Vec::new(), Vec::new());
    for (a, s1_run, b, s2_run) in runs {
        s1.push(percent(s1_run.requests_per_s, a.requests_per_s));
        share.push(cpu_share(a, s1_run));
        s2.push(percent(s2_run.prids_per_s, b));
    }
    median_row(&format!("{prefix}S1 / probe A"), "%", s1, "≥ 65%");
    median_row(
        &format!("{prefix}probe A CPU per request / S1's"),
        "%",
        share,
        "(S1 / probe A when CPU-bound)",
    );
    median_row(&format!("{prefix}S2 / probe B"), "%", s2, "≥ 65%");
}

pub fn medians(runs: &[FullRun]) {
    median_header(&format!("Median of {} run(s)", runs.len()));
    let each = |f: &dyn Fn(&FullRun) -> f64| runs.iter().map(f).collect::<Vec<_>>();
    ratio_rows(
        "",
        runs.iter().map(|r| (&r.probe_a, &r.s1, r.probe_b, &r.s2)),
    );
    median_row(
        "S3 / S2",
        "%",
        each(&|r| percent(r.s3.prids_per_s, r.s2.prids_per_s)),
        "≥ 90%",
    );
    median_row(
        "S3 peak RSS",
        " MiB",
        each(&|r| r.s3.peak_rss_mib),
        "< 64 MiB",
    );
    median_row(
        "S1 reply latency p99 at half rate",
        " ms",
        each(&|r| r.latency.1.as_secs_f64() * 1e3),
        "< 50 ms",
    );
    for (i, (workers, _)) in runs[0].s4.iter().enumerate() {
        median_row(
            &format!("S4 {workers} workers / S2"),
            "%",
            each(&|r| percent(r.s4[i].1.prids_per_s, r.s2.prids_per_s)),
            "(replicas)",
        );
    }
}

pub fn cluster_medians(runs: &[ClusterRun]) {
    median_header(&format!(
        "S5: median of {} run(s) on the cluster",
        runs.len()
    ));
    let each = |f: &dyn Fn(&ClusterRun) -> f64| runs.iter().map(f).collect::<Vec<_>>();
    ratio_rows(
        "S5 ",
        runs.iter().map(|r| (&r.probe_a, &r.s1, r.probe_b, &r.s2)),
    );
    median_row(
        "S5 probe A",
        " requests/s",
        each(&|r| r.probe_a.requests_per_s),
        "",
    );
    median_row("S5 S1", " requests/s", each(&|r| r.s1.requests_per_s), "");
    median_row(
        "S5 S1 / probe A, both on a follower node",
        "%",
        each(&|r| {
            percent(
                r.s1_follower.requests_per_s,
                r.probe_a_follower.requests_per_s,
            )
        }),
        "",
    );
    median_row(
        "S5 S1 on a follower",
        " requests/s",
        each(&|r| r.s1_follower.requests_per_s),
        "",
    );
}
