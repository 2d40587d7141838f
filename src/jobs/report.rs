//! The end-of-day summary (`prereg-sync report`, and `report.schedule` inside `run`): per UTC day,
//! what the worker did, read from the audit trail and the consumed-job run history only. No PRID
//! is read: the PRID count comes from the stored count of each transaction record.

use std::{collections::BTreeMap, fmt};

use anyhow::Context;
use chrono::{Days, NaiveDate, NaiveDateTime, Utc};
use deadpool_postgres::{Client, Pool};
use serde::Serialize;
use tokio_postgres::Row;

use crate::storage::audit::{self, AuditEvent, AuditRecord};

/// The most days one report covers: a report is a summary, not an export.
pub(crate) const MAX_DAYS: u64 = 366;

/// One UTC day's figures.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub(crate) struct DayReport {
    pub(crate) date: NaiveDate,
    /// Deliveries that reached a final outcome: stored, duplicate, rejected, dead-lettered (a
    /// stored request whose reply was undeliverable counts once, as stored).
    pub(crate) requests_received: i64,
    pub(crate) stored: i64,
    pub(crate) duplicates: i64,
    /// Rejected requests by error code.
    pub(crate) rejected: BTreeMap<String, i64>,
    /// Requests the worker gave up on, by error code (retries spent, crash loop, undeliverable
    /// reply). Rejections are not among them.
    pub(crate) dead_lettered: BTreeMap<String, i64>,
    /// Copies the worker put into the dead-letter queue that day: one per rejected and one per
    /// dead-lettered request, what `dlq list` shows arriving. The broker's own dead-lettering at
    /// its delivery limit is not audited and not counted.
    pub(crate) to_dead_letter_queue: i64,
    /// PRIDs stored by the day's stored requests (from their transaction records; a record
    /// purged by `maintenance purge-transactions` no longer counts).
    pub(crate) prids_stored: i64,
    /// Messages moved back from the dead-letter queue by `dlq replay`.
    pub(crate) replays: i64,
    /// Consumed-status job runs started that day, by status.
    pub(crate) consumed_job_runs: BTreeMap<String, i64>,
    /// Applications moved to the `*_consumed` tables by those runs.
    pub(crate) rows_moved: i64,
}

impl fmt::Display for DayReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let by_key = |map: &BTreeMap<String, i64>| {
            let total: i64 = map.values().sum();
            let parts: Vec<String> = map.iter().map(|(k, v)| format!("{k}={v}")).collect();
            if parts.is_empty() {
                total.to_string()
            } else {
                format!("{total} ({})", parts.join(" "))
            }
        };
        write!(
            f,
            "{}: requests={} stored={} duplicates={} rejected={} dead_lettered={} to_dlq={} prids_stored={} replays={} consumed_job_runs={} rows_moved={}",
            self.date,
            self.requests_received,
            self.stored,
            self.duplicates,
            by_key(&self.rejected),
            by_key(&self.dead_lettered),
            self.to_dead_letter_queue,
            self.prids_stored,
            self.replays,
            by_key(&self.consumed_job_runs),
            self.rows_moved,
        )
    }
}

/// How many days `first..=last` holds, or why a report cannot cover them.
pub(crate) fn day_count(first: NaiveDate, last: NaiveDate) -> Result<u64, String> {
    if first > last {
        return Err(format!(
            "the report's first day {first} is after its last {last}"
        ));
    }
    let days = (last - first).num_days().unsigned_abs() + 1;
    if days > MAX_DAYS {
        return Err(format!(
            "a report covers at most {MAX_DAYS} days, not {days}"
        ));
    }
    Ok(days)
}

/// The reports being filled, by day.
type ByDay = BTreeMap<NaiveDate, DayReport>;

/// Reports for every UTC day from `first` to `last`, both included.
pub(crate) async fn day_reports(
    pool: &Pool,
    first: NaiveDate,
    last: NaiveDate,
) -> anyhow::Result<Vec<DayReport>> {
    let days = day_count(first, last).map_err(anyhow::Error::msg)?;
    let mut reports: ByDay = first
        .iter_days()
        .take(days as usize)
        .map(|date| {
            (
                date,
                DayReport {
                    date,
                    ..DayReport::default()
                },
            )
        })
        .collect();
    let since = first.and_hms_opt(0, 0, 0).expect("midnight exists");
    let until = (last + Days::new(1))
        .and_hms_opt(0, 0, 0)
        .expect("midnight exists");
    let client = pool.get().await.context("connecting to the database")?;
    add_audit_events(&client, &mut reports, (since, until)).await?;
    add_prids_stored(&client, &mut reports, (since, until)).await?;
    add_job_runs(&client, &mut reports, (since, until)).await?;
    Ok(reports
        .into_values()
        .map(|mut day| {
            let undelivered = day.dead_lettered.get("PRS_REPLY_UNDELIVERED").copied();
            day.to_dead_letter_queue =
                day.rejected.values().sum::<i64>() + day.dead_lettered.values().sum::<i64>();
            day.requests_received =
                day.stored + day.duplicates + day.to_dead_letter_queue - undelivered.unwrap_or(0);
            day
        })
        .collect())
}

