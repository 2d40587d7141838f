//! The consumed-status job: finishes what reverse sync starts by archiving every application
//! the registration processor reported as consumed (MOSIP's nightly batch job, without its
//! data-loss edges: a PRID with no application keeps its trail, and a failing PRID stays
//! pending instead of stopping the run).
//!
//! Per chunk of pending PRIDs, one transaction: rows are claimed with `FOR UPDATE SKIP LOCKED`,
//! the whole chunk is moved with one statement per table, and only if that fails is it retried
//! PRID by PRID under savepoints, so one bad PRID is isolated and every PRID is moved entirely
//! or not at all. A transaction-level advisory lock, held on a connection of its own for the
//! whole run, keeps two replicas from running the job at once.

use std::fmt;

use anyhow::Context;
use chrono::{NaiveDateTime, Utc};
use deadpool_postgres::{Client, GenericClient, Pool, Transaction};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::{
    progress::Progress,
    storage::{
        StorageError,
        audit::{self, AuditEvent, AuditRecord},
    },
    telemetry::Metrics,
};

/// Arbitrary constant naming "prereg-sync consumed job" among advisory locks.
const JOB_LOCK: i64 = 0x7072_6573_796e_6302;
const CONSUMED: &str = "Application consumed";
const NOT_FOUND: &str = "Application not found";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RunStatus {
    Success,
    Partial,
    Failed,
    NothingToDo,
}

impl RunStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Success => "SUCCESS",
            RunStatus::Partial => "PARTIAL",
            RunStatus::Failed => "FAILED",
            RunStatus::NothingToDo => "NOTHING_TO_DO",
        }
    }
}

/// What one run did.
#[derive(Debug, Default, Clone, Serialize)]
pub struct RunReport {
    pub run_id: i64,
    pub status: Option<RunStatus>,
    pub selected: u64,
    pub moved: u64,
    pub not_found: u64,
    pub failed: u64,
    /// Transaction IDs of the PRIDs that failed (never the PRIDs themselves).
    pub failed_transactions: Vec<String>,
}

impl fmt::Display for RunReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let status = self.status.map_or("SKIPPED", RunStatus::as_str);
        write!(
            f,
            "run={} status={status} selected={} moved={} not_found={} failed={}",
            self.run_id, self.selected, self.moved, self.not_found, self.failed
        )?;
        if !self.failed_transactions.is_empty() {
            write!(
                f,
                " failed_transactions={}",
                self.failed_transactions.join(",")
            )?;
        }
        Ok(())
    }
}

/// Who started a run (recorded in the history).
#[derive(Debug, Clone, Copy)]
pub enum Trigger {
    Schedule,
    Command,
}

pub struct ConsumedJob {
    pool: Pool,
    chunk_size: i64,
    app_id: String,
    metrics: Metrics,
    progress: Progress,
}

/// One pending PRID with the transaction that reported it (the only thing logs may show).
struct Pending {
    prereg_id: String,
    transaction_id: String,
}

impl ConsumedJob {
    pub fn new(pool: Pool, chunk_size: usize, app_id: String, metrics: Metrics) -> ConsumedJob {
        let chunk_size = i64::try_from(chunk_size).unwrap_or(i64::MAX);
        ConsumedJob {
            pool,
            chunk_size,
            app_id,
            metrics,
            progress: Progress::default(),
        }
    }

    /// Shows the PRIDs handled on `progress` (`consumed-job run` on a terminal).
    pub fn with_progress(mut self, progress: Progress) -> ConsumedJob {
        self.progress = progress;
        self
    }

