//! `prereg-sync dlq …`: the arguments, the guards of the destructive commands (a filter or
//! `--all`, `--yes`), and everything the commands print (text, or JSON under `--json`); the
//! work itself is `crate::dlq`'s.

use std::{fmt::Write as _, path::PathBuf};

use chrono::{DateTime, Utc};
use clap::{Args, Subcommand};

use super::{Output, usage_unless};
use crate::{
    config::Settings,
    dlq::{self, Filter, ListOptions, Listing, Rework, ReworkOptions, Row, Summary},
    message::ErrorCode,
    progress::Progress,
};

#[derive(Debug, Args)]
pub(crate) struct FilterArgs {
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
        usage_unless(
            filtered || all,
            format!("{command} without a filter acts on every message: add --all, or a filter"),
        )?;
        usage_unless(
            !(filtered && all),
            format!("{command}: --all and a filter exclude each other"),
        )
    }
}

impl From<FilterArgs> for Filter {
    fn from(args: FilterArgs) -> Filter {
        if let Some(code) = &args.error_code {
            warn_unless_known(code);
        }
        Filter {
            error_code: args.error_code,
            transaction_id: args.transaction_id,
            since: args.since,
            until: args.until,
        }
    }
}

/// A filter on a code no message can carry (a typo, a wrong case) matches nothing after
/// walking the whole queue: say so before.
fn warn_unless_known(code: &str) {
    let known =
        ErrorCode::ALL.iter().any(|known| known.code() == code) || code.starts_with("broker: ");
    if !known {
        tracing::warn!(
            error_code = code,
            "--error-code is not one of the contract's codes nor `broker: <reason>` (codes are \
             case-sensitive; `dlq list --group` shows those in the queue): it will match nothing"
        );
    }
}

#[derive(Debug, Subcommand)]
pub(crate) enum DlqCommand {
    /// Table of dead-lettered messages (no PRIDs unless --show-ids); the queue is unchanged.
    List(ListArgs),
    /// One message in full detail (its body only with --show-ids); the queue is unchanged.
    Show(ShowArgs),
    /// Move matching messages back to their original exchange with a fresh retry budget
    /// (requires a filter or --all).
    Replay(ReplayArgs),
    /// Remove matching messages (requires --yes, and a filter or --all).
    Delete(DeleteArgs),
    /// Archive matching messages to a JSON-lines file (mode 0600; it holds PRIDs).
    Export(ExportArgs),
}

impl DlqCommand {
    pub(super) async fn execute(self, settings: &Settings, json: bool) -> anyhow::Result<Output> {
        match self {
            DlqCommand::List(args) => args.execute(settings, json).await,
            DlqCommand::Show(args) => args.execute(settings).await,
            DlqCommand::Replay(args) => args.execute(settings, json).await,
            DlqCommand::Delete(args) => args.execute(settings, json).await,
            DlqCommand::Export(args) => args.execute(settings, json).await,
        }
    }
}

#[derive(Debug, Args)]
pub(crate) struct ListArgs {
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
}

impl ListArgs {
    /// A table (or the count per error code), or the same as JSON.
    async fn execute(self, settings: &Settings, json: bool) -> anyhow::Result<Output> {
        let options = ListOptions {
            filter: self.filter.into(),
            limit: self.limit,
            group: self.group,
            show_ids: self.show_ids,
        };
        let text = match (dlq::list(settings, &options).await?, json) {
            (Listing::Groups(groups), true) => serde_json::to_string_pretty(&groups)?,
            (Listing::Groups(groups), false) => {
                let mut out = String::from("ERROR_CODE\tCOUNT\n");
                for (code, n) in &groups {
                    #[allow(
                        clippy::let_underscore_must_use,
                        reason = "writing to a String cannot fail"
                    )]
                    let _ = writeln!(out, "{code}\t{n}");
                }
                out
            }
            (Listing::Rows(rows), true) => serde_json::to_string_pretty(&rows)?,
            (Listing::Rows(rows), false) => table(&rows, options.show_ids),
        };
        Ok(Output::verbatim(text))
    }
}

