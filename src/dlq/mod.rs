//! `prereg-sync dlq …`: inspect, replay, delete and archive dead-lettered requests.
//!
//! Every command works through the queue's snapshot (the messages present when it started) in
//! bounded memory; see [`queue`] for how messages are read without loss. PRIDs are shown only
//! with `--show-ids`; the archive file holds them and is created mode 0600.

pub mod archive;
pub mod queue;

use std::{collections::BTreeMap, fmt::Write as _, time::Duration};

use chrono::{DateTime, Utc};
use lapin::message::Delivery;
use serde::Serialize;

use self::queue::{Action, DeadLetterQueue, death_count};
use crate::{
    amqp::headers::{self, integer, string},
    config::Settings,
    message::{TransactionId, envelope::parse_request_time, registration_processor_id},
    progress::Progress,
    storage::{
        self,
        audit::{self, AuditEvent, AuditRecord},
    },
};

/// Who the audit trail names for operator actions.
const CLI_APP_ID: &str = "prereg-sync-cli";

/// Which dead-lettered messages a command applies to; all criteria must hold.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub error_code: Option<String>,
    pub transaction_id: Option<String>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
}

impl Filter {
    pub fn matches(&self, row: &Row) -> bool {
        let failed_at = row
            .first_failure_time
            .as_deref()
            .and_then(parse_request_time)
            .map(|t| t.and_utc());
        self.error_code
            .as_ref()
            .is_none_or(|c| row.error_code.as_ref() == Some(c))
            && self
                .transaction_id
                .as_ref()
                .is_none_or(|t| row.transaction_id.as_ref() == Some(t))
            && self
                .since
                .is_none_or(|since| failed_at.is_some_and(|at| at >= since))
            && self
                .until
                .is_none_or(|until| failed_at.is_some_and(|at| at < until))
    }
}

/// `--since` / `--until`: an RFC 3339 time, the contract's format, or a duration ago (`2h`).
pub fn parse_time(raw: &str) -> Result<DateTime<Utc>, String> {
    if let Ok(at) = DateTime::parse_from_rfc3339(raw) {
        return Ok(at.with_timezone(&Utc));
    }
    if let Some(at) = parse_request_time(raw) {
        return Ok(at.and_utc());
    }
    humantime::parse_duration(raw)
        .ok()
        .and_then(|ago| chrono::Duration::from_std(ago).ok())
        .map(|ago| Utc::now() - ago)
        .ok_or_else(|| format!("`{raw}` is neither a time (RFC 3339) nor a duration ago (e.g. 2h)"))
}

/// One dead-lettered message as the tools show it.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub position: u64,
    pub transaction_id: Option<String>,
    pub error_code: Option<String>,
    pub reason: Option<String>,
    pub retry_count: i64,
    pub first_failure_time: Option<String>,
    pub death_count: i64,
    pub app_id: Option<String>,
    pub replay_count: i64,
    pub body_bytes: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pre_registration_ids: Option<Vec<String>>,
}

impl Row {
    /// Worker-dead-lettered messages carry the contract's headers; those the broker
    /// dead-lettered itself (delivery limit) are described from `x-death`.
    pub fn of(position: u64, delivery: &Delivery, show_ids: bool) -> Row {
        let mut row = Row::from_parts(position, &delivery.properties, delivery.data.len());
        if show_ids {
            row.pre_registration_ids = Some(prids_of(&delivery.data));
        }
        row
    }

    /// The row of a message known by its properties (a delivery or an archived message).
    pub fn from_parts(
        position: u64,
        properties: &lapin::BasicProperties,
        body_bytes: usize,
    ) -> Row {
        let table = properties.headers().as_ref();
        let broker_reason = headers::x_death_reason(table).map(|r| format!("broker: {r}"));
        Row {
            position,
            transaction_id: string(table, headers::TRANSACTION_ID)
                .map(str::to_owned)
                .or_else(|| properties.message_id().as_ref().map(|m| m.to_string())),
            error_code: string(table, headers::ERROR_CODE)
                .map(str::to_owned)
                .or(broker_reason.clone()),
            reason: string(table, headers::EXCEPTION_MESSAGE)
                .map(str::to_owned)
                .or(broker_reason),
            retry_count: integer(table, headers::RETRY_COUNT).unwrap_or(0),
            first_failure_time: string(table, headers::FIRST_FAILURE_TIME).map(str::to_owned),
            death_count: death_count(properties),
            app_id: properties.app_id().as_ref().map(|a| a.to_string()),
            replay_count: integer(table, headers::REPLAY_COUNT).unwrap_or(0),
            body_bytes,
            pre_registration_ids: None,
        }
    }
}