    /// Runs the job once. `Ok(None)` when another replica holds the job lock. When `stop` is
    /// cancelled the run ends after the chunk in progress and is recorded as FAILED.
    pub async fn run(
        &self,
        trigger: Trigger,
        stop: &CancellationToken,
    ) -> anyhow::Result<Option<RunReport>> {
        let mut guard = self
            .pool
            .get()
            .await
            .context("connecting for the job lock")?;
        let lock = guard
            .transaction()
            .await
            .context("opening the job-lock transaction")?;
        let locked: bool = lock
            .query_one("SELECT pg_try_advisory_xact_lock($1)", &[&JOB_LOCK])
            .await
            .context("taking the job lock")?
            .get(0);
        if !locked {
            tracing::info!("consumed-status job already running on another replica; skipped");
            return Ok(None);
        }
        let mut client = self.pool.get().await.context("connecting for the job")?;
        // With the lock held no run is active: a RUNNING row is one that died mid-way.
        client
            .execute(
                "UPDATE prereg.consumed_job_run SET status = 'FAILED', finished_at = $1 WHERE status = 'RUNNING'",
                &[&now()],
            )
            .await
            .context("closing abandoned runs")?;
        let run_id: i64 = client
            .query_one(
                "INSERT INTO prereg.consumed_job_run (started_at, status, triggered_by) VALUES ($1, 'RUNNING', $2) RETURNING id",
                &[&now(), &trigger_name(trigger)],
            )
            .await
            .context("recording the run")?
            .get(0);
        let mut report = RunReport {
            run_id,
            ..RunReport::default()
        };
        if self.progress.is_shown() {
            // The pending rows, through the partial index the job's chunks use too.
            let pending: i64 = client
                .query_one(
                    "SELECT count(*) FROM prereg.processed_prereg_list \
                     WHERE status_comments = 'Processed by registration processor'",
                    &[],
                )
                .await
                .context("counting pending applications")?
                .get(0);
            self.progress.set_total(pending.unsigned_abs());
        }
        let outcome = self.move_all(&mut client, &mut report, stop).await;
        self.progress.finish();
        let status = match (&outcome, report.failed, report.selected) {
            (Err(_), _, _) => RunStatus::Failed,
            (Ok(()), 0, 0) => RunStatus::NothingToDo,
            (Ok(()), 0, _) => RunStatus::Success,
            (Ok(()), _, _) => RunStatus::Partial,
        };
        report.status = Some(status);
        self.finish(&client, &report).await?;
        self.metrics.consumed_job_finished(&report, status);
        lock.commit().await.context("releasing the job lock")?;
        outcome?;
        Ok(Some(report))
    }

    /// Moves chunk after chunk until no pending PRID is left (or only failed ones).
    async fn move_all(
        &self,
        client: &mut Client,
        report: &mut RunReport,
        stop: &CancellationToken,
    ) -> anyhow::Result<()> {
        // Keyset pagination: each chunk starts after the last PRID of the one before, so a chunk
        // never rescans rows already handled (their dead index entries stay until vacuum) and a
        // PRID that failed is not picked up again in this run.
        let mut after = String::new();
        loop {
            if stop.is_cancelled() {
                anyhow::bail!("stopped between chunks by a shutdown; the next run carries on");
            }
            let tx = client.transaction().await?;
            let chunk = claim_chunk(&tx, self.chunk_size, &after).await?;
            if chunk.is_empty() {
                tx.rollback().await?;
                return Ok(());
            }
            if let Some(last) = chunk.last() {
                after.clone_from(&last.prereg_id);
            }
            report.selected += chunk.len() as u64;
            let ids: Vec<&str> = chunk.iter().map(|p| p.prereg_id.as_str()).collect();
            let found = existing_applications(&tx, &ids).await?;
            let (present, absent): (Vec<&str>, Vec<&str>) =
                ids.iter().partition(|id| found.iter().any(|f| f == *id));
            mark(&tx, &absent, NOT_FOUND).await?;
            report.not_found += absent.len() as u64;
            tx.batch_execute("SAVEPOINT chunk").await?;
            match self.archive(&tx, &present).await {
                Ok(()) => report.moved += present.len() as u64,
                Err(err) => {
                    tracing::info!(error = %err, "chunk move failed; isolating PRIDs one by one");
                    tx.batch_execute("ROLLBACK TO SAVEPOINT chunk").await?;
                    for pending in chunk
                        .iter()
                        .filter(|p| present.contains(&p.prereg_id.as_str()))
                    {
                        tx.batch_execute("SAVEPOINT prid").await?;
                        match self.archive(&tx, &[pending.prereg_id.as_str()]).await {
                            Ok(()) => report.moved += 1,
                            Err(err) => {
                                tx.batch_execute("ROLLBACK TO SAVEPOINT prid").await?;
                                tracing::warn!(
                                    transaction_id = %pending.transaction_id,
                                    error = %err,
                                    "application not archived; left pending"
                                );
                                report.failed += 1;
                                report
                                    .failed_transactions
                                    .push(pending.transaction_id.clone());
                            }
                        }
                    }
                }
            }
            tx.commit().await.context("committing a chunk")?;
            self.progress.inc(chunk.len() as u64);
        }
    }

