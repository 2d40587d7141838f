//! One test's private vhost and database ([`TestEnv`]) and the configuration that points the
//! worker at them.

use std::{
    collections::HashMap,
    net::SocketAddr,
    path::{Path, PathBuf},
    process::Command,
};

use prereg_sync::config::Settings;

use crate::{
    app::RunningApp,
    services::{amqp_url, postgres_addr, postgres_url, psql, rabbitmqctl, rabbitmqctl_command},
};

/// Runs a command and panics with its output if it fails: a missing service must fail the
/// test loudly, never skip it.
pub fn must(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The repository's root, where `config/` and `schemas/` are: this crate is its
/// `tests/support`.
pub(crate) fn repo_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .and_then(Path::parent)
        .expect("tests/support inside the repository")
}

pub fn config_dir() -> PathBuf {
    repo_dir().join("config")
}

/// The repository's configuration with nothing overridden.
pub fn default_settings() -> Settings {
    Settings::load_from(&config_dir(), &HashMap::new()).expect("default settings load")
}

/// One test's private vhost and database.
pub struct TestEnv {
    pub id: String,
    pub vhost: String,
    pub database: String,
    /// `PREREG_SYNC__*` and URL variables that point the worker at this environment.
    pub vars: HashMap<String, String>,
    /// libpq-style connection settings (without `dbname`) of the test's own queries: the
    /// tests' server, or a primary/standby pair in the cluster tests.
    pub admin_db: String,
    /// The in-process worker's HTTP address, once it is started.
    pub http: Option<SocketAddr>,
    /// The in-process worker's HTTP ingress address, when `ingress.listen` is set.
    pub ingress: Option<SocketAddr>,
    pub(crate) app: Option<RunningApp>,
}

impl TestEnv {
    #[allow(clippy::new_without_default)] // makes a vhost and a database: not a default value
    pub fn new() -> TestEnv {
        Self::with_vars(&[])
    }

    /// A fresh vhost and database name, plus `extra` configuration variables.
    pub fn with_vars(extra: &[(&str, &str)]) -> TestEnv {
        let id = uuid::Uuid::new_v4().simple().to_string()[..12].to_owned();
        let vhost = format!("prs-test-{id}");
        let database = format!("prs_test_{id}");
        rabbitmqctl(&["add_vhost", &vhost]);
        rabbitmqctl(&["set_permissions", "-p", &vhost, "guest", ".*", ".*", ".*"]);
        let mut vars: HashMap<String, String> = [
            ("AMQP_URL", amqp_url("guest:guest", &vhost)),
            ("DATABASE_URL", postgres_url("postgres", &database)),
            ("PREREG_SYNC__HTTP__LISTEN", "127.0.0.1:0".to_owned()),
            ("PREREG_SYNC__RETRY__DELAYS", "1s,2s".to_owned()),
            ("PREREG_SYNC__RETRY__IMMEDIATE_MIN_DELAY", "20ms".to_owned()),
            (
                "PREREG_SYNC__RETRY__IMMEDIATE_MAX_DELAY",
                "100ms".to_owned(),
            ),
            ("PREREG_SYNC__RETRY__OUTAGE_MAX_DELAY", "1s".to_owned()),
            ("PREREG_SYNC__AMQP__RECONNECT_MAX_DELAY", "1s".to_owned()),
            ("PREREG_SYNC__WORKER__SHUTDOWN_GRACE", "10s".to_owned()),
            // The broker limit docs/operations.md asks a deployment to set, so the worker does
            // not warn about its window at every start; no test sends a message over it.
            ("PREREG_SYNC__AMQP__MAX_MESSAGE_SIZE", "2097152".to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        for (k, v) in extra {
            vars.insert((*k).to_owned(), (*v).to_owned());
        }
        TestEnv {
            id,
            vhost,
            database,
            vars,
            admin_db: format!(
                "host=127.0.0.1 port={} user=postgres",
                postgres_addr().port()
            ),
            http: None,
            ingress: None,
            app: None,
        }
    }

    pub fn settings(&self) -> Settings {
        Settings::load_from(&config_dir(), &self.vars).expect("test settings load")
    }

    /// Points the worker's database URL at `port` on this machine (a test's TCP proxy).
    pub fn database_via(&mut self, port: u16) {
        let url = format!("postgres://postgres@127.0.0.1:{port}/{}", self.database);
        self.vars.insert("DATABASE_URL".into(), url);
    }
}

impl Drop for TestEnv {
    fn drop(&mut self) {
        if let Some(app) = self.app.take() {
            app.abort();
        }
        let _ = rabbitmqctl_command()
            .args(["delete_vhost", &self.vhost])
            .output();
        let _ = psql("postgres")
            .arg("-c")
            .arg(format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.database
            ))
            .output();
    }
}
