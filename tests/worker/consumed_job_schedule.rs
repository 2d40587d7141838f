//! The consumed-status job's schedule as an alert sees it: a running worker exports the time of
//! its next scheduled run (0 when the job is off), and a schedule that can never fire stops
//! the worker at start-up instead of leaving the job silently idle.

use std::time::Duration;

use chrono::Datelike;

use support::*;

const NEXT_RUN: &str = "prereg_sync_consumed_job_next_run_timestamp_seconds";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worker_exports_its_next_scheduled_run() {
    let mut env = TestEnv::with_vars(&[("PREREG_SYNC__CONSUMED_JOB__SCHEDULE", "0 0 0 1 1 *")]);
    env.spawn_app().await;
    // The next 1 January, midnight UTC.
    let now = chrono::Utc::now();
    let next_new_year = chrono::NaiveDate::from_ymd_opt(now.year() + 1, 1, 1)
        .unwrap()
        .and_hms_opt(0, 0, 0)
        .unwrap()
        .and_utc()
        .timestamp() as f64;
    env.wait_for_metric(NEXT_RUN, next_new_year, Duration::from_secs(10))
        .await;
    assert_eq!(env.metric(NEXT_RUN).await, next_new_year);
    env.stop_app().await;

    let mut off = TestEnv::with_vars(&[("PREREG_SYNC__CONSUMED_JOB__ENABLED", "false")]);
    off.spawn_app().await;
    assert_eq!(
        off.metric(NEXT_RUN).await,
        0.0,
        "a disabled job has no next run"
    );
    off.stop_app().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schedule_that_can_never_fire_stops_the_worker_at_start_up() {
    let env = TestEnv::new();
    let out = env
        .command()
        .arg("run")
        .env("PREREG_SYNC__CONSUMED_JOB__SCHEDULE", "0 0 0 31 2 *")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("`0 0 0 31 2 *` never fires"), "{stderr}");
}
