//! Every metric the alert rules and the Grafana dashboard read exists on a running worker's
//! `/metrics`, so renaming a metric cannot silently blind an alert or a panel.

use std::{collections::BTreeSet, path::Path};

use regex::Regex;

use support::TestEnv;

/// The worker's metric names a file refers to (RabbitMQ's and Prometheus' own are not ours).
fn referenced_names(file: &str) -> BTreeSet<String> {
    let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(file))
        .unwrap_or_else(|err| panic!("{file}: {err}"));
    let name = Regex::new(r"\b(prereg_sync_[a-z0-9_]+|process_[a-z0-9_]+)").unwrap();
    name.find_iter(&text)
        .map(|m| m.as_str().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_and_dashboard_read_only_metrics_the_worker_exports() {
    let mut env = TestEnv::new();
    env.spawn_app().await;
    let exported: BTreeSet<String> = env
        .metrics()
        .await
        .lines()
        // A sample's series name, or a family's (`# TYPE name histogram`, read as `name` too).
        .filter_map(|line| match line.strip_prefix("# TYPE ") {
            Some(family) => family.split(' ').next(),
            None if line.starts_with('#') => None,
            None => line.split(['{', ' ']).next(),
        })
        .filter(|name| !name.is_empty())
        .map(str::to_owned)
        .collect();
    for file in [
        "deploy/prometheus/alerts.yml",
        "deploy/grafana/dashboards/prereg-sync.json",
    ] {
        let referenced = referenced_names(file);
        assert!(!referenced.is_empty(), "{file} names no worker metric");
        let missing: Vec<_> = referenced.difference(&exported).collect();
        assert!(
            missing.is_empty(),
            "{file} reads metrics /metrics does not export: {missing:?}"
        );
    }
}
