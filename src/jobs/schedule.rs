//! Runs jobs inside `prereg-sync run` on their cron schedules (UTC): the consumed-status job and
//! the end-of-day report.

use std::future::Future;

use chrono::Utc;
use deadpool_postgres::Pool;
use tokio_util::sync::CancellationToken;

use super::{
    consumed::{ConsumedJob, Trigger},
    report,
};

/// Waits for each time `schedule` names and runs `job`, until `shutdown`. A run in progress
/// when shutdown arrives is the job's to stop (the caller bounds how long it waits).
async fn on_schedule<F, Fut>(
    name: &'static str,
    schedule: cron::Schedule,
    shutdown: CancellationToken,
    mut job: F,
) where
    F: FnMut() -> Fut,
    Fut: Future<Output = ()>,
{
    loop {
        let Some(next) = schedule.upcoming(Utc).next() else {
            tracing::warn!(
                job = name,
                "the schedule names no future time; scheduler stopped"
            );
            return;
        };
        let wait = (next - Utc::now()).to_std().unwrap_or_default();
        tracing::debug!(job = name, next = %next, "scheduled");
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
        job().await;
    }
}

/// The consumed-status job. A run in progress when shutdown arrives stops between chunks (each
/// chunk is its own transaction) and records itself as FAILED; the next run carries on.
pub async fn run_on_schedule(
    job: ConsumedJob,
    schedule: cron::Schedule,
    shutdown: CancellationToken,
) {
    let stop = shutdown.clone();
    on_schedule("consumed-status job", schedule, shutdown, || async {
        match job.run(Trigger::Schedule, &stop).await {
            Ok(Some(report)) => tracing::info!(%report, "consumed-status job finished"),
            Ok(None) => {}
            Err(err) => tracing::error!(error = %format!("{err:#}"), "consumed-status job failed"),
        }
    })
    .await
}

/// The end-of-day report of the day before, logged as one line.
pub async fn report_on_schedule(pool: Pool, schedule: cron::Schedule, shutdown: CancellationToken) {
    on_schedule("end-of-day report", schedule, shutdown, || async {
        match report::run_scheduled(&pool).await {
            Ok(day) => tracing::info!(report = %day, "end-of-day report"),
            Err(err) => tracing::error!(error = %format!("{err:#}"), "end-of-day report failed"),
        }
    })
    .await
}