/// The PRIDs of a request body, as far as it can be read (it may be the reason it failed).
fn prids_of(body: &[u8]) -> Vec<String> {
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(body) else {
        return Vec::new();
    };
    let request = &value["request"];
    let ids = if request["preRegistrationIds"].is_array() {
        &request["preRegistrationIds"]
    } else {
        &request["pre_registration_ids"]
    };
    ids.as_array()
        .map(|ids| {
            ids.iter()
                .filter_map(|id| id.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// The pause between replayed messages for `--rate` messages per second.
pub(crate) fn pace(rate: f64) -> Duration {
    Duration::from_secs_f64(1.0 / rate.max(0.001))
}

/// Where a replayed message goes: its original exchange and routing key (from the failure
/// headers), else the configured request exchange and routing key.
pub(crate) fn replay_target(
    delivery_properties: &lapin::BasicProperties,
    settings: &Settings,
) -> (String, String) {
    let table = delivery_properties.headers().as_ref();
    let exchange = string(table, headers::ORIGINAL_EXCHANGE).unwrap_or(&settings.amqp.exchange);
    let routing_key =
        string(table, headers::ORIGINAL_ROUTING_KEY).unwrap_or(&settings.amqp.routing_key);
    (exchange.to_owned(), routing_key.to_owned())
}

pub struct ListOptions {
    pub filter: Filter,
    pub limit: usize,
    pub json: bool,
    pub group: bool,
    pub show_ids: bool,
}

/// `dlq list`: matching messages (at most `limit`), or with `group` the count per error code.
pub async fn list(settings: &Settings, options: &ListOptions) -> anyhow::Result<String> {
    let queue = DeadLetterQueue::open(&settings.amqp).await?;
    let mut rows = Vec::new();
    let mut groups: BTreeMap<String, u64> = BTreeMap::new();
    queue
        .inspect(|position, delivery| {
            let row = Row::of(position, delivery, options.show_ids);
            if options.filter.matches(&row) {
                if options.group {
                    *groups
                        .entry(row.error_code.clone().unwrap_or_default())
                        .or_default() += 1;
                    return true;
                }
                rows.push(row);
            }
            rows.len() < options.limit
        })
        .await?;
    queue.close().await;
    Ok(match (options.group, options.json) {
        (true, true) => serde_json::to_string_pretty(&groups)?,
        (true, false) => {
            groups
                .iter()
                .fold(String::from("ERROR_CODE\tCOUNT\n"), |mut out, (code, n)| {
                    let _ = writeln!(out, "{code}\t{n}");
                    out
                })
        }
        (false, true) => serde_json::to_string_pretty(&rows)?,
        (false, false) => table(&rows, options.show_ids),
    })
}

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

/// `dlq show`: every property and header of one message (the body only with `show_ids`).
pub async fn show(
    settings: &Settings,
    transaction_id: &str,
    show_ids: bool,
) -> anyhow::Result<String> {
    let queue = DeadLetterQueue::open(&settings.amqp).await?;
    let mut found = None;
    queue
        .inspect(|position, delivery| {
            let row = Row::of(position, delivery, show_ids);
            if row.transaction_id.as_deref() != Some(transaction_id) {
                return true;
            }
            let mut detail = serde_json::json!({
                "summary": row,
                "exchange": delivery.exchange.as_str(),
                "routing_key": delivery.routing_key.as_str(),
                "properties": delivery.properties,
            });
            if show_ids {
                detail["body"] = String::from_utf8_lossy(&delivery.data).into();
            }
            found = Some(detail);
            false
        })
        .await?;
    queue.close().await;
    let detail = found.ok_or_else(|| {
        anyhow::anyhow!("no dead-lettered message with transaction ID `{transaction_id}`")
    })?;
    Ok(serde_json::to_string_pretty(&detail)?)
}

pub struct ReplayOptions {
    pub filter: Filter,
    pub limit: Option<usize>,
    pub rate: Option<f64>,
    pub dry_run: bool,
    /// Counts the messages examined.
    pub progress: Progress,
}

/// What a replay or delete did.
#[derive(Debug, Default, Serialize)]
pub struct Summary {
    pub examined: u64,
    pub matched: u64,
    pub acted: u64,
    pub kept: u64,
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "examined={} matched={} acted={} kept={}",
            self.examined, self.matched, self.acted, self.kept
        )
    }
}

/// `dlq replay`: matching messages back to their original exchange and routing key with a
/// fresh retry budget, `x-replay-count` incremented and the failure headers removed.
pub async fn replay(settings: &Settings, options: &ReplayOptions) -> anyhow::Result<Summary> {
    rework(
        settings,
        &options.filter,
        options.limit,
        options.dry_run,
        Mode::Replay { rate: options.rate },
        &options.progress,
    )
    .await
}

/// `dlq delete`: matching messages removed (the caller has required `--yes`).
pub async fn delete(
    settings: &Settings,
    filter: &Filter,
    limit: Option<usize>,
    dry_run: bool,
    progress: &Progress,
) -> anyhow::Result<Summary> {
    rework(settings, filter, limit, dry_run, Mode::Delete, progress).await
}

enum Mode {
    Replay { rate: Option<f64> },
    Delete,
}

async fn rework(
    settings: &Settings,
    filter: &Filter,
    limit: Option<usize>,
    dry_run: bool,
    mode: Mode,
    progress: &Progress,
) -> anyhow::Result<Summary> {
    let queue = DeadLetterQueue::open(&settings.amqp).await?;
    let mut summary = Summary::default();
    let limit = limit.unwrap_or(usize::MAX) as u64;
    if dry_run {
        queue
            .inspect(|position, delivery| {
                summary.examined += 1;
                let row = Row::of(position, delivery, false);
                if filter.matches(&row) && summary.matched < limit {
                    summary.matched += 1;
                    println!(
                        "would {} {}",
                        mode.verb(),
                        row.transaction_id.as_deref().unwrap_or("-")
                    );
                }
                true
            })
            .await?;
        queue.close().await;
        return Ok(summary);
    }
    let auditor = Auditor::connect(settings).await?;
    let pace = match mode {
        Mode::Replay { rate } => rate.map(pace),
        Mode::Delete => None,
    };
    let mut walk = queue.walk().await?;
    progress.set_total(walk.remaining().into());
    while let Some((position, delivery)) = walk.next().await? {
        summary.examined += 1;
        progress.inc(1);
        let row = Row::of(position, &delivery, false);
        if !filter.matches(&row) || summary.matched >= limit {
            summary.kept += 1;
            queue.settle(&delivery, Action::Keep).await?;
            continue;
        }
        summary.matched += 1;
        let action = match mode {
            Mode::Replay { .. } => {
                if let Some(pace) = pace {
                    tokio::time::sleep(pace).await;
                }
                let (exchange, routing_key) = replay_target(&delivery.properties, settings);
                let properties = Box::new(headers::replay_properties(&delivery.properties));
                Action::Forward {
                    exchange,
                    routing_key,
                    properties,
                }
            }
            Mode::Delete => Action::Drop,
        };
        queue.settle(&delivery, action).await?;
        summary.acted += 1;
        auditor.message(&row, mode.message_event()).await?;
    }
    progress.finish();
    auditor.run(mode.run_event()).await?;
    queue.close().await;
    Ok(summary)
}

impl Mode {
    fn verb(&self) -> &'static str {
        match self {
            Mode::Replay { .. } => "replay",
            Mode::Delete => "delete",
        }
    }

    fn message_event(&self) -> AuditEvent {
        match self {
            Mode::Replay { .. } => AuditEvent::Replayed,
            Mode::Delete => AuditEvent::Deleted,
        }
    }

    fn run_event(&self) -> AuditEvent {
        match self {
            Mode::Replay { .. } => AuditEvent::DlqReplayRun,
            Mode::Delete => AuditEvent::DlqDeleteRun,
        }
    }
}

/// Audit rows of an operator command: one per message acted on, one for the run.
pub(crate) struct Auditor {
    client: deadpool_postgres::Client,
}

impl Auditor {
    pub(crate) async fn connect(settings: &Settings) -> anyhow::Result<Auditor> {
        let pool = storage::build_pool(&settings.database)?;
        Ok(Auditor {
            client: pool.get().await?,
        })
    }

    /// The message's IDs are the publisher's: made storable as the worker stores them (a
    /// `message_id` that is no valid transaction ID is left out).
    pub(crate) async fn message(&self, row: &Row, event: AuditEvent) -> anyhow::Result<()> {
        let app_id = registration_processor_id(row.app_id.as_deref());
        let transaction_id = row.transaction_id.as_deref().and_then(TransactionId::parse);
        let record = AuditRecord {
            at: Utc::now().naive_utc(),
            app_id: &app_id,
            transaction_id: transaction_id.as_ref().map(TransactionId::as_str),
            event,
            error_code: None,
        };
        Ok(audit::write(&self.client, &record).await?)
    }

    pub(crate) async fn run(&self, event: AuditEvent) -> anyhow::Result<()> {
        let record = AuditRecord {
            at: Utc::now().naive_utc(),
            app_id: CLI_APP_ID,
            transaction_id: None,
            event,
            error_code: None,
        };
        Ok(audit::write(&self.client, &record).await?)
    }
}
