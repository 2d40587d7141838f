//! The consumed-status job, on real PostgreSQL, through the real
//! binary (`prereg-sync consumed-job run`).

use std::{process::Stdio, time::Duration};

use support::*;

/// Applications with a demographic row, two documents, an `applications` row and, for every
/// other one, an appointment.
async fn seed_full_applications(env: &TestEnv, ids: &[String]) {
    let db = env.db().await;
    db.execute(
        "INSERT INTO prereg.applicant_demographic (prereg_id, demog_detail, demog_detail_hash, encrypted_dtimes, \
         status_code, lang_code, cr_appuser_id, cr_by, cr_dtimes) \
         SELECT id, convert_to(id, 'UTF8'), md5(id), '2026-01-01', 'Booked', 'eng', 'user-' || id, 'prereg', '2026-01-01' \
         FROM unnest($1::varchar[]) id",
        &[&ids],
    )
    .await
    .unwrap();
    db.execute(
        "INSERT INTO prereg.applicant_document (id, prereg_id, doc_name, doc_cat_code, doc_typ_code, doc_file_format, \
         doc_id, doc_hash, encrypted_dtimes, status_code, lang_code, cr_by, cr_dtimes) \
         SELECT id || '-' || n, id, 'doc' || n, 'POA', 'CRN', 'pdf', 'd' || n, md5(id || n), '2026-01-01', 'Pending', 'eng', 'prereg', '2026-01-01' \
         FROM unnest($1::varchar[]) id, generate_series(1, 2) n",
        &[&ids],
    )
    .await
    .unwrap();
    db.execute(
        "INSERT INTO prereg.reg_appointment (id, regcntr_id, prereg_id, booking_dtimes, appointment_date, lang_code, cr_by, cr_dtimes) \
         SELECT 'apt-' || id, '10001', id, '2026-01-02', '2026-02-01', 'eng', 'prereg', '2026-01-02' \
         FROM unnest($1::varchar[]) WITH ORDINALITY AS t(id, i) WHERE i % 2 = 0",
        &[&ids],
    )
    .await
    .unwrap();
    db.execute(
        "INSERT INTO prereg.applications (application_id, booking_type, booking_status_code, cr_by, cr_dtimes) \
         SELECT id, 'NEW_PREREGISTRATION', 'Booked', 'prereg', '2026-01-01' FROM unnest($1::varchar[]) id",
        &[&ids],
    )
    .await
    .unwrap();
}

/// Reports PRIDs consumed the way the worker does (pending rows in processed_prereg_list).
async fn report_consumed(env: &TestEnv, ids: &[String], transaction_id: &str) {
    env.db()
        .await
        .execute(
            "INSERT INTO prereg.processed_prereg_list (prereg_id, first_received_dtimes, status_code, status_comments, \
             prereg_trn_id, lang_code, cr_by, cr_dtimes) \
             SELECT id, '2026-03-01', 'Consumed', 'Processed by registration processor', $2, 'eng', 'prereg-sync', '2026-03-01' \
             FROM unnest($1::varchar[]) id",
            &[&ids, &transaction_id],
        )
        .await
        .unwrap();
}

async fn comments(env: &TestEnv, id: &str) -> String {
    env.db()
        .await
        .query_one(
            "SELECT status_comments FROM prereg.processed_prereg_list WHERE prereg_id = $1",
            &[&id],
        )
        .await
        .unwrap()
        .get(0)
}

