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

mod archive;
mod history;

use std::fmt;

use anyhow::Context;
use deadpool_postgres::{Client, Pool, Transaction};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use self::archive::{Cursor, Pending, archive, claim_chunk, existing_applications, mark_not_found};
pub(crate) use self::history::history;
use crate::{
    progress::Progress,
    telemetry::{
        Metrics,
        labels::{JobPridResult, JobRunStatus, LabelSet},
    },
};

/// Arbitrary constant naming "prereg-sync consumed job" among advisory locks.
const CONSUMED_JOB_LOCK: i64 = 0x7072_6573_796e_6302;

/// What one run did.
#[derive(Debug, Default, Clone, Serialize)]
pub(crate) struct RunReport {
    pub(crate) run_id: i64,
    pub(crate) status: Option<JobRunStatus>,
    pub(crate) selected: u64,
    pub(crate) moved: u64,
    pub(crate) not_found: u64,
    pub(crate) failed: u64,
    /// Transaction IDs of the PRIDs that failed (never the PRIDs themselves).
    pub(crate) failed_transactions: Vec<String>,
}

impl RunReport {
    /// The PRIDs handled, by result: what the run adds to `consumed_job_rows_total`.
    fn prid_counts(&self) -> [(JobPridResult, u64); 3] {
        [
            (JobPridResult::Moved, self.moved),
            (JobPridResult::NotFound, self.not_found),
            (JobPridResult::Failed, self.failed),
        ]
    }
}

impl fmt::Display for RunReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let status = self.status.map_or("SKIPPED", LabelSet::as_str);
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
pub(crate) enum Trigger {
    Schedule,
    Command,
}

impl Trigger {
    fn as_str(self) -> &'static str {
        match self {
            Trigger::Schedule => "schedule",
            Trigger::Command => "command",
        }
    }
}

pub(crate) struct ConsumedJob {
    pool: Pool,
    chunk_size: i64,
    app_id: String,
    metrics: Metrics,
    progress: Progress,
}

impl ConsumedJob {
    pub(crate) fn new(
        pool: Pool,
        chunk_size: usize,
        app_id: String,
        metrics: Metrics,
    ) -> ConsumedJob {
        let chunk_size = i64::try_from(chunk_size).unwrap_or(i64::MAX);
        ConsumedJob {
            pool,
            chunk_size,
            app_id,
            metrics,
            progress: Progress::default(),
        }
    }

    /// Its scheduler waits for `next` (`None`: the schedule names no time to come).
    pub(crate) fn scheduled_for(&self, next: Option<chrono::DateTime<chrono::Utc>>) {
        self.metrics.consumed_job_scheduled(next);
    }

    /// Shows the PRIDs handled on `progress` (`consumed-job run` on a terminal).
    pub(crate) fn with_progress(mut self, progress: Progress) -> ConsumedJob {
        self.progress = progress;
        self
    }

    /// Runs the job once. `Ok(None)` when another replica holds the job lock. When `stop` is
    /// cancelled the run ends after the chunk in progress and is recorded as FAILED.
    pub(crate) async fn run(
        &self,
        trigger: Trigger,
        stop: &CancellationToken,
    ) -> anyhow::Result<Option<RunReport>> {
        let mut lock_client = self
            .pool
            .get()
            .await
            .context("connecting for the job lock")?;
        let Some(lock) = take_lock(&mut lock_client).await? else {
            tracing::info!("consumed-status job already running on another replica; skipped");
            return Ok(None);
        };
        let mut client = self.pool.get().await.context("connecting for the job")?;
        let mut report = RunReport {
            run_id: history::start(&client, trigger).await?,
            ..RunReport::default()
        };
        self.show_pending(&client).await?;
        let outcome = self.move_all(&mut client, &mut report, stop).await;
        self.progress.finish();
        let status = match (&outcome, report.failed, report.selected) {
            (Err(_), _, _) => JobRunStatus::Failed,
            (Ok(()), 0, 0) => JobRunStatus::NothingToDo,
            (Ok(()), 0, _) => JobRunStatus::Success,
            (Ok(()), _, _) => JobRunStatus::Partial,
        };
        report.status = Some(status);
        history::finish(&client, &report, &self.app_id).await?;
        self.metrics
            .consumed_job_finished(status, &report.prid_counts(), &report);
        lock.commit().await.context("releasing the job lock")?;
        outcome?;
        Ok(Some(report))
    }

