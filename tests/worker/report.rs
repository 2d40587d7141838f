//! `prereg-sync report` on a fixture day whose figures are known, with rows on both sides of
//! its midnights, and no PRID in the output although the transaction records hold some.

use serde_json::json;

use support::TestEnv;

/// Audit rows, transaction records and job runs of 2026-11-20, plus neighbours on the 19th
/// (one millisecond before midnight) and the 21st (at midnight).
const FIXTURE: &str = "
INSERT INTO prereg.sync_audit (event_time, app_id, transaction_id, event, outcome, error_code) VALUES
  ('2026-11-19 23:59:59.999', 'rp', 'tx-0', 'REJECTED', 'FAILURE', 'PRG_PAM_CORE_001'),
  ('2026-11-20 00:00:00.000', 'rp', 'tx-1', 'STORED', 'SUCCESS', NULL),
  ('2026-11-20 08:00:00', 'rp', 'tx-2', 'STORED', 'SUCCESS', NULL),
  ('2026-11-20 08:00:01', 'rp', 'tx-2', 'REPLY_UNROUTABLE', 'WARNING', NULL),
  ('2026-11-20 09:00:00', 'rp', 'tx-3', 'STORED', 'SUCCESS', NULL),
  ('2026-11-20 09:06:00', 'rp', 'tx-3', 'DEAD_LETTERED', 'FAILURE', 'PRS_REPLY_UNDELIVERED'),
  ('2026-11-20 10:00:00', 'rp', 'tx-1', 'DUPLICATE', 'SUCCESS', NULL),
  ('2026-11-20 11:00:00', 'rp', 'tx-1', 'DUPLICATE', 'SUCCESS', NULL),
  ('2026-11-20 12:00:00', 'rp', 'tx-5', 'REJECTED', 'FAILURE', 'PRG_PAM_CORE_002'),
  ('2026-11-20 12:00:01', 'rp', 'tx-6', 'REJECTED', 'FAILURE', 'PRG_PAM_CORE_002'),
  ('2026-11-20 12:00:02', 'rp', 'tx-7', 'REJECTED', 'FAILURE', 'PRG_DATA_SYNC_011'),
  ('2026-11-20 13:00:00', 'rp', 'tx-8', 'DEAD_LETTERED', 'FAILURE', 'PRG_DATA_SYNC_012'),
  ('2026-11-20 14:00:00', 'operator', 'tx-8', 'REPLAYED', 'SUCCESS', NULL),
  ('2026-11-20 14:00:00', 'operator', 'tx-7', 'REPLAYED', 'SUCCESS', NULL),
  ('2026-11-20 14:00:01', 'operator', NULL, 'DLQ_REPLAY_RUN', 'SUCCESS', NULL),
  ('2026-11-20 23:59:59.999', 'prereg', NULL, 'CONSUMED_JOB_RUN', 'SUCCESS', NULL),
  ('2026-11-21 00:00:00.000', 'rp', 'tx-4', 'STORED', 'SUCCESS', NULL);
INSERT INTO prereg.sync_transaction (transaction_id, app_id, body_sha256, received_at, request_time, stored_count, reply_body)
SELECT tx, 'rp', repeat('0', 64), '2026-11-20 08:00', '2026-11-20 08:00', n,
       convert_to('{\"preRegistrationIds\":[\"75124301328620\"]}', 'UTF8')
FROM (VALUES ('tx-1', 3), ('tx-2', 2), ('tx-3', 1), ('tx-4', 4)) AS t(tx, n);
INSERT INTO prereg.consumed_job_run (started_at, finished_at, status, triggered_by, selected, moved, not_found, failed) VALUES
  ('2026-11-20 00:00:01', '2026-11-20 00:00:09', 'SUCCESS', 'schedule', 5, 5, 0, 0),
  ('2026-11-20 15:00:00', '2026-11-20 15:00:02', 'PARTIAL', 'command', 3, 2, 0, 1),
  ('2026-11-21 00:00:01', '2026-11-21 00:00:02', 'NOTHING_TO_DO', 'schedule', 0, 0, 0, 0);
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fixture_day_reports_its_known_figures() {
    let env = TestEnv::new();
    env.migrate().await;
    env.db().await.batch_execute(FIXTURE).await.unwrap();

    let out = env.cli_ok(&["report", "--date", "2026-11-20", "--json"]);
    let days: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        days,
        json!([{
            "date": "2026-11-20",
            // 3 stored + 2 duplicates + 3 rejected + 2 dead-lettered, less tx-3 counted twice.
            "requests_received": 9,
            "stored": 3,
            "duplicates": 2,
            "rejected": {"PRG_DATA_SYNC_011": 1, "PRG_PAM_CORE_002": 2},
            "dead_lettered": {"PRG_DATA_SYNC_012": 1, "PRS_REPLY_UNDELIVERED": 1},
            // Every rejection and every dead-lettering put a copy into the DLQ.
            "to_dead_letter_queue": 5,
            "prids_stored": 6,
            "replays": 2,
            "consumed_job_runs": {"PARTIAL": 1, "SUCCESS": 1},
            "rows_moved": 7,
        }])
    );
    assert!(!out.contains("75124301328620"), "never a PRID");

    let text = env.cli_ok(&[
        "report",
        "--since",
        "2026-11-19T00:00:00Z",
        "--until",
        "2026-11-22T00:00:00Z",
    ]);
    assert_eq!(
        text.lines().collect::<Vec<_>>(),
        [
            "2026-11-19: requests=1 stored=0 duplicates=0 rejected=1 (PRG_PAM_CORE_001=1) dead_lettered=0 to_dlq=1 prids_stored=0 replays=0 consumed_job_runs=0 rows_moved=0",
            "2026-11-20: requests=9 stored=3 duplicates=2 rejected=3 (PRG_DATA_SYNC_011=1 PRG_PAM_CORE_002=2) dead_lettered=2 (PRG_DATA_SYNC_012=1 PRS_REPLY_UNDELIVERED=1) to_dlq=5 prids_stored=6 replays=2 consumed_job_runs=2 (PARTIAL=1 SUCCESS=1) rows_moved=7",
            "2026-11-21: requests=1 stored=1 duplicates=0 rejected=0 dead_lettered=0 to_dlq=0 prids_stored=4 replays=0 consumed_job_runs=1 (NOTHING_TO_DO=1) rows_moved=0",
        ]
    );
}

/// `report.schedule` runs the report inside `run` and records each run in the audit trail.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scheduled_report_is_recorded_with_the_job_runs() {
    let mut env = TestEnv::with_vars(&[("PREREG_SYNC__REPORT__SCHEDULE", "* * * * * *")]);
    env.spawn_app().await;
    env.wait_for_count(
        "SELECT count(*) FROM prereg.sync_audit WHERE event = 'DAILY_REPORT' AND outcome = 'SUCCESS'",
        1,
        std::time::Duration::from_secs(10),
    )
    .await;
    env.stop_app().await;
}