    /// Copies the applications of `ids` to the `_consumed` tables, deletes the originals and
    /// marks the processed rows consumed: all or nothing (the caller's savepoint).
    async fn archive(&self, tx: &Transaction<'_>, ids: &[&str]) -> Result<(), StorageError> {
        if ids.is_empty() {
            return Ok(());
        }
        let now = now();
        let app = self.app_id.as_str();
        exec(
            tx,
            "INSERT INTO prereg.applicant_demographic_consumed (prereg_id, demog_detail, demog_detail_hash, \
             encrypted_dtimes, status_code, lang_code, cr_appuser_id, cr_by, cr_dtimes, upd_by, upd_dtimes) \
             SELECT prereg_id, demog_detail, demog_detail_hash, encrypted_dtimes, 'Consumed', lang_code, \
             cr_appuser_id, cr_by, cr_dtimes, $2, $3 FROM prereg.applicant_demographic WHERE prereg_id = ANY($1)",
            &[&ids, &app, &now],
        )
        .await?;
        exec(
            tx,
            "INSERT INTO prereg.applicant_document_consumed (id, prereg_id, doc_name, doc_cat_code, doc_typ_code, \
             doc_file_format, doc_id, doc_hash, doc_ref_id, encrypted_dtimes, status_code, lang_code, cr_by, \
             cr_dtimes, upd_by, upd_dtimes) \
             SELECT id, prereg_id, doc_name, doc_cat_code, doc_typ_code, doc_file_format, doc_id, doc_hash, \
             doc_ref_id, encrypted_dtimes, status_code, lang_code, cr_by, cr_dtimes, upd_by, upd_dtimes \
             FROM prereg.applicant_document WHERE prereg_id = ANY($1)",
            &[&ids],
        )
        .await?;
        exec(
            tx,
            "INSERT INTO prereg.reg_appointment_consumed (id, regcntr_id, prereg_id, booking_dtimes, \
             appointment_date, slot_from_time, slot_to_time, lang_code, cr_by, cr_dtimes, upd_by, upd_dtimes) \
             SELECT id, regcntr_id, prereg_id, booking_dtimes, appointment_date, slot_from_time, slot_to_time, \
             lang_code, cr_by, cr_dtimes, upd_by, upd_dtimes FROM prereg.reg_appointment WHERE prereg_id = ANY($1)",
            &[&ids],
        )
        .await?;
        for delete in [
            "DELETE FROM prereg.applicant_document WHERE prereg_id = ANY($1)",
            "DELETE FROM prereg.reg_appointment WHERE prereg_id = ANY($1)",
            "DELETE FROM prereg.applicant_demographic WHERE prereg_id = ANY($1)",
            "DELETE FROM prereg.applications WHERE application_id = ANY($1)",
        ] {
            exec(tx, delete, &[&ids]).await?;
        }
        mark(tx, ids, CONSUMED).await
    }

    async fn finish(&self, client: &Client, report: &RunReport) -> anyhow::Result<()> {
        let status = report.status.map_or("FAILED", RunStatus::as_str);
        let count = |n: u64| i32::try_from(n).unwrap_or(i32::MAX);
        client
            .execute(
                "UPDATE prereg.consumed_job_run SET finished_at = $2, status = $3, selected = $4, moved = $5, \
                 not_found = $6, failed = $7 WHERE id = $1",
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
            app_id: &self.app_id,
            transaction_id: None,
            event: AuditEvent::ConsumedJobRun,
            error_code: None,
        };
        audit::write_with_outcome(client, &record, status).await?;
        Ok(())
    }
}