    /// Sizes the progress bar, when one is shown, by the pending rows.
    async fn show_pending(&self, client: &Client) -> anyhow::Result<()> {
        if !self.progress.is_shown() {
            return Ok(());
        }
        // The pending rows, through the partial index the job's chunks use too.
        let pending: i64 = client
            .query_one(
                r#"
                SELECT count(*) FROM prereg.processed_prereg_list
                WHERE status_comments = 'Processed by registration processor'
                "#,
                &[],
            )
            .await
            .context("counting pending applications")?
            .get(0);
        self.progress.set_total(pending.unsigned_abs());
        Ok(())
    }

    /// Moves chunk after chunk until no pending PRID is left (or only failed ones).
    async fn move_all(
        &self,
        client: &mut Client,
        report: &mut RunReport,
        stop: &CancellationToken,
    ) -> anyhow::Result<()> {
        // Keyset pagination: each chunk starts after the last row of the one before, so a PRID
        // that failed is not picked up again in this run.
        let mut after = Cursor::start();
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
                after = Cursor::after(last);
            }
            self.move_chunk(&tx, &chunk, report).await?;
            tx.commit().await.context("committing a chunk")?;
            self.progress.inc(chunk.len() as u64);
        }
    }

    /// Moves one claimed chunk in one statement per table; if that fails, PRID by PRID under
    /// savepoints, so one bad PRID is isolated and left pending.
    async fn move_chunk(
        &self,
        tx: &Transaction<'_>,
        chunk: &[Pending],
        report: &mut RunReport,
    ) -> anyhow::Result<()> {
        report.selected += chunk.len() as u64;
        let ids: Vec<&str> = chunk.iter().map(|p| p.prereg_id.as_str()).collect();
        let found = existing_applications(tx, &ids).await?;
        let (present, absent): (Vec<&str>, Vec<&str>) =
            ids.iter().partition(|id| found.iter().any(|f| f == *id));
        mark_not_found(tx, &absent).await?;
        report.not_found += absent.len() as u64;
        tx.batch_execute("SAVEPOINT chunk").await?;
        let Err(err) = archive(tx, &present, &self.app_id).await else {
            report.moved += present.len() as u64;
            return Ok(());
        };
        tracing::info!(error = %err, "chunk move failed; isolating PRIDs one by one");
        tx.batch_execute("ROLLBACK TO SAVEPOINT chunk").await?;
        for pending in chunk
            .iter()
            .filter(|p| present.contains(&p.prereg_id.as_str()))
        {
            tx.batch_execute("SAVEPOINT prid").await?;
            match archive(tx, &[pending.prereg_id.as_str()], &self.app_id).await {
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
        Ok(())
    }
}

/// Takes the job lock, a transaction-level advisory lock held until the returned transaction
/// ends; `None` when another replica holds it.
async fn take_lock(client: &mut Client) -> anyhow::Result<Option<Transaction<'_>>> {
    let lock = client
        .transaction()
        .await
        .context("opening the job-lock transaction")?;
    let locked: bool = lock
        .query_one(
            "SELECT pg_try_advisory_xact_lock($1)",
            &[&CONSUMED_JOB_LOCK],
        )
        .await
        .context("taking the job lock")?
        .get(0);
    Ok(locked.then_some(lock))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_never_lists_prids() {
        let report = RunReport {
            run_id: 7,
            status: Some(JobRunStatus::Partial),
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
        assert_eq!(
            serde_json::to_value(&report).unwrap()["status"],
            "PARTIAL",
            "the JSON status is the label value"
        );
    }
}
