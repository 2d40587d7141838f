//! The run history, `prereg.consumed_job_run`: a run's row from start to end, its audit row,
//! and the list `consumed-job history` prints.

use anyhow::Context;
use chrono::{DateTime, NaiveDateTime, Utc};
use deadpool_postgres::{Client, GenericClient};
use serde::Serialize;

use super::{RunReport, Trigger, archive::now};
use crate::{
    storage::{
        StorageError,
        audit::{self, AuditEvent, AuditRecord},
    },
    telemetry::labels::LabelSet,
};

/// Records a run starting; returns its ID. Called with the job lock held, so no run is active:
/// a RUNNING row left over is one whose process died mid-way, and is closed as FAILED first.
pub(super) async fn start(client: &Client, trigger: Trigger) -> anyhow::Result<i64> {
    client
        .execute(
            "UPDATE prereg.consumed_job_run SET status = 'FAILED', finished_at = $1 WHERE status = 'RUNNING'",
            &[&now()],
        )
        .await
        .context("closing abandoned runs")?;
    Ok(client
        .query_one(
            "INSERT INTO prereg.consumed_job_run (started_at, status, triggered_by) VALUES ($1, 'RUNNING', $2) RETURNING id",
            &[&now(), &trigger.as_str()],
        )
        .await
        .context("recording the run")?
        .get(0))
}

/// Records the end of the run `report` describes, and its audit row under `app_id`.
pub(super) async fn finish(
    client: &Client,
    report: &RunReport,
    app_id: &str,
) -> anyhow::Result<()> {
    let status = report.status.map_or("FAILED", LabelSet::as_str);
    let count = |n: u64| i32::try_from(n).unwrap_or(i32::MAX);
    client
        .execute(
            r#"
            UPDATE prereg.consumed_job_run SET finished_at = $2, status = $3, selected = $4, moved = $5,
            not_found = $6, failed = $7 WHERE id = $1
            "#,
            &[
                &report.run_id,
                &now(),
                &status,
                &count(report.selected),
                &count(report.moved),
                &count(report.not_found),
                &count(report.failed),
            ],
        )
        .await
        .context("recording the run's end")?;
    let record = AuditRecord {
        at: now(),
        app_id,
        transaction_id: None,
        event: AuditEvent::ConsumedJobRun,
        error_code: None,
    };
    audit::write_with_outcome(client, &record, status, None).await?;
    Ok(())
}

/// The last `limit` runs, newest first.
pub(crate) async fn history(
    client: &impl GenericClient,
    limit: i64,
) -> Result<Vec<RunRow>, StorageError> {
    let rows = client
        .query(
            r#"
            SELECT id, started_at, finished_at, status, triggered_by, selected, moved, not_found, failed
            FROM prereg.consumed_job_run ORDER BY id DESC LIMIT $1
            "#,
            &[&limit],
        )
        .await?;
    Ok(rows
        .into_iter()
        .map(|row| RunRow {
            id: row.get(0),
            started_at: row.get::<_, NaiveDateTime>(1).and_utc(),
            finished_at: row.get::<_, Option<NaiveDateTime>>(2).map(|t| t.and_utc()),
            status: row.get(3),
            triggered_by: row.get(4),
            selected: row.get(5),
            moved: row.get(6),
            not_found: row.get(7),
            failed: row.get(8),
        })
        .collect())
}

/// One recorded run.
#[derive(Debug, Serialize)]
pub(crate) struct RunRow {
    pub(crate) id: i64,
    /// UTC (the columns hold UTC without a zone); JSON shows it with its `Z`.
    pub(crate) started_at: DateTime<Utc>,
    pub(crate) finished_at: Option<DateTime<Utc>>,
    pub(crate) status: String,
    pub(crate) triggered_by: String,
    pub(crate) selected: i32,
    pub(crate) moved: i32,
    pub(crate) not_found: i32,
    pub(crate) failed: i32,
}
