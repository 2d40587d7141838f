//! Runs the consumed-status job and the end-of-day report inside `prereg-sync run` on their cron
//! schedules (UTC), until shutdown.
//!
//! At shutdown the scheduler stops waiting for the next time at once. A run in progress is not
//! waited for here: the consumed-status job stops itself between chunks when `shutdown` is
//! cancelled (each chunk is its own transaction) and records the run as FAILED; the caller
//! aborts what is still running when its grace period ends (a consumed-status chunk then rolls
//! back, and the next run closes the run as FAILED) and aborts a report in progress.

use std::future::Future;

use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;
use tokio_util::sync::CancellationToken;

use super::{
    consumed::{ConsumedJob, Trigger},
    report,
};

/// Waits for each time `schedule` names and runs `run_once`, until `shutdown`. `task` names it
/// in log lines; `scheduled` is told each time waited for (`None` when there is none left).
async fn on_schedule<F, Fut>(
    task: &'static str,
    schedule: cron::Schedule,
    shutdown: CancellationToken,
    scheduled: impl Fn(Option<DateTime<Utc>>),
    mut run_once: F,
) where
    F: FnMut() -> Fut,
    Fut: Future<Output = ()>,
{
    loop {
        let next = schedule.upcoming(Utc).next();
        scheduled(next);
        let Some(next) = next else {
            tracing::warn!(
                job = task,
                "the schedule names no future time; scheduler stopped"
            );
            return;
        };
        let wait = (next - Utc::now()).to_std().unwrap_or_default();
        tracing::debug!(job = task, next = %next, "scheduled");
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
        run_once().await;
    }
}

/// The consumed-status job on `schedule`, its next time exported as a metric (so an alert can
/// tell a job that is scheduled but never succeeds from one that is off). A run in progress
/// when `shutdown` is cancelled stops between chunks and records itself as FAILED; the next run
/// carries on.
pub(crate) async fn consumed_job_on_schedule(
    job: ConsumedJob,
    schedule: cron::Schedule,
    shutdown: CancellationToken,
) {
    let stop = shutdown.clone();
    let scheduled = |next| job.scheduled_for(next);
    on_schedule(
        "consumed-status job",
        schedule,
        shutdown,
        scheduled,
        || async {
            match job.run(Trigger::Schedule, &stop).await {
                Ok(Some(report)) => tracing::info!(%report, "consumed-status job finished"),
                Ok(None) => {}
                Err(err) => {
                    tracing::error!(error = %format!("{err:#}"), "consumed-status job failed")
                }
            }
        },
    )
    .await
}

/// The end-of-day report of the day before on `schedule`, logged as one line.
pub(crate) async fn report_on_schedule(
    pool: Pool,
    schedule: cron::Schedule,
    shutdown: CancellationToken,
) {
    on_schedule(
        "end-of-day report",
        schedule,
        shutdown,
        |_| {},
        || async {
            match report::report_yesterday(&pool).await {
                Ok(day) => tracing::info!(report = %day, "end-of-day report"),
                Err(err) => {
                    tracing::error!(error = %format!("{err:#}"), "end-of-day report failed")
                }
            }
        },
    )
    .await
}
