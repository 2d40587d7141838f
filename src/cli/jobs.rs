//! `prereg-sync consumed-job …` and `prereg-sync maintenance …` arguments.

use std::{fmt::Write as _, time::Duration};

use clap::{Args, Subcommand};
use tokio_util::sync::CancellationToken;

use super::{Completion, Output, usage_unless};
use crate::{
    config::Settings,
    jobs::{
        consumed::{self, ConsumedJob, Trigger},
        maintenance::{self, MIN_AGE, Purge},
    },
    progress::Progress,
    storage,
    telemetry::{Metrics, labels::JobRunStatus},
};

#[derive(Debug, Subcommand)]
pub(crate) enum ConsumedJobCommand {
    /// Run the consumed-status job once now and print a summary; exit status 3 when the run
    /// ends PARTIAL (some PRIDs could not be moved).
    Run,
    /// List past runs, newest first.
    History {
        /// At most this many runs.
        #[arg(long, default_value_t = 20)]
        limit: i64,
    },
}

impl ConsumedJobCommand {
    pub(super) async fn execute(self, settings: &Settings, json: bool) -> anyhow::Result<Output> {
        let pool = storage::build_pool(&settings.database)?;
        match self {
            ConsumedJobCommand::Run => {
                let job = &settings.consumed_job;
                let job =
                    ConsumedJob::new(pool, job.chunk_size, job.app_id.clone(), Metrics::new())
                        .with_progress(Progress::new(!json, "consumed-job run"));
                let Some(report) = job.run(Trigger::Command, &CancellationToken::new()).await?
                else {
                    return Output::new(
                        "skipped: another replica is running the consumed-status job",
                        serde_json::json!({ "skipped": true }),
                    );
                };
                let mut output = Output::new(report.to_string(), &report)?;
                if report.status == Some(JobRunStatus::Partial) {
                    output.completion = Completion::Partial;
                }
                Ok(output)
            }
            ConsumedJobCommand::History { limit } => {
                let client = pool.get().await?;
                let runs = consumed::history(&client, limit).await?;
                let mut out = String::from(
                    "ID\tSTARTED\tFINISHED\tSTATUS\tTRIGGER\tSELECTED\tMOVED\tNOT_FOUND\tFAILED\n",
                );
                for run in &runs {
                    let finished = run.finished_at.map_or("-".to_owned(), |t| t.to_string());
                    #[allow(
                        clippy::let_underscore_must_use,
                        reason = "writing to a String cannot fail"
                    )]
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
                Output::new(out, &runs)
            }
        }
    }
}

/// What every purge takes.
#[derive(Debug, Args)]
pub(crate) struct PurgeArgs {
    /// Delete rows older than this, e.g. 90d; at least 1 day.
    #[arg(long, value_parser = parse_age)]
    older_than: Duration,
    /// Count the rows that would go; delete nothing.
    #[arg(long)]
    dry_run: bool,
    /// Confirm the deletion.
    #[arg(long)]
    yes: bool,
}

/// A humantime duration of at least [`MIN_AGE`]: `--older-than 0s` would empty the table.
fn parse_age(text: &str) -> Result<Duration, String> {
    let age = humantime::parse_duration(text).map_err(|err| err.to_string())?;
    if age < MIN_AGE {
        return Err(format!(
            "at least {} (a younger cutoff would delete rows still in use)",
            humantime::format_duration(MIN_AGE)
        ));
    }
    Ok(age)
}

#[derive(Debug, Subcommand)]
// The variant names are the contract's command names (purge-interface, …).
#[allow(clippy::enum_variant_names)]
pub(crate) enum MaintenanceCommand {
    /// Delete interface-table rows (intf_processed_prereg_list) created before the cutoff.
    PurgeInterface(PurgeArgs),
    /// Delete transaction records (sync_transaction) older than the cutoff; a redelivery of an
    /// older request is then processed as new.
    PurgeTransactions(PurgeArgs),
    /// Delete audit rows (sync_audit) older than the cutoff.
    PurgeAudit(PurgeArgs),
}

impl MaintenanceCommand {
    pub(super) async fn execute(self, settings: &Settings) -> anyhow::Result<Output> {
        let (what, args, name) = match self {
            MaintenanceCommand::PurgeInterface(args) => (Purge::Interface, args, "interface rows"),
            MaintenanceCommand::PurgeTransactions(args) => {
                (Purge::Transactions, args, "transaction records")
            }
            MaintenanceCommand::PurgeAudit(args) => (Purge::Audit, args, "audit rows"),
        };
        usage_unless(
            args.dry_run || args.yes,
            "maintenance purges delete rows: add --yes (or --dry-run)",
        )?;
        let pool = storage::build_pool(&settings.database)?;
        let older_than = humantime::format_duration(args.older_than).to_string();
        let rows = maintenance::purge(&pool, what, args.older_than, args.dry_run).await?;
        let verb = if args.dry_run {
            "would delete"
        } else {
            "deleted"
        };
        Output::new(
            format!("{verb} {rows} {name} older than {older_than}"),
            serde_json::json!({
                "table": what.table(),
                "older_than": older_than,
                "dry_run": args.dry_run,
                "rows": rows,
            }),
        )
    }
}
