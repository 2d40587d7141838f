//! What an operator sees when a command is refused or a connection fails, through the real
//! binary: usage errors exit 2, each cause is said once and points at the setting to change,
//! and a normal start logs no noise.

use support::*;

/// Runs `args`; returns the exit status and stderr.
fn run(env: &TestEnv, args: &[&str], vars: &[(&str, &str)]) -> (Option<i32>, String) {
    let out = env
        .command()
        .args(args)
        .envs(vars.iter().copied())
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_command_lines_exit_2_like_clap_usage_errors() {
    let env = TestEnv::new();
    env.migrate().await;
    for (args, why) in [
        (&["dlq", "delete", "--all"][..], "add --yes"),
        (&["dlq", "delete", "--yes"][..], "add --all, or a filter"),
        (
            &["dlq", "replay", "--all", "--error-code", "PRG_PAM_CORE_002"][..],
            "exclude each other",
        ),
        (
            &["maintenance", "purge-audit", "--older-than", "2d"][..],
            "add --yes",
        ),
        (&["report", "--since", "400d"][..], "at most 366 days"),
        (&["report", "--no-such-flag"][..], "unexpected argument"),
    ] {
        let (status, stderr) = run(&env, args, &[]);
        assert_eq!(status, Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(why), "{args:?}: {stderr}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn report_since_alone_runs_until_now() {
    let env = TestEnv::new();
    env.migrate().await;
    let days: Vec<serde_json::Value> =
        serde_json::from_str(&env.cli_ok(&["report", "--since", "2d", "--json"])).unwrap();
    let today = chrono::Utc::now().date_naive();
    let dates: Vec<&str> = days.iter().map(|d| d["date"].as_str().unwrap()).collect();
    assert_eq!(dates.len(), 3, "{dates:?}");
    assert_eq!(dates[2], today.to_string(), "{dates:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_migration_logs_no_notice() {
    let env = TestEnv::new();
    env.cli_ok(&["migrate"]);
    let (status, stderr) = run(&env, &["migrate"], &[]);
    assert_eq!(status, Some(0), "{stderr}");
    assert!(!stderr.contains("NOTICE"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sslmode_in_database_url_points_at_database_tls_mode() {
    let env = TestEnv::new();
    let url = format!("{}?sslmode=require", env.vars["DATABASE_URL"]);
    let (status, stderr) = run(&env, &["migrate"], &[("DATABASE_URL", &url)]);
    assert_eq!(status, Some(1), "{stderr}");
    assert!(stderr.contains("database.tls.mode"), "{stderr}");
    assert!(!stderr.contains("no TLS implementation"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_error_is_said_once() {
    let env = TestEnv::new();
    // Port 1 on this machine: connection refused.
    let url = format!("amqp://guest:guest@127.0.0.1:1/{}", env.vhost);
    let (status, stderr) = run(&env, &["dlq", "list"], &[("AMQP_URL", &url)]);
    assert_eq!(status, Some(1), "{stderr}");
    let line = stderr
        .lines()
        .find(|line| line.starts_with("error: "))
        .unwrap_or_else(|| panic!("no error line: {stderr}"));
    assert_eq!(line.matches("Connection refused").count(), 1, "{line}");
}
