//! Process-level measurements read from `/proc`: peak resident memory and CPU time by program.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
    time::Duration,
};

/// Peak resident memory of a process (KiB), sampled every 50 ms until it exits or `stop` is set.
pub fn sample_rss(pid: u32, stop: Arc<AtomicBool>) -> JoinHandle<u64> {
    std::thread::spawn(move || {
        let mut peak = 0;
        while !stop.load(Ordering::Relaxed) {
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

/// CPU seconds (user + system) used so far by each worker process, PostgreSQL, RabbitMQ and
/// this benchmark (the client publishing and collecting). Sampled before and after a scenario,
/// the difference is a process-level profile: which program the machine's cores worked for.
#[derive(Clone, Default)]
pub struct CpuSplit {
    /// One entry per worker process, in the order they were given.
    pub workers: Vec<f64>,
    pub postgres: f64,
    pub rabbitmq: f64,
    pub client: f64,
}

impl CpuSplit {
    pub fn sample(worker_pids: &[u32]) -> CpuSplit {
        let mut split = CpuSplit {
            workers: vec![0.0; worker_pids.len()],
            ..CpuSplit::default()
        };
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
            let Some((comm, seconds)) = cpu_seconds(pid) else {
                continue;
            };
            if let Some(i) = worker_pids.iter().position(|&w| w == pid) {
                split.workers[i] += seconds;
                continue;
            }
            match comm.as_str() {
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

    /// All the processes' CPU seconds together.
    pub fn total(&self) -> f64 {
        self.workers.iter().sum::<f64>() + self.postgres + self.rabbitmq + self.client
    }

    /// CPU seconds per 1,000 requests between two samples.
    pub fn per_thousand(&self, earlier: &CpuSplit, requests: usize) -> CpuSplit {
        let k = 1000.0 / requests as f64;
        CpuSplit {
            workers: self
                .workers
                .iter()
                .zip(&earlier.workers)
                .map(|(now, then)| (now - then) * k)
                .collect(),
            postgres: (self.postgres - earlier.postgres) * k,
            rabbitmq: (self.rabbitmq - earlier.rabbitmq) * k,
            client: (self.client - earlier.client) * k,
        }
    }
}

/// A process's name and its CPU seconds so far: `pid (comm) state ...`, utime and stime are
/// fields 14 and 15, in clock ticks.
fn cpu_seconds(pid: u32) -> Option<(String, f64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (head, rest) = stat.rsplit_once(") ")?;
    let comm = head.split_once(" (").map_or("", |(_, comm)| comm);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok());
    Some((comm.to_owned(), (ticks(11)? + ticks(12)?) / 100.0))
}

impl std::fmt::Display for CpuSplit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let workers: Vec<String> = self.workers.iter().map(|w| format!("{w:.3}")).collect();
        // A probe runs no worker: its split starts at PostgreSQL.
        if !workers.is_empty() {
            let plural = if workers.len() > 1 { "s" } else { "" };
            write!(f, "worker{plural} {} s, ", workers.join(" + "))?;
        }
        write!(
            f,
            "PostgreSQL {:.3} s, RabbitMQ {:.3} s, bench client {:.3} s",
            self.postgres, self.rabbitmq, self.client
        )
    }
}