#[allow(
    clippy::let_underscore_must_use,
    reason = "writing to a String cannot fail"
)]
fn table(rows: &[Row], show_ids: bool) -> String {
    let mut out = String::from(
        "POS\tTRANSACTION_ID\tERROR_CODE\tRETRIES\tFIRST_FAILURE\tDEATHS\tAPP_ID\tREASON",
    );
    out.push_str(if show_ids { "\tPRIDS\n" } else { "\n" });
    for row in rows {
        let _ = write!(
            out,
            "{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}",
            row.position,
            row.transaction_id.as_deref().unwrap_or("-"),
            row.error_code.as_deref().unwrap_or("-"),
            row.retry_count,
            row.first_failure_time.as_deref().unwrap_or("-"),
            row.death_count,
            row.app_id.as_deref().unwrap_or("-"),
            row.reason.as_deref().unwrap_or("-"),
        );
        if let Some(ids) = &row.pre_registration_ids {
            let _ = write!(out, "\t{}", ids.join(","));
        }
        out.push('\n');
    }
    let _ = write!(out, "({} message(s))", rows.len());
    out
}

#[derive(Debug, Args)]
pub(crate) struct ShowArgs {
    transaction_id: String,
    /// Include the body, which holds PRIDs.
    #[arg(long)]
    show_ids: bool,
}

impl ShowArgs {
    /// Always JSON: the message's properties and headers as the broker gave them, header
    /// values as strings and numbers.
    async fn execute(self, settings: &Settings) -> anyhow::Result<Output> {
        let mut detail = dlq::show(settings, &self.transaction_id, self.show_ids).await?;
        detail["properties"] = dlq::readable_properties(detail["properties"].take());
        Ok(Output::verbatim(serde_json::to_string_pretty(&detail)?))
    }
}

/// What `dlq replay` and `dlq delete` share: which messages, a dry run, who runs it.
#[derive(Debug, Args)]
pub(crate) struct ReworkArgs {
    #[command(flatten)]
    filter: FilterArgs,
    /// Every message: no filter (not needed with --dry-run, nor for replay --from-file).
    #[arg(long)]
    all: bool,
    /// At most this many messages.
    #[arg(long)]
    limit: Option<usize>,
    /// Print what would be done; change nothing.
    #[arg(long)]
    dry_run: bool,
    /// Who runs this, for the audit trail (default: the OS user).
    #[arg(long, value_name = "NAME")]
    operator: Option<String>,
}

impl ReworkArgs {
    /// Refuses to act on the whole queue unless `--all` says so (a dry run acts on nothing).
    fn require_filter_or_all(&self, command: &str) -> anyhow::Result<()> {
        if self.dry_run {
            return Ok(());
        }
        self.filter.require_filter_or_all(self.all, command)
    }

    /// The options of the run; no progress bar in a dry run, whose lines would tear it.
    fn options(self, json: bool, what: &'static str) -> ReworkOptions {
        ReworkOptions {
            filter: self.filter.into(),
            limit: self.limit,
            dry_run: self.dry_run,
            progress: Progress::new(!json && !self.dry_run, what),
            operator: operator_name(self.operator),
        }
    }
}

/// `--operator`, else the OS user (`USER`, `LOGNAME`), else the numeric user ID; made storable
/// and cut to the audit column's 256 bytes.
fn operator_name(operator: Option<String>) -> String {
    let name = operator
        .or_else(|| std::env::var("USER").ok())
        .or_else(|| std::env::var("LOGNAME").ok())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| {
            use std::os::unix::fs::MetadataExt;
            let uid = std::fs::metadata("/proc/self").map(|m| m.uid());
            uid.map_or_else(|_| "unknown".to_owned(), |uid| format!("uid:{uid}"))
        });
    crate::message::registration_processor_id(Some(&name))
        .chars()
        .scan(0, |bytes, c| {
            *bytes += c.len_utf8();
            (*bytes <= 256).then_some(c)
        })
        .collect()
}

