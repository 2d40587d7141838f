//! Each step's own vhost and database, the release binary started in it, and the shell
//! commands the benchmark runs (`rabbitmqctl`, `psql`).

use std::process::{Child, Command, Stdio};

use prereg_sync::config::Settings;
pub use support::must;

pub const BIN: &str = env!("CARGO_BIN_EXE_prereg-sync");
pub const CONFIG: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/config");

/// `--cluster`: the broker is `scripts/cluster`'s three nodes (the worker given all three),
/// not the machine's node, for docs/scaling.md's cluster-against-one-node comparison.
pub fn on_cluster() -> bool {
    std::env::args().any(|a| a == "--cluster")
}

pub fn rabbitmqctl() -> Command {
    let mut cmd = Command::new("rabbitmqctl");
    if on_cluster() {
        cmd.args(["-n", "c1@localhost"]);
    }
    cmd
}

/// Where the worker (or probe A's consumer) connects on the cluster, relative to the queues'
/// leaders. The benchmark's own connection always goes to c1 and declares every queue there, so
/// c1 leads them all (RabbitMQ's default `client-local` leader locator). The worker is given the
/// one node of its placement: given the list it starts at a random node (`amqp/nodes.rs`), and
/// the placement, which nearly doubles the broker's cost per request on this host, would be a
/// coin toss per run.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    Leader,
    Follower,
}

impl Placement {
    fn port(self) -> u16 {
        match (on_cluster(), self) {
            (false, _) => 5672,
            (true, Placement::Leader) => 5681,
            (true, Placement::Follower) => 5682,
        }
    }
}

fn amqp_url(vhost: &str, placement: Placement) -> String {
    format!("amqp://guest:guest@127.0.0.1:{}/{vhost}", placement.port())
}

/// One isolated environment: a vhost and a database, removed at the end.
pub struct Env {
    pub name: String,
    /// Where its worker connects.
    placement: Placement,
}

impl Env {
    pub fn new(name: &str) -> Env {
        Env::placed(name, Placement::Leader)
    }

    pub fn placed(name: &str, placement: Placement) -> Env {
        let name = format!("prs_bench_{name}");
        #[allow(
            clippy::let_underscore_must_use,
            reason = "a vhost an earlier run left goes first; there is usually none"
        )]
        let _ = rabbitmqctl().args(["delete_vhost", &name]).output();
        must(rabbitmqctl().args(["add_vhost", &name]));
        must(rabbitmqctl().args(["set_permissions", "-p", &name, "guest", ".*", ".*", ".*"]));
        psql(
            "postgres",
            &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
        );
        Env { name, placement }
    }

    /// The benchmark's own connections' settings (the worker's differ only in `AMQP_URL`).
    pub fn vars(&self) -> Vec<(String, String)> {
        self.vars_at(Placement::Leader)
    }

    fn vars_at(&self, placement: Placement) -> Vec<(String, String)> {
        vec![
            ("AMQP_URL".into(), amqp_url(&self.name, placement)),
            (
                "DATABASE_URL".into(),
                format!("postgres://postgres@127.0.0.1:5432/{}", self.name),
            ),
            ("PREREG_SYNC__HTTP__LISTEN".into(), "127.0.0.1:0".into()),
            ("PREREG_SYNC__CONSUMED_JOB__ENABLED".into(), "false".into()),
        ]
    }

    pub fn settings(&self) -> Settings {
        self.settings_at(Placement::Leader)
    }

    /// Settings of a client connecting at `placement`.
    pub fn settings_at(&self, placement: Placement) -> Settings {
        let vars = self.vars_at(placement).into_iter().collect();
        Settings::load_from(CONFIG.as_ref(), &vars).expect("settings")
    }

    pub fn spawn_worker(&self) -> Worker {
        self.spawn("run", &[])
    }

    /// `prereg-sync <command>` in this environment with `extra` variables (S6's ingress).
    pub fn spawn(&self, command: &str, extra: &[(String, String)]) -> Worker {
        let mut cmd = Command::new(BIN);
        cmd.args(["--config-dir", CONFIG, command])
            .envs(self.vars_at(self.placement))
            .envs(extra.iter().cloned())
            .env("RUST_LOG", "warn");
        Worker(
            cmd.stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("worker starts"),
        )
    }

    pub fn count(&self, sql: &str) -> i64 {
        psql(&self.name, sql).trim().parse().expect("a count")
    }
}

impl Drop for Env {
    #[allow(
        clippy::let_underscore_must_use,
        reason = "cleanup at best: a drop cannot fail the run"
    )]
    fn drop(&mut self) {
        let _ = rabbitmqctl().args(["delete_vhost", &self.name]).output();
        psql(
            "postgres",
            &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
        );
    }
}

/// Writes every dirty page to disk before a timed step starts: the setup (a million seeded
/// applications fill `shared_buffers` with dirty pages) and the steps before it are then not
/// paid for by the step's own page evictions, and every step starts as far from the next
/// checkpoint. Checkpoints the step's own WAL triggers are part of its measurement.
pub fn checkpoint() {
    psql("postgres", "CHECKPOINT");
}

pub fn psql(db: &str, sql: &str) -> String {
    must(Command::new("psql").args(["-h", "127.0.0.1", "-U", "postgres", "-d", db, "-qAtc", sql]))
}

/// A worker process, stopped with SIGTERM (and waited for) when dropped.
pub struct Worker(pub Child);

impl Drop for Worker {
    #[allow(
        clippy::let_underscore_must_use,
        reason = "cleanup at best: a drop cannot fail the run"
    )]
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        let _ = self.0.wait();
    }
}

pub fn stop(worker: Worker) {
    drop(worker);
}
