//! Every metric the alert rules and the Grafana dashboard's queries read exists on a running
//! worker's `/metrics`, so renaming a metric cannot silently blind an alert or a panel; and the
//! dashboard imports into any Grafana: its data source, worker job and vhost are variables.

use std::{collections::BTreeSet, path::Path};

use regex::Regex;
use serde_json::Value;

use support::TestEnv;

const ALERTS: &str = "deploy/prometheus/alerts.yml";
const DASHBOARD: &str = "deploy/grafana/dashboards/prereg-sync.json";

fn read(file: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(file))
        .unwrap_or_else(|err| panic!("{file}: {err}"))
}

/// The worker's metric names a text refers to (RabbitMQ's and Prometheus' own are not ours).
fn worker_metric_names<'a>(texts: impl IntoIterator<Item = &'a str>) -> BTreeSet<String> {
    let name = Regex::new(r"\b(prereg_sync_[a-z0-9_]+|process_[a-z0-9_]+)").unwrap();
    texts
        .into_iter()
        .flat_map(|text| name.find_iter(text).map(|m| m.as_str().to_owned()))
        .collect()
}

fn dashboard() -> Value {
    serde_json::from_str(&read(DASHBOARD)).expect("the dashboard is JSON")
}

/// Every PromQL query of the dashboard: the panels' targets and the variables' queries.
fn dashboard_queries(dashboard: &Value) -> Vec<String> {
    fn walk(value: &Value, queries: &mut Vec<String>) {
        match value {
            Value::Object(fields) => {
                for (key, field) in fields {
                    match (key.as_str(), field) {
                        ("expr" | "definition", Value::String(query)) => {
                            queries.push(query.clone())
                        }
                        _ => walk(field, queries),
                    }
                }
            }
            Value::Array(items) => items.iter().for_each(|item| walk(item, queries)),
            _ => {}
        }
    }
    let mut queries = Vec::new();
    walk(&dashboard["panels"], &mut queries);
    walk(&dashboard["templating"], &mut queries);
    queries
}

/// Every `datasource` reference below `value`.
fn datasources(value: &Value) -> Vec<&Value> {
    match value {
        Value::Object(fields) => fields
            .iter()
            .flat_map(|(key, field)| match key.as_str() {
                "datasource" => vec![field],
                _ => datasources(field),
            })
            .collect(),
        Value::Array(items) => items.iter().flat_map(datasources).collect(),
        _ => Vec::new(),
    }
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
    let alerts = read(ALERTS);
    let queries = dashboard_queries(&dashboard());
    for (file, referenced) in [
        (ALERTS, worker_metric_names([alerts.as_str()])),
        (
            DASHBOARD,
            worker_metric_names(queries.iter().map(String::as_str)),
        ),
    ] {
        assert!(!referenced.is_empty(), "{file} names no worker metric");
        let missing: Vec<_> = referenced.difference(&exported).collect();
        assert!(
            missing.is_empty(),
            "{file} reads metrics /metrics does not export: {missing:?}"
        );
    }
}

#[test]
fn the_dashboard_imports_anywhere() {
    let dashboard = dashboard();
    let inputs = dashboard["__inputs"]
        .as_array()
        .expect("__inputs for import");
    assert!(
        inputs
            .iter()
            .any(|input| input["type"] == "datasource" && input["pluginId"] == "prometheus"),
        "no Prometheus data source input in {inputs:?}"
    );
    let variables: BTreeSet<&str> = dashboard["templating"]["list"]
        .as_array()
        .expect("variables")
        .iter()
        .filter_map(|variable| variable["name"].as_str())
        .collect();
    for name in ["datasource", "job", "instance", "vhost"] {
        assert!(variables.contains(name), "no ${name} variable");
    }
    for datasource in datasources(&dashboard["panels"])
        .into_iter()
        .chain(datasources(&dashboard["templating"]))
    {
        assert_eq!(
            datasource["uid"], "${datasource}",
            "a data source that is not the variable: {datasource}"
        );
    }
    let worker_series = Regex::new(r"\b(prereg_sync_[a-z0-9_]+|process_[a-z0-9_]+|up)\{").unwrap();
    for query in dashboard_queries(&dashboard) {
        if worker_series.is_match(&query)
            && !query.contains("label_values(prereg_sync_build_info, job)")
        {
            assert!(
                query.contains(r#"job=~"$job""#),
                "not on the $job variable: {query}"
            );
        }
        if query.contains("rabbitmq_detailed_queue") {
            assert!(
                query.contains(r#"vhost=~"$vhost""#) || query.starts_with("label_values("),
                "not on the $vhost variable: {query}"
            );
            assert!(
                !query.contains("sum(rabbitmq"),
                "summed across vhosts: {query}"
            );
        }
    }
}