/// The report of the day a row's first column names (a day the query's range covers).
fn day_of<'a>(reports: &'a mut ByDay, row: &Row) -> &'a mut DayReport {
    reports
        .get_mut(&row.get::<_, NaiveDate>(0))
        .expect("day in range")
}

/// Outcomes and replays, from the audit trail.
async fn add_audit_events(
    client: &Client,
    reports: &mut ByDay,
    (since, until): (NaiveDateTime, NaiveDateTime),
) -> anyhow::Result<()> {
    let rows = client
        .query(
            r#"
            SELECT event_time::date, event, coalesce(error_code, ''), count(*)
            FROM prereg.sync_audit WHERE event_time >= $1 AND event_time < $2
            GROUP BY 1, 2, 3
            "#,
            &[&since, &until],
        )
        .await
        .context("reading the audit trail")?;
    for row in rows {
        let day = day_of(reports, &row);
        let (event, code, count): (String, String, i64) = (row.get(1), row.get(2), row.get(3));
        match event.as_str() {
            "STORED" => day.stored += count,
            "DUPLICATE" => day.duplicates += count,
            "REJECTED" => *day.rejected.entry(code).or_default() += count,
            "DEAD_LETTERED" => *day.dead_lettered.entry(code).or_default() += count,
            "REPLAYED" => day.replays += count,
            _ => {}
        }
    }
    Ok(())
}

/// PRIDs stored, from the stored count of each stored request's transaction record.
async fn add_prids_stored(
    client: &Client,
    reports: &mut ByDay,
    (since, until): (NaiveDateTime, NaiveDateTime),
) -> anyhow::Result<()> {
    let rows = client
        .query(
            r#"
            SELECT a.event_time::date, coalesce(sum(t.stored_count), 0)::bigint
            FROM prereg.sync_audit a JOIN prereg.sync_transaction t USING (transaction_id)
            WHERE a.event = 'STORED' AND a.event_time >= $1 AND a.event_time < $2 GROUP BY 1
            "#,
            &[&since, &until],
        )
        .await
        .context("reading the stored counts")?;
    for row in rows {
        day_of(reports, &row).prids_stored = row.get(1);
    }
    Ok(())
}

/// Consumed-status job runs by status and the applications they moved, from the run history.
async fn add_job_runs(
    client: &Client,
    reports: &mut ByDay,
    (since, until): (NaiveDateTime, NaiveDateTime),
) -> anyhow::Result<()> {
    let rows = client
        .query(
            r#"
            SELECT started_at::date, status, count(*), coalesce(sum(moved), 0)::bigint
            FROM prereg.consumed_job_run WHERE started_at >= $1 AND started_at < $2
            GROUP BY 1, 2
            "#,
            &[&since, &until],
        )
        .await
        .context("reading the consumed-job runs")?;
    for row in rows {
        let day = day_of(reports, &row);
        day.consumed_job_runs.insert(row.get(1), row.get(2));
        day.rows_moved += row.get::<_, i64>(3);
    }
    Ok(())
}

/// The scheduled report: yesterday's figures (UTC), logged and recorded in the audit trail as a
/// `DAILY_REPORT` run, like the consumed-status job's runs.
pub(crate) async fn report_yesterday(pool: &Pool) -> anyhow::Result<DayReport> {
    let yesterday = Utc::now().date_naive() - Days::new(1);
    let day = day_reports(pool, yesterday, yesterday)
        .await?
        .pop()
        .expect("one day asked, one day reported");
    let client = pool.get().await.context("connecting to the database")?;
    let record = AuditRecord {
        at: Utc::now().naive_utc(),
        app_id: "prereg-sync",
        transaction_id: None,
        event: AuditEvent::DailyReport,
        error_code: None,
    };
    audit::write(&client, &record)
        .await
        .context("recording the report run")?;
    Ok(day)
}