async fn in_table(env: &TestEnv, table: &str, ids: &[String]) -> i64 {
    env.db()
        .await
        .query_one(
            &format!("SELECT count(*) FROM prereg.{table} WHERE prereg_id = ANY($1)"),
            &[&ids],
        )
        .await
        .unwrap()
        .get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_run_moves_exactly_the_reported_applications() {
    let env = TestEnv::new();
    env.migrate().await;
    let ids = prids(12);
    let (reported, unreported) = ids.split_at(8);
    let missing = prids(1);
    seed_full_applications(&env, &ids).await;
    report_consumed(&env, reported, "tx-job-1").await;
    report_consumed(&env, &missing, "tx-job-2").await;
    let before: String = env
        .db()
        .await
        .query_one(
            "SELECT string_agg(d::text, '|' ORDER BY prereg_id) FROM prereg.applicant_demographic d WHERE prereg_id = ANY($1)",
            &[&reported.to_vec()],
        )
        .await
        .unwrap()
        .get(0);

    let out = env.cli_ok(&["consumed-job", "run"]);
    assert!(
        out.contains("status=SUCCESS selected=9 moved=8 not_found=1 failed=0"),
        "{out}"
    );
    let reported = reported.to_vec();
    let unreported = unreported.to_vec();
    assert_moved(&env, &reported, &before).await;
    // Nothing else touched.
    assert_eq!(
        in_table(&env, "applicant_demographic", &unreported).await,
        4
    );
    assert_eq!(in_table(&env, "applicant_document", &unreported).await, 8);
    assert_eq!(
        in_table(&env, "applicant_demographic_consumed", &unreported).await,
        0
    );
    // A reported PRID without an application keeps its row, marked.
    assert_eq!(comments(&env, &missing[0]).await, "Application not found");
    assert_second_run_and_history(&env).await;
}

/// The eight `reported` applications moved by the first run: copied to the consumed tables
/// (the demographic rows as they were, `before`, but for the columns the move stamps), the
/// originals deleted and the processed rows marked.
async fn assert_moved(env: &TestEnv, reported: &[String], before: &str) {
    assert_eq!(
        in_table(env, "applicant_demographic_consumed", reported).await,
        8
    );
    assert_eq!(
        in_table(env, "applicant_document_consumed", reported).await,
        16
    );
    assert_eq!(in_table(env, "reg_appointment_consumed", reported).await, 4);
    for table in [
        "applicant_demographic",
        "applicant_document",
        "reg_appointment",
    ] {
        assert_eq!(
            in_table(env, table, reported).await,
            0,
            "{table} originals deleted"
        );
    }
    let db = env.db().await;
    let apps: i64 = db
        .query_one(
            "SELECT count(*) FROM prereg.applications WHERE application_id = ANY($1)",
            &[&reported],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(apps, 0);
    // Column values: demographic copied but for status_code, upd_by, upd_dtimes.
    let after: String = db
        .query_one(
            "SELECT string_agg((prereg_id, demog_detail, demog_detail_hash, encrypted_dtimes, 'Booked'::varchar, lang_code, \
             cr_appuser_id, cr_by, cr_dtimes, NULL::varchar, NULL::timestamp)::text, '|' ORDER BY prereg_id) \
             FROM prereg.applicant_demographic_consumed",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(after, before, "every other column copied as it was");
    let stamped: i64 = db
        .query_one(
            "SELECT count(*) FROM prereg.applicant_demographic_consumed WHERE status_code = 'Consumed' \
             AND upd_by = 'prereg' AND upd_dtimes > now() AT TIME ZONE 'UTC' - interval '1 minute'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(stamped, 8);
    let processed: i64 = db
        .query_one(
            "SELECT count(*) FROM prereg.processed_prereg_list WHERE prereg_id = ANY($1) \
             AND status_comments = 'Application consumed' AND upd_dtimes IS NOT NULL AND upd_by IS NULL",
            &[&reported],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(processed, 8);
}

/// A second run finds nothing to do; the history lists both runs, newest first, and each is
/// audited.
async fn assert_second_run_and_history(env: &TestEnv) {
    let again = env.cli_ok(&["consumed-job", "run"]);
    assert!(again.contains("status=NOTHING_TO_DO selected=0"), "{again}");
    let history = env.cli_ok(&["consumed-job", "history", "--json"]);
    let runs: Vec<serde_json::Value> = serde_json::from_str(&history).unwrap();
    assert_eq!(runs.len(), 2);
    assert_eq!(runs[0]["status"], "NOTHING_TO_DO");
    assert_eq!(runs[1]["status"], "SUCCESS");
    assert_eq!(runs[1]["moved"], 8);
    assert_eq!(runs[1]["not_found"], 1);
    for time in [&runs[1]["started_at"], &runs[1]["finished_at"]] {
        let time = time.as_str().unwrap();
        assert!(time.ends_with('Z'), "a UTC time says so: {time}");
    }
    assert_eq!(
        env.count("SELECT count(*) FROM prereg.sync_audit WHERE event = 'CONSUMED_JOB_RUN'")
            .await,
        2
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_prid_is_reported_and_left_pending() {
    let env = TestEnv::new();
    env.migrate().await;
    let ids = prids(6);
    seed_full_applications(&env, &ids).await;
    report_consumed(&env, &ids[..5], "tx-good").await;
    report_consumed(&env, &ids[5..], "tx-bad").await;
    // A conflicting row already in the consumed table: the move of ids[5] must fail.
    env.db()
        .await
        .execute(
            "INSERT INTO prereg.applicant_demographic_consumed SELECT * FROM prereg.applicant_demographic WHERE prereg_id = $1",
            &[&ids[5]],
        )
        .await
        .unwrap();
    let out = env.cli(&["consumed-job", "run"]);
    assert_eq!(out.status.code(), Some(3), "a PARTIAL run exits 3");
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        stdout.contains(
            "status=PARTIAL selected=6 moved=5 not_found=0 failed=1 failed_transactions=tx-bad"
        ),
        "{stdout}"
    );
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.contains("tx-bad"), "reported by transaction ID");
    for id in &ids {
        assert!(
            !stdout.contains(id.as_str()) && !stderr.contains(id.as_str()),
            "never by PRID"
        );
    }
    assert_eq!(
        comments(&env, &ids[5]).await,
        "Processed by registration processor",
        "left pending"
    );
    assert_eq!(
        in_table(&env, "applicant_demographic", &ids[5..]).await,
        1,
        "untouched"
    );
    assert_eq!(
        in_table(&env, "applicant_document", &ids[5..]).await,
        2,
        "untouched"
    );
    assert_eq!(
        in_table(&env, "applicant_demographic_consumed", &ids[..5]).await,
        5
    );
}

/// Starts `consumed-job run` as a process.
fn start_job(env: &TestEnv, extra: &[(&str, &str)]) -> std::process::Child {
    env.command()
        .args(["consumed-job", "run"])
        .envs(extra.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

async fn assert_all_moved_once(env: &TestEnv, ids: &[String]) {
    let ids = ids.to_vec();
    assert_eq!(
        in_table(env, "applicant_demographic_consumed", &ids).await,
        ids.len() as i64
    );
    assert_eq!(
        in_table(env, "applicant_document_consumed", &ids).await,
        2 * ids.len() as i64
    );
    assert_eq!(
        in_table(env, "reg_appointment_consumed", &ids).await,
        (ids.len() / 2) as i64
    );
    assert_eq!(in_table(env, "applicant_demographic", &ids).await, 0);
    assert_eq!(in_table(env, "applicant_document", &ids).await, 0);
    assert_eq!(
        env.count("SELECT count(*) FROM prereg.processed_prereg_list WHERE status_comments = 'Application consumed'").await,
        ids.len() as i64
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_runs_started_together_move_every_prid_once() {
    let env = TestEnv::new();
    env.migrate().await;
    let ids = prids(3000);
    seed_full_applications(&env, &ids).await;
    report_consumed(&env, &ids, "tx-many").await;
    let small_chunks = [("PREREG_SYNC__CONSUMED_JOB__CHUNK_SIZE", "50")];
    let first = start_job(&env, &small_chunks);
    let second = start_job(&env, &small_chunks);
    let outputs: Vec<String> = [first, second]
        .into_iter()
        .map(|child| {
            let out = child.wait_with_output().unwrap();
            assert!(out.status.success());
            String::from_utf8(out.stdout).unwrap()
        })
        .collect();
    let moved: u64 = outputs
        .iter()
        .filter_map(|o| {
            o.split_whitespace()
                .find_map(|w| w.strip_prefix("moved="))
                .map(|n| n.parse::<u64>().unwrap())
        })
        .sum();
    assert_eq!(
        moved, 3000,
        "moved exactly once between the two: {outputs:?}"
    );
    assert_all_moved_once(&env, &ids).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_killed_mid_way_then_rerun_ends_like_an_uninterrupted_one() {
    let env = TestEnv::new();
    env.migrate().await;
    let ids = prids(20_000);
    seed_full_applications(&env, &ids).await;
    report_consumed(&env, &ids, "tx-kill").await;
    let mut job = start_job(&env, &[("PREREG_SYNC__CONSUMED_JOB__CHUNK_SIZE", "10")]);
    wait_until(
        Duration::from_secs(60),
        Duration::from_millis(20),
        "the job made no progress",
        async || {
            env.count("SELECT count(*) FROM prereg.applicant_demographic_consumed")
                .await
                > 200
        },
    )
    .await;
    job.kill().unwrap(); // SIGKILL
    job.wait().unwrap();
    // One snapshot for both counts: the killed client's last COMMIT may still be completing
    // on the server, and chunks are atomic, so moved PRIDs are fully moved, the rest untouched.
    let row = env
        .db()
        .await
        .query_one(
            "SELECT (SELECT count(*) FROM prereg.applicant_demographic_consumed), \
                    (SELECT count(*) FROM prereg.applicant_document_consumed), \
                    (SELECT count(*) FROM prereg.applicant_document)",
            &[],
        )
        .await
        .unwrap();
    let (partial, documents, left): (i64, i64, i64) = (row.get(0), row.get(1), row.get(2));
    assert!(partial < 20_000, "killed mid-run ({partial} moved)");
    assert_eq!(documents, 2 * partial, "no half-moved application");
    assert_eq!(left + documents, 40_000, "no document lost or copied twice");

    let out = env.cli_ok(&["consumed-job", "run"]);
    assert!(out.contains("status=SUCCESS"), "{out}");
    assert_all_moved_once(&env, &ids).await;
    let statuses = env.cli_ok(&["consumed-job", "history"]);
    assert!(
        statuses.contains("FAILED"),
        "the killed run is recorded as failed:\n{statuses}"
    );
}
