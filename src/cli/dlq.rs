//! `prereg-sync dlq …` arguments.

use std::path::PathBuf;

use chrono::{DateTime, Utc};
use clap::{Args, Subcommand};

use crate::{
    config::Settings,
    dlq::{self, Filter, ListOptions, ReplayOptions, archive},
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
        /// JSON instead of a table.
        #[arg(long)]
        json: bool,
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
    /// Move matching messages back to their original exchange with a fresh retry budget.
    Replay {
        #[command(flatten)]
        filter: FilterArgs,
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
    /// Remove matching messages (requires --yes).
    Delete {
        #[command(flatten)]
        filter: FilterArgs,
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
    pub async fn execute(self, settings: &Settings) -> anyhow::Result<String> {
        match self {
            DlqCommand::List {
                filter,
                limit,
                json,
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
                dlq::list(settings, &options).await
            }
            DlqCommand::Show {
                transaction_id,
                show_ids,
            } => dlq::show(settings, &transaction_id, show_ids).await,
            DlqCommand::Replay {
                filter,
                limit,
                rate,
                dry_run,
                from_file,
            } => {
                let options = ReplayOptions {
                    filter: filter.into(),
                    limit,
                    rate,
                    dry_run,
                };
                let summary = match from_file {
                    Some(file) => archive::replay_file(settings, &options, &file).await?,
                    None => dlq::replay(settings, &options).await?,
                };
                let verb = if dry_run { "dry run" } else { "replayed" };
                Ok(format!("{verb}: {summary}"))
            }
            DlqCommand::Delete {
                filter,
                limit,
                dry_run,
                yes,
            } => {
                anyhow::ensure!(
                    dry_run || yes,
                    "dlq delete removes messages: add --yes (or --dry-run)"
                );
                let summary = dlq::delete(settings, &filter.into(), limit, dry_run).await?;
                let verb = if dry_run { "dry run" } else { "deleted" };
                Ok(format!("{verb}: {summary}"))
            }
            DlqCommand::Export {
                file,
                filter,
                limit,
            } => {
                let written = archive::export(settings, &filter.into(), limit, &file).await?;
                Ok(format!(
                    "exported {written} message(s) to {}",
                    file.display()
                ))
            }
        }
    }
}
