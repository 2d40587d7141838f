//! `prereg-sync dlq …` arguments.

use std::path::PathBuf;

use chrono::{DateTime, Utc};
use clap::{Args, Subcommand};

use super::Output;
use crate::{
    config::Settings,
    dlq::{self, Filter, ListOptions, ReplayOptions, archive},
    progress::Progress,
};

#[derive(Debug, Args)]
pub struct FilterArgs {
    /// Only messages with this `x-error-code` (e.g. PRG_DATA_SYNC_012).
    #[arg(long)]
    error_code: Option<String>,
    /// Only the message with this transaction ID.
    #[arg(long)]
    transaction_id: Option<String>,
    /// Only messages that first failed at or after this time (RFC 3339, or a duration ago: 2h).
    #[arg(long, value_parser = dlq::parse_time)]
    since: Option<DateTime<Utc>>,
    /// Only messages that first failed before this time (RFC 3339, or a duration ago).
    #[arg(long, value_parser = dlq::parse_time)]
    until: Option<DateTime<Utc>>,
}

impl FilterArgs {
    /// Refuses to act on the whole queue unless `--all` says so: a forgotten filter must not
    /// replay or delete every dead letter.
    fn require_filter_or_all(&self, all: bool, command: &str) -> anyhow::Result<()> {
        let filtered = self.error_code.is_some()
            || self.transaction_id.is_some()
            || self.since.is_some()
            || self.until.is_some();
        match (filtered, all) {
            (false, false) => anyhow::bail!(
                "{command} without a filter acts on every message: add --all, or a filter"
            ),
            (true, true) => anyhow::bail!("{command}: --all and a filter exclude each other"),
            _ => Ok(()),
        }
    }
}

impl From<FilterArgs> for Filter {
    fn from(args: FilterArgs) -> Filter {
        Filter {
            error_code: args.error_code,
            transaction_id: args.transaction_id,
            since: args.since,
            until: args.until,
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum DlqCommand {
    /// Table of dead-lettered messages (no PRIDs unless --show-ids); the queue is unchanged.
    List {
        #[command(flatten)]
        filter: FilterArgs,
        /// At most this many rows.
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// Count per error code instead of rows (scans the whole queue).
        #[arg(long)]
        group: bool,
        /// Include the PRIDs of each request.
        #[arg(long)]
        show_ids: bool,
    },
    /// One message in full detail (its body only with --show-ids); the queue is unchanged.
    Show {
        transaction_id: String,
        /// Include the body, which holds PRIDs.
        #[arg(long)]
        show_ids: bool,
    },
    /// Move matching messages back to their original exchange with a fresh retry budget
    /// (requires a filter or --all).
    Replay {
        #[command(flatten)]
        filter: FilterArgs,
        /// Every message: no filter (not needed with --from-file or --dry-run).
        #[arg(long)]
        all: bool,
        /// At most this many messages.
        #[arg(long)]
        limit: Option<usize>,
        /// Messages per second.
        #[arg(long)]
        rate: Option<f64>,
        /// Print what would move; move nothing.
        #[arg(long)]
        dry_run: bool,
        /// Replay from a file written by `dlq export` instead of the queue.
        #[arg(long)]
        from_file: Option<PathBuf>,
    },
    /// Remove matching messages (requires --yes, and a filter or --all).
    Delete {
        #[command(flatten)]
        filter: FilterArgs,
        /// Every message: no filter (not needed with --dry-run).
        #[arg(long)]
        all: bool,
        /// At most this many messages.
        #[arg(long)]
        limit: Option<usize>,
        /// Print what would be removed; remove nothing.
        #[arg(long)]
        dry_run: bool,
        /// Confirm the deletion.
        #[arg(long)]
        yes: bool,
    },
    /// Archive matching messages to a JSON-lines file (mode 0600; it holds PRIDs).
    Export {
        /// The file to create; it must not exist.
        #[arg(long)]
        file: PathBuf,
        #[command(flatten)]
        filter: FilterArgs,
        /// At most this many messages.
        #[arg(long)]
        limit: Option<usize>,
    },
}

impl DlqCommand {
    pub(super) async fn execute(self, settings: &Settings, json: bool) -> anyhow::Result<Output> {
        match self {
            DlqCommand::List {
                filter,
                limit,
                group,
                show_ids,
            } => {
                let options = ListOptions {
                    filter: filter.into(),
                    limit,
                    json,
                    group,
                    show_ids,
                };
                Ok(Output::verbatim(dlq::list(settings, &options).await?))
            }
            DlqCommand::Show {
                transaction_id,
                show_ids,
            } => Ok(Output::verbatim(
                dlq::show(settings, &transaction_id, show_ids).await?,
            )),
            DlqCommand::Replay {
                filter,
                all,
                limit,
                rate,
                dry_run,
                from_file,
            } => {
                if !dry_run && from_file.is_none() {
                    filter.require_filter_or_all(all, "dlq replay")?;
                }
                let options = ReplayOptions {
                    filter: filter.into(),
                    limit,
                    rate,
                    dry_run,
                    progress: Progress::new(!json && !dry_run, "dlq replay"),
                };
                let summary = match from_file {
                    Some(file) => archive::replay_file(settings, &options, &file).await?,
                    None => dlq::replay(settings, &options).await?,
                };
                let verb = if dry_run { "dry run" } else { "replayed" };
                summary_output(verb, dry_run, &summary)
            }
            DlqCommand::Delete {
                filter,
                all,
                limit,
                dry_run,
                yes,
            } => {
                anyhow::ensure!(
                    dry_run || yes,
                    "dlq delete removes messages: add --yes (or --dry-run)"
                );
                if !dry_run {
                    filter.require_filter_or_all(all, "dlq delete")?;
                }
                let progress = Progress::new(!json && !dry_run, "dlq delete");
                let summary =
                    dlq::delete(settings, &filter.into(), limit, dry_run, &progress).await?;
                let verb = if dry_run { "dry run" } else { "deleted" };
                summary_output(verb, dry_run, &summary)
            }
            DlqCommand::Export {
                file,
                filter,
                limit,
            } => {
                let progress = Progress::new(!json, "dlq export");
                let written =
                    archive::export(settings, &filter.into(), limit, &file, &progress).await?;
                Output::new(
                    format!("exported {written} message(s) to {}", file.display()),
                    serde_json::json!({ "exported": written, "file": file }),
                )
            }
        }
    }
}

fn summary_output(verb: &str, dry_run: bool, summary: &dlq::Summary) -> anyhow::Result<Output> {
    let mut json = serde_json::to_value(summary)?;
    json["dry_run"] = dry_run.into();
    Output::new(format!("{verb}: {summary}"), json)
}
