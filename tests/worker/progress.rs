//! Long commands show a progress bar on a terminal (a pseudo-terminal from `script`) and stay
//! plain, without a bar or escape codes, when their output is piped or `--json` is asked for.

use std::process::Command;

use support::{TestEnv, config_dir};

/// Runs `prereg-sync consumed-job run [extra]` on a pseudo-terminal; returns what it showed.
fn on_a_terminal(env: &TestEnv, extra: &str) -> String {
    let command = format!(
        "{} --config-dir {} consumed-job run {extra}",
        env!("CARGO_BIN_EXE_prereg-sync"),
        config_dir().display()
    );
    let mut script = Command::new("script");
    script.args(["-qec", &command, "/dev/null"]);
    for (k, v) in &env.vars {
        script.env(k, v);
    }
    let out = script.output().expect("running script (util-linux)");
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bar_on_a_terminal_only() {
    let env = TestEnv::new();
    env.migrate().await;
    let pending = |n: i32| {
        format!(
            "INSERT INTO prereg.processed_prereg_list (prereg_id, first_received_dtimes, status_code, \
             status_comments, prereg_trn_id, lang_code, cr_by, cr_dtimes) \
             SELECT 'p{n}-' || g, now(), 'Consumed', 'Processed by registration processor', 'tx', 'eng', \
             't', now() FROM generate_series(1, 2000) g"
        )
    };
    let db = env.db().await;

    db.batch_execute(&pending(1)).await.unwrap();
    let shown = on_a_terminal(&env, "");
    assert!(shown.contains("consumed-job run ["), "a bar: {shown:?}");
    assert!(
        shown.contains("/2,000"),
        "with the pending total: {shown:?}"
    );

    db.batch_execute(&pending(2)).await.unwrap();
    let json = on_a_terminal(&env, "--json");
    assert!(
        !json.contains("consumed-job run ["),
        "no bar with --json: {json:?}"
    );
    assert!(json.contains("\"selected\": 2000"), "{json:?}");

    db.batch_execute(&pending(3)).await.unwrap();
    let piped = env.cli(&["consumed-job", "run"]);
    for stream in [&piped.stdout, &piped.stderr] {
        let text = String::from_utf8_lossy(stream);
        assert!(
            !text.contains('\u{1b}'),
            "no escape codes when piped: {text:?}"
        );
        assert!(
            !text.contains("consumed-job run ["),
            "no bar when piped: {text:?}"
        );
    }
}
