//! Operator actions are traceable: each `dlq replay` and `dlq delete` run leaves an audit row
//! naming the operator (`--operator`, else the OS user), with the filter, the limit and the
//! counts as JSON; never a PRID.

use support::*;

use crate::operations::dead_letters_of_a_stopped_worker;

/// `(app_id, outcome, detail)` of the run rows of `event`.
async fn run_rows(env: &TestEnv, event: &str) -> Vec<(String, String, serde_json::Value)> {
    env.db()
        .await
        .query(
            "SELECT app_id, outcome, detail FROM prereg.sync_audit WHERE event = $1",
            &[&event],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1), row.get(2)))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_and_delete_runs_name_the_operator_the_filter_and_the_counts() {
    let mut env = TestEnv::new();
    let (_, unknown) = dead_letters_of_a_stopped_worker(&mut env, 3, 2).await;

    env.cli_ok(&[
        "dlq",
        "replay",
        "--error-code",
        "PRG_DATA_SYNC_011",
        "--limit",
        "2",
        "--operator",
        "alice",
    ]);
    let out = env
        .command()
        .args(["dlq", "delete", "--error-code", "PRG_PAM_CORE_002", "--yes"])
        .env("USER", "bob")
        .output()
        .unwrap();
    assert!(out.status.success());

    let replays = run_rows(&env, "DLQ_REPLAY_RUN").await;
    assert_eq!(replays.len(), 1);
    let (operator, outcome, detail) = &replays[0];
    assert_eq!((operator.as_str(), outcome.as_str()), ("alice", "SUCCESS"));
    assert_eq!(detail["filter"]["error_code"], "PRG_DATA_SYNC_011");
    assert_eq!(detail["limit"], 2);
    assert_eq!(
        (&detail["examined"], &detail["matched"], &detail["acted"]),
        (&5.into(), &2.into(), &2.into())
    );
    let deletes = run_rows(&env, "DLQ_DELETE_RUN").await;
    assert_eq!(deletes.len(), 1);
    assert_eq!(deletes[0].0, "bob", "the OS user by default");
    assert_eq!(deletes[0].2["acted"], 2);

    let audit = env
        .db()
        .await
        .query("SELECT CAST(t AS text) FROM prereg.sync_audit t", &[])
        .await
        .unwrap();
    for row in audit {
        let text: String = row.get(0);
        assert!(
            unknown
                .values()
                .flatten()
                .all(|prid| !text.contains(prid.as_str())),
            "a PRID in the audit trail"
        );
    }
}
