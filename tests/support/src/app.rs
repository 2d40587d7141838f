//! The worker under test: in process ([`TestEnv::spawn_app`]), or as the real binary
//! ([`TestEnv::spawn_process`], [`TestEnv::cli`]) for signal and command tests; and its HTTP
//! endpoints.

use std::{
    collections::HashMap,
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    time::Duration,
};

use prereg_sync::startup::Application;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::{TestEnv, env::config_dir, must, wait_until};

/// A worker running in the test's process.
pub(crate) struct RunningApp {
    stop: CancellationToken,
    task: JoinHandle<anyhow::Result<()>>,
}

impl RunningApp {
    /// Stops the worker without waiting for it (the test is over, passed or not).
    pub(crate) fn abort(self) {
        self.stop.cancel();
        self.task.abort();
    }
}

/// The `prereg-sync` binary cargo built for the integration test being run. Cargo sets
/// `CARGO_BIN_EXE_prereg-sync` at run time since 1.94 (before, only while compiling the test,
/// where this library cannot read it); an older cargo leaves the binary where it always does:
/// in `target/<profile>/`, the parent of the test executable's `deps/`.
fn binary() -> PathBuf {
    std::env::var_os("CARGO_BIN_EXE_prereg-sync")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let test = std::env::current_exe().expect("the test executable's path");
            let profile = test.parent().and_then(Path::parent).expect(
                "the test runs from target/<profile>/deps: run the tests with `cargo test`",
            );
            profile.join(format!("prereg-sync{}", std::env::consts::EXE_SUFFIX))
        })
}

/// `prereg-sync --config-dir <the repository's config/>` with `vars` in its environment and
/// `RUST_LOG` unset, so the configured log level applies; add the command's arguments.
pub fn prereg_sync(vars: &HashMap<String, String>) -> Command {
    let mut cmd = Command::new(binary());
    cmd.arg("--config-dir")
        .arg(config_dir())
        .env_remove("RUST_LOG")
        .envs(vars);
    cmd
}

/// Sends SIGTERM to a worker process (a graceful stop).
pub fn terminate(child: &Child) {
    must(Command::new("kill").args(["-TERM", &child.id().to_string()]));
}

/// The `/metrics` text of a worker serving HTTP on `addr`.
async fn metrics_at(addr: SocketAddr) -> String {
    reqwest::get(format!("http://{addr}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// One sample of the `/metrics` of a worker serving HTTP on `addr`, e.g.
/// `prereg_sync_retries_total{kind="delayed"}`; 0 when absent.
pub async fn metric_at(addr: SocketAddr, sample: &str) -> f64 {
    metrics_at(addr)
        .await
        .lines()
        .find_map(|line| {
            line.strip_prefix(sample)
                .and_then(|rest| rest.trim().parse().ok())
        })
        .unwrap_or(0.0)
}

impl TestEnv {
    /// Builds and starts the worker in process; returns once it consumes.
    pub async fn spawn_app(&mut self) {
        self.start_app().await;
        self.wait_ready(Duration::from_secs(30)).await;
    }

    /// Builds and starts the worker in process without waiting for it to become ready.
    pub async fn start_app(&mut self) {
        let app = Application::build(self.settings())
            .await
            .expect("application builds");
        self.http = Some(app.http_addr());
        self.ingress = app.ingress_addr();
        let stop = CancellationToken::new();
        let task = tokio::spawn(app.run_until_stopped(stop.clone()));
        self.app = Some(RunningApp { stop, task });
    }

    /// Stops the in-process worker gracefully.
    pub async fn stop_app(&mut self) {
        if let Some(RunningApp { stop, task }) = self.app.take() {
            stop.cancel();
            task.await
                .expect("worker task")
                .expect("worker exits cleanly");
        }
    }

    pub async fn ready(&self) -> bool {
        let Some(addr) = self.http else { return false };
        match reqwest::get(format!("http://{addr}/readyz")).await {
            Ok(response) => response.status().is_success(),
            Err(_) => false,
        }
    }

    pub async fn wait_ready(&self, limit: Duration) {
        let failure = format!("worker not ready within {limit:?}");
        wait_until(limit, Duration::from_millis(100), &failure, async || {
            self.ready().await
        })
        .await;
    }

    pub async fn metrics(&self) -> String {
        metrics_at(self.http.expect("app spawned")).await
    }

    /// The value of one sample of `/metrics` (see [`metric_at`]).
    pub async fn metric(&self, sample: &str) -> f64 {
        metric_at(self.http.expect("app spawned"), sample).await
    }

    /// Polls `/metrics` until `sample` reaches `at_least`; panics after `limit`.
    pub async fn wait_for_metric(&self, sample: &str, at_least: f64, limit: Duration) {
        let failure = format!("{sample} never reached {at_least}");
        wait_until(limit, Duration::from_millis(100), &failure, async || {
            self.metric(sample).await >= at_least
        })
        .await;
    }

    /// [`prereg_sync`] against this environment.
    pub fn command(&self) -> Command {
        prereg_sync(&self.vars)
    }

    /// Starts the real binary against this environment, with `extra` variables; stderr (the
    /// logs) goes to `log`.
    pub fn spawn_process(&self, extra: &[(&str, &str)], log: &Path) -> Child {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap();
        self.command()
            .arg("run")
            .envs(extra.iter().copied())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawning the worker binary")
    }

    /// Runs a `prereg-sync` command (not `run`) against this environment.
    pub fn cli(&self, args: &[&str]) -> Output {
        self.command()
            .args(args)
            .output()
            .expect("running prereg-sync")
    }

    /// Like [`TestEnv::cli`], panicking unless the command succeeds; returns stdout.
    pub fn cli_ok(&self, args: &[&str]) -> String {
        let out = self.cli(args);
        assert!(
            out.status.success(),
            "prereg-sync {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }
}
