//! The command line, in the order of `Command`: `run` (the default), `migrate`,
//! `upgrade-queues`, `consumed-job run|history`,
//! `maintenance purge-interface|purge-transactions|purge-audit`, `report`,
//! `dlq list|show|replay|delete|export`, `loadgen`, `ingress`, `dev-token` and `probe`; what
//! each prints (text, or JSON with `--json`) and its exit status. `dlq.rs`, `jobs.rs`
//! (consumed-job, maintenance), `loadgen.rs` and `report.rs` hold those commands' arguments and
//! printed output.

mod dlq;
mod jobs;
mod loadgen;
mod probe;
mod report;

use std::{path::PathBuf, time::Duration};

use anyhow::Context;
use clap::{Parser, Subcommand};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::{
    amqp::{self, upgrade::upgrade_queues},
    config::Settings,
    ingress,
    startup::Application,
    storage::{self, migrate},
    telemetry,
};

/// The exit statuses, for scripts; printed by `--help`.
const EXIT_STATUS_HELP: &str = "Exit status:
  0  success
  1  failure: one line `error: …` on stderr (configuration, connection, a probe not answered 200, …)
  2  usage error: unknown command or argument, or a command line refused (a missing --yes, a range too long)
  3  partial success: the work ran but not all of it succeeded (a PARTIAL consumed-job run)";

/// A command line that parsed but that the command refuses (a missing `--yes`, a report range
/// too long): exit status 2, like clap's own usage errors, so scripts tell it from a failure.
#[derive(Debug)]
pub struct UsageError(String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// A [`UsageError`] unless `condition` holds.
fn usage_unless(condition: bool, message: impl std::fmt::Display) -> anyhow::Result<()> {
    if condition {
        Ok(())
    } else {
        Err(UsageError(message.to_string()).into())
    }
}

/// What a command achieved, mapped to its exit status by `main`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Completion {
    /// Exit status 0.
    Done,
    /// Exit status 3: the run finished, but part of its work failed.
    Partial,
}

impl Completion {
    pub fn exit_code(self) -> u8 {
        match self {
            Completion::Done => 0,
            Completion::Partial => 3,
        }
    }
}

/// What a command prints: text for people and, unless the text already is what a script reads,
/// the same facts as JSON (`--json`); and how complete the work was.
struct Output {
    text: String,
    json: Option<serde_json::Value>,
    completion: Completion,
    /// Printed to stderr: stdout carries the command's data (`dlq export --file -`).
    stderr: bool,
}

impl Output {
    fn new(text: impl Into<String>, json: impl Serialize) -> anyhow::Result<Output> {
        Ok(Output {
            text: text.into(),
            json: Some(serde_json::to_value(json)?),
            completion: Completion::Done,
            stderr: false,
        })
    }

    /// Text printed as it is, with or without `--json` (it is JSON already when asked for).
    fn verbatim(text: String) -> Output {
        Output {
            text,
            json: None,
            completion: Completion::Done,
            stderr: false,
        }
    }

    fn on_stderr(self) -> Output {
        Output {
            stderr: true,
            ..self
        }
    }

    #[allow(clippy::print_stdout, reason = "a command's output, for the operator")]
    fn print(self, json: bool) -> anyhow::Result<Completion> {
        let text = match self.json {
            Some(value) if json => serde_json::to_string_pretty(&value)?,
            _ => self.text,
        };
        if self.stderr {
            eprintln!("{text}");
        } else {
            println!("{text}");
        }
        Ok(self.completion)
    }
}