#[derive(Debug, Args)]
pub(crate) struct ReplayArgs {
    #[command(flatten)]
    rework: ReworkArgs,
    /// Messages per second.
    #[arg(long)]
    rate: Option<f64>,
    /// Replay from a file written by `dlq export` instead of the queue.
    #[arg(long)]
    from_file: Option<PathBuf>,
}

impl ReplayArgs {
    async fn execute(self, settings: &Settings, json: bool) -> anyhow::Result<Output> {
        // An archive is a selection already; the guard is for the live queue.
        if self.from_file.is_none() {
            self.rework.require_filter_or_all("dlq replay")?;
        }
        let options = self.rework.options(json, "dlq replay");
        let mode = Rework::Replay { rate: self.rate };
        let on_dry_run_match = print_dry_run_match("replay");
        let summary = match &self.from_file {
            Some(file) => {
                dlq::replay_file(settings, self.rate, &options, file, on_dry_run_match).await?
            }
            None => dlq::rework(settings, mode, &options, on_dry_run_match).await?,
        };
        summary_output("replayed", &options, &summary)
    }
}

#[derive(Debug, Args)]
pub(crate) struct DeleteArgs {
    #[command(flatten)]
    rework: ReworkArgs,
    /// Confirm the deletion.
    #[arg(long)]
    yes: bool,
}

impl DeleteArgs {
    async fn execute(self, settings: &Settings, json: bool) -> anyhow::Result<Output> {
        usage_unless(
            self.rework.dry_run || self.yes,
            "dlq delete removes messages: add --yes (or --dry-run)",
        )?;
        self.rework.require_filter_or_all("dlq delete")?;
        let options = self.rework.options(json, "dlq delete");
        let summary = dlq::rework(
            settings,
            Rework::Delete,
            &options,
            print_dry_run_match("delete"),
        )
        .await?;
        summary_output("deleted", &options, &summary)
    }
}

/// Prints, as a dry run finds it, each message it would act on.
#[allow(
    clippy::print_stdout,
    reason = "a dry run's findings, for the operator"
)]
fn print_dry_run_match(verb: &'static str) -> impl FnMut(&Row) {
    move |row| {
        let id = row.transaction_id.as_deref().unwrap_or("-");
        println!("would {verb} {id}");
    }
}

/// The last line of `dlq replay` and `dlq delete`: what was `done` (or "dry run"), the counts.
fn summary_output(done: &str, options: &ReworkOptions, s: &Summary) -> anyhow::Result<Output> {
    let mut json = serde_json::to_value(s)?;
    json["dry_run"] = options.dry_run.into();
    let done = if options.dry_run { "dry run" } else { done };
    let text = format!(
        "{done}: examined={} matched={} acted={} kept={}",
        s.examined, s.matched, s.acted, s.kept
    );
    Output::new(text, json)
}

#[derive(Debug, Args)]
pub(crate) struct ExportArgs {
    /// The file to create (it must not exist), or `-` for stdout.
    #[arg(long)]
    file: PathBuf,
    #[command(flatten)]
    filter: FilterArgs,
    /// At most this many messages.
    #[arg(long)]
    limit: Option<usize>,
}

impl ExportArgs {
    async fn execute(self, settings: &Settings, json: bool) -> anyhow::Result<Output> {
        let progress = Progress::new(!json, "dlq export");
        let filter = self.filter.into();
        let to_stdout = self.file.as_os_str() == "-";
        let written = if to_stdout {
            dlq::export(settings, &filter, self.limit, std::io::stdout(), &progress).await?
        } else {
            let file = dlq::create_archive(&self.file)?;
            dlq::export(settings, &filter, self.limit, file, &progress).await?
        };
        let output = Output::new(
            format!("exported {written} message(s) to {}", self.file.display()),
            serde_json::json!({ "exported": written, "file": self.file }),
        )?;
        // The archive is stdout's: the summary goes beside it, to stderr.
        Ok(if to_stdout {
            output.on_stderr()
        } else {
            output
        })
    }
}
