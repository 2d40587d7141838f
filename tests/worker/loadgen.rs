//! `loadgen` kept off production by the real binary: a run with no acknowledged request fails,
//! its fake applications go only into a database that looks like a test one (or that the
//! operator names), and `loadgen cleanup` removes them and nothing else.

use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_without_one_acknowledged_request_fails() {
    let mut env = TestEnv::new();
    env.spawn_app().await;
    // No seeded applications: every PRID is unknown, every request rejected.
    let out = env.cli(&["loadgen", "--requests", "3", "--batch", "1"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("no request was acknowledged"), "{stderr}");
    assert!(stderr.contains("acks=0 errors=3"), "{stderr}");
    env.stop_app().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fake_applications_need_a_test_database_or_its_name() {
    let env = TestEnv::new();
    // Never connected to: the guard refuses before.
    let url = postgres_url("postgres", "mosip_prereg");
    for args in [
        &["loadgen", "--requests", "1", "--seed-fake-applications"][..],
        &["loadgen", "cleanup"][..],
        &[
            "loadgen",
            "cleanup",
            "--allow-database",
            "mosip_prereg_other",
        ][..],
    ] {
        let out = env
            .command()
            .args(args)
            .env("DATABASE_URL", &url)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(
            stderr.contains("`mosip_prereg` does not look like a test database")
                && stderr.contains("--allow-database mosip_prereg"),
            "{args:?}: {stderr}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cleanup_removes_the_seeded_applications_only() {
    let mut env = TestEnv::new();
    env.spawn_app().await;
    let real = prids(2);
    env.seed_applications(&real).await;
    env.cli_ok(&[
        "loadgen",
        "--requests",
        "5",
        "--batch",
        "2",
        "--seed-fake-applications",
    ]);
    env.stop_app().await;
    let seeded = "SELECT count(*) FROM prereg.applicant_demographic WHERE cr_by = 'loadgen'";
    assert_eq!(env.count(seeded).await, 10);

    let database = env.vars["DATABASE_URL"]
        .rsplit('/')
        .next()
        .unwrap()
        .to_owned();
    let out = env.cli_ok(&[
        "loadgen",
        "cleanup",
        "--allow-database",
        &database,
        "--json",
    ]);
    let deleted: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(deleted["applicant_demographic"], 10, "{deleted}");
    assert_eq!(env.count(seeded).await, 0);
    assert_eq!(
        env.rows("applicant_demographic").await,
        2,
        "real applications stay"
    );
}