/// prereg-sync: stores the pre-registration IDs MOSIP's registration processor reports as
/// consumed, from RabbitMQ into PostgreSQL, idempotently by transaction ID.
#[derive(Debug, Parser)]
#[command(name = "prereg-sync", version, about, after_help = EXIT_STATUS_HELP)]
pub struct Cli {
    /// Directory holding default.toml and $PREREG_SYNC_ENV.toml.
    #[arg(
        long,
        global = true,
        default_value = "config",
        env = "PREREG_SYNC_CONFIG_DIR"
    )]
    config_dir: PathBuf,
    /// Print the result as JSON, for scripts (every command whose output a script would read).
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Declare the topology, migrate, consume until SIGTERM/SIGINT, serve metrics and health.
    Run,
    /// Apply the SQL migrations and exit.
    Migrate,
    /// Bring queues declared by an earlier version (classic retry tiers, dead-letter and reply
    /// queues) to this version's arguments, moving their messages across with publisher
    /// confirms. Run it with the workers stopped; safe to run again after an interruption.
    UpgradeQueues,
    /// The consumed-status job: run it once, or list past runs.
    ConsumedJob {
        #[command(subcommand)]
        command: jobs::ConsumedJobCommand,
    },
    /// Retention: delete old rows in batches, printing how many went.
    Maintenance {
        #[command(subcommand)]
        command: jobs::MaintenanceCommand,
    },
    /// The end-of-day summary per UTC day, from the audit trail and the job runs.
    Report(report::ReportArgs),
    /// Inspect, replay, delete and archive dead-lettered messages.
    Dlq {
        #[command(subcommand)]
        command: dlq::DlqCommand,
    },
    /// Publish synthetic valid requests like the registration processor, wait for every reply,
    /// print throughput and reply latency.
    Loadgen(loadgen::LoadgenArgs),
    /// Run the HTTP ingress alone (no consumer): MOSIP's REST call taken on `ingress.listen`
    /// and published for workers running elsewhere, until SIGTERM/SIGINT.
    Ingress,
    /// Test systems only: print a token the ingress accepts, signed with
    /// `ingress.dev_signing_key_file`; refused unless the ingress's JWKS holds that key.
    DevToken {
        /// The token's client (`azp`, `sub`): the requests' `app_id`.
        #[arg(long, default_value = "registration-processor-dev")]
        client_id: String,
        /// How long the token is valid.
        #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
        ttl: Duration,
    },
    /// Ask this host's worker over HTTP whether it is ready (for a container HEALTHCHECK or an
    /// exec probe): exit 0 when GET answers 200, 1 otherwise.
    Probe {
        /// `/readyz` (ready to consume) or `/healthz` (the process is alive).
        #[arg(long, default_value = "/readyz", value_parser = ["/readyz", "/healthz"])]
        path: String,
    },
}

impl Cli {
    pub async fn execute(self) -> anyhow::Result<Completion> {
        let settings = Settings::load(&self.config_dir)?;
        telemetry::init_logging(&settings.log);
        let json = self.json;
        let output = match self.command.unwrap_or(Command::Run) {
            Command::Run => {
                run(Application::build(settings).await?).await?;
                return Ok(Completion::Done);
            }
            Command::Ingress => {
                run(Application::build_ingress(settings).await?).await?;
                return Ok(Completion::Done);
            }
            Command::DevToken { client_id, ttl } => {
                let ingress = settings
                    .ingress
                    .0
                    .as_ref()
                    .context("ingress.listen is not set: the ingress is off")?;
                Output::verbatim(ingress::dev_token(ingress, &client_id, ttl).await?)
            }
            Command::Migrate => migrate_command(&settings).await?,
            Command::UpgradeQueues => upgrade_queues_command(&settings).await?,
            Command::ConsumedJob { command } => command.execute(&settings, json).await?,
            Command::Maintenance { command } => command.execute(&settings).await?,
            Command::Report(args) => args.execute(&settings).await?,
            Command::Dlq { command } => command.execute(&settings, json).await?,
            Command::Loadgen(args) => args.execute(&settings, json).await?,
            Command::Probe { path } => probe_command(&settings, &path).await?,
        };
        output.print(json)
    }
}

/// `migrate`.
async fn migrate_command(settings: &Settings) -> anyhow::Result<Output> {
    let database = storage::Database::new(&settings.database)?;
    let applied = migrate::prepare_database(&database, settings.database.create_if_missing).await?;
    Output::new(
        format!("{applied} migration(s) applied; schema up to date"),
        serde_json::json!({ "applied": applied }),
    )
}

/// `upgrade-queues`.
async fn upgrade_queues_command(settings: &Settings) -> anyhow::Result<Output> {
    let connection = amqp::connect(&settings.amqp).await?;
    let upgraded = upgrade_queues(&connection, &settings.amqp, &settings.retry.delays).await;
    crate::amqp::close_within(connection.close(200, "upgraded".into())).await;
    let upgraded = upgraded?;
    let text = upgraded
        .iter()
        .map(|queue| {
            let done = if queue.moved {
                "upgraded"
            } else {
                "up to date"
            };
            format!(
                "{}: {done}, {} message(s) moved",
                queue.queue, queue.messages
            )
        })
        .collect::<Vec<_>>()
        .join("\n");
    Output::new(text, &upgraded)
}

/// `probe`.
async fn probe_command(settings: &Settings, path: &str) -> anyhow::Result<Output> {
    let addr = probe::target(settings.http.listen);
    let status = probe::probe(addr, path).await?;
    Output::new(
        format!("GET {path} on {addr}: {status}"),
        serde_json::json!({ "path": path, "address": addr, "status": status }),
    )
}

async fn run(app: Application) -> anyhow::Result<()> {
    let shutdown = CancellationToken::new();
    tokio::spawn(cancel_on_signal(shutdown.clone()));
    app.run_until_stopped(shutdown).await
}

/// SIGTERM (orchestrators) and SIGINT (a terminal) both start a graceful shutdown.
async fn cancel_on_signal(shutdown: CancellationToken) -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received; shutting down"),
        _ = int.recv() => tracing::info!("SIGINT received; shutting down"),
    }
    shutdown.cancel();
    Ok(())
}
