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
pub struct Env {
    pub name: String,
}

impl Env {
    pub fn new(name: &str) -> Env {
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

    pub fn vars(&self) -> Vec<(String, String)> {
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

    pub fn settings(&self) -> Settings {
        Settings::load_from(CONFIG.as_ref(), &self.vars().into_iter().collect()).expect("settings")
    }

    pub fn spawn_worker(&self) -> Worker {
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

    pub fn count(&self, sql: &str) -> i64 {
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