fn now() -> NaiveDateTime {
    Utc::now().naive_utc()
}

fn trigger_name(trigger: Trigger) -> &'static str {
    match trigger {
        Trigger::Schedule => "schedule",
        Trigger::Command => "command",
    }
}

/// Claims up to `limit` pending rows no other transaction holds, skipping those that already
/// failed in this run (they stay pending for the next run): only PRIDs after `after`.
async fn claim_chunk(
    tx: &Transaction<'_>,
    limit: i64,
    after: &str,
) -> Result<Vec<Pending>, StorageError> {
    let statement = tx
        .prepare_cached(
            // The status is a literal, not a parameter, so even a generic plan of this
            // prepared statement matches the partial index idx_prcpl_pending.
            "SELECT prereg_id, coalesce(prereg_trn_id, '') FROM prereg.processed_prereg_list \
             WHERE status_comments = 'Processed by registration processor' AND prereg_id > $1 \
             ORDER BY prereg_id LIMIT $2 FOR UPDATE SKIP LOCKED",
        )
        .await?;
    let rows = tx.query(&statement, &[&after, &limit]).await?;
    Ok(rows
        .into_iter()
        .map(|row| Pending {
            prereg_id: row.get(0),
            transaction_id: row.get(1),
        })
        .collect())
}

/// The PRIDs among `ids` whose application (demographic row) exists, locked for the move.
async fn existing_applications(
    tx: &Transaction<'_>,
    ids: &[&str],
) -> Result<Vec<String>, StorageError> {
    let statement = tx
        .prepare_cached(
            "SELECT prereg_id FROM prereg.applicant_demographic WHERE prereg_id = ANY($1) \
             ORDER BY prereg_id FOR UPDATE",
        )
        .await?;
    let rows = tx.query(&statement, &[&ids]).await?;
    Ok(rows.into_iter().map(|row| row.get(0)).collect())
}

async fn mark(tx: &Transaction<'_>, ids: &[&str], comment: &str) -> Result<(), StorageError> {
    if ids.is_empty() {
        return Ok(());
    }
    let statement = tx
        .prepare_cached(
            "UPDATE prereg.processed_prereg_list SET status_comments = $2, upd_dtimes = $3 WHERE prereg_id = ANY($1)",
        )
        .await?;
    tx.execute(&statement, &[&ids, &comment, &now()]).await?;
    Ok(())
}

async fn exec(
    tx: &Transaction<'_>,
    sql: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
) -> Result<(), StorageError> {
    let statement = tx.prepare_cached(sql).await?;
    tx.execute(&statement, params).await?;
    Ok(())
}

/// The last `limit` runs, newest first.
pub async fn history(client: &impl GenericClient, limit: i64) -> Result<Vec<RunRow>, StorageError> {
    let rows = client
        .query(
            "SELECT id, started_at, finished_at, status, triggered_by, selected, moved, not_found, failed \
             FROM prereg.consumed_job_run ORDER BY id DESC LIMIT $1",
            &[&limit],
        )
        .await?;
    Ok(rows
        .into_iter()
        .map(|row| RunRow {
            id: row.get(0),
            started_at: row.get(1),
            finished_at: row.get(2),
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
pub struct RunRow {
    pub id: i64,
    pub started_at: NaiveDateTime,
    pub finished_at: Option<NaiveDateTime>,
    pub status: String,
    pub triggered_by: String,
    pub selected: i32,
    pub moved: i32,
    pub not_found: i32,
    pub failed: i32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_never_lists_prids() {
        let report = RunReport {
            run_id: 7,
            status: Some(RunStatus::Partial),
            selected: 3,
            moved: 1,
            not_found: 1,
            failed: 1,
            failed_transactions: vec!["tx-9".into()],
        };
        assert_eq!(
            report.to_string(),
            "run=7 status=PARTIAL selected=3 moved=1 not_found=1 failed=1 failed_transactions=tx-9"
        );
    }
}
