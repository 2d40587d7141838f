//! The command line: `run` (default), `migrate`, `upgrade-queues`, `consumed-job …`,
//! `maintenance …`, `dlq …`, `loadgen`.

mod dlq;
mod jobs;

use std::{path::PathBuf, time::Duration};

use anyhow::Context;
use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;

use crate::{
    amqp::{self, upgrade::upgrade_queues},
    config::Settings,
    loadgen::{self, LoadgenOptions},
    startup::Application,
    storage::{self, migrate},
    telemetry,
};

/// prereg-sync: stores the pre-registration IDs MOSIP's registration processor reports as
/// consumed, from RabbitMQ into PostgreSQL, idempotently by transaction ID.
#[derive(Debug, Parser)]
#[command(name = "prereg-sync", version, about)]
pub struct Cli {
    /// Directory holding default.toml and $PREREG_SYNC_ENV.toml.
    #[arg(
        long,
        global = true,
        default_value = "config",
        env = "PREREG_SYNC_CONFIG_DIR"
    )]
    config_dir: PathBuf,
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
    /// Inspect, replay, delete and archive dead-lettered messages.
    Dlq {
        #[command(subcommand)]
        command: dlq::DlqCommand,
    },
    /// Publish synthetic valid requests like the registration processor, wait for every reply,
    /// print throughput and reply latency.
    Loadgen {
        /// Number of requests.
        #[arg(long, default_value_t = 1000)]
        requests: usize,
        /// PRIDs per request.
        #[arg(long, default_value_t = 10)]
        batch: usize,
        /// First insert matching applicant_demographic rows so the PRIDs are known.
        #[arg(long)]
        seed: bool,
        /// Requests per second (default: as fast as confirms allow).
        #[arg(long)]
        rate: Option<f64>,
        /// Give up waiting for replies after this long.
        #[arg(long, default_value = "10m", value_parser = humantime::parse_duration)]
        timeout: Duration,
    },
}

impl Cli {
    pub async fn execute(self) -> anyhow::Result<()> {
        let settings = Settings::load(&self.config_dir)?;
        telemetry::init_logging(&settings.log);
        match self.command.unwrap_or(Command::Run) {
            Command::Run => run(settings).await,
            Command::Migrate => {
                let database = storage::Database::new(&settings.database)?;
                let applied =
                    migrate::prepare_database(&database, settings.database.create_if_missing)
                        .await?;
                println!("{applied} migration(s) applied; schema up to date");
                Ok(())
            }
            Command::UpgradeQueues => {
                let connection = amqp::connect(&settings.amqp).await?;
                let upgraded =
                    upgrade_queues(&connection, &settings.amqp, &settings.retry.delays).await?;
                for queue in upgraded {
                    let done = if queue.moved {
                        "upgraded"
                    } else {
                        "up to date"
                    };
                    println!(
                        "{}: {done}, {} message(s) moved",
                        queue.queue, queue.messages
                    );
                }
                let _ = connection.close(200, "upgraded".into()).await;
                Ok(())
            }
            Command::ConsumedJob { command } => {
                println!("{}", command.execute(&settings).await?);
                Ok(())
            }
            Command::Maintenance { command } => {
                println!("{}", command.execute(&settings).await?);
                Ok(())
            }
            Command::Dlq { command } => {
                println!("{}", command.execute(&settings).await?);
                Ok(())
            }
            Command::Loadgen {
                requests,
                batch,
                seed,
                rate,
                timeout,
            } => {
                let options = LoadgenOptions {
                    requests,
                    batch,
                    seed,
                    rate,
                    timeout,
                };
                let report = loadgen::run(&settings, &options).await?;
                println!("{report}");
                Ok(())
            }
        }
    }
}

async fn run(settings: Settings) -> anyhow::Result<()> {
    let app = Application::build(settings).await?;
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
