//! `prereg-sync consumed-job …` and `prereg-sync maintenance …` arguments.

use std::{fmt::Write as _, time::Duration};

use clap::Subcommand;
use tokio_util::sync::CancellationToken;

use crate::{
    config::Settings,
    jobs::{
        consumed::{self, ConsumedJob, Trigger},
        maintenance::{self, Purge},
    },
    storage,
    telemetry::Metrics,
};

#[derive(Debug, Subcommand)]
pub enum ConsumedJobCommand {
    /// Run the consumed-status job once now and print a summary.
    Run,
    /// List past runs, newest first.
    History {
        /// At most this many runs.
        #[arg(long, default_value_t = 20)]
        limit: i64,
        /// JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

impl ConsumedJobCommand {
    pub async fn execute(self, settings: &Settings) -> anyhow::Result<String> {
        let pool = storage::build_pool(&settings.database)?;
        match self {
            ConsumedJobCommand::Run => {
                let job = &settings.consumed_job;
                let job =
                    ConsumedJob::new(pool, job.chunk_size, job.app_id.clone(), Metrics::new());
                Ok(
                    match job.run(Trigger::Command, &CancellationToken::new()).await? {
                        Some(report) => report.to_string(),
                        None => {
                            "skipped: another replica is running the consumed-status job".to_owned()
                        }
                    },
                )
            }
            ConsumedJobCommand::History { limit, json } => {
                let client = pool.get().await?;
                let runs = consumed::history(&client, limit).await?;
                if json {
                    return Ok(serde_json::to_string_pretty(&runs)?);
                }
                let mut out = String::from(
                    "ID\tSTARTED\tFINISHED\tSTATUS\tTRIGGER\tSELECTED\tMOVED\tNOT_FOUND\tFAILED\n",
                );
                for run in runs {
                    let finished = run.finished_at.map_or("-".to_owned(), |t| t.to_string());
                    let _ = writeln!(
                        out,
                        "{}\t{}\t{finished}\t{}\t{}\t{}\t{}\t{}\t{}",
                        run.id,
                        run.started_at,
                        run.status,
                        run.triggered_by,
                        run.selected,
                        run.moved,
                        run.not_found,
                        run.failed
                    );
                }
                Ok(out)
            }
        }
    }
}

#[derive(Debug, Subcommand)]
// The variant names are the contract's command names (purge-interface, …).
#[allow(clippy::enum_variant_names)]
pub enum MaintenanceCommand {
    /// Delete interface-table rows (intf_processed_prereg_list) created before the cutoff.
    PurgeInterface {
        /// Age, e.g. 90d.
        #[arg(long, value_parser = humantime::parse_duration)]
        older_than: Duration,
    },
    /// Delete transaction records (sync_transaction) older than the cutoff; a redelivery of an
    /// older request is then processed as new.
    PurgeTransactions {
        #[arg(long, value_parser = humantime::parse_duration)]
        older_than: Duration,
    },
    /// Delete audit rows (sync_audit) older than the cutoff.
    PurgeAudit {
        #[arg(long, value_parser = humantime::parse_duration)]
        older_than: Duration,
    },
}

impl MaintenanceCommand {
    pub async fn execute(self, settings: &Settings) -> anyhow::Result<String> {
        let (what, older_than, name) = match self {
            MaintenanceCommand::PurgeInterface { older_than } => {
                (Purge::Interface, older_than, "interface rows")
            }
            MaintenanceCommand::PurgeTransactions { older_than } => {
                (Purge::Transactions, older_than, "transaction records")
            }
            MaintenanceCommand::PurgeAudit { older_than } => {
                (Purge::Audit, older_than, "audit rows")
            }
        };
        let pool = storage::build_pool(&settings.database)?;
        let deleted = maintenance::purge(&pool, what, older_than).await?;
        Ok(format!(
            "deleted {deleted} {name} older than {}",
            humantime::format_duration(older_than)
        ))
    }
}
