//! Runs the consumed-status job inside `prereg-sync run` on its cron schedule (UTC).

use chrono::Utc;
use tokio_util::sync::CancellationToken;

use super::consumed::{ConsumedJob, Trigger};

/// Waits for each time the schedule names and runs the job, until `shutdown`. A run in
/// progress when shutdown arrives stops between chunks (each chunk is its own transaction) and
/// records itself as FAILED; the next run carries on where it stopped.
pub async fn run_on_schedule(
    job: ConsumedJob,
    schedule: cron::Schedule,
    shutdown: CancellationToken,
) {
    loop {
        let Some(next) = schedule.upcoming(Utc).next() else {
            tracing::warn!("the consumed-job schedule names no future time; scheduler stopped");
            return;
        };
        let wait = (next - Utc::now()).to_std().unwrap_or_default();
        tracing::debug!(next = %next, "consumed-status job scheduled");
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
        match job.run(Trigger::Schedule, &shutdown).await {
            Ok(Some(report)) => tracing::info!(%report, "consumed-status job finished"),
            Ok(None) => {}
            Err(err) => tracing::error!(error = %format!("{err:#}"), "consumed-status job failed"),
        }
    }
}
