//! RabbitMQ nodes killed and restarted under the worker.

use std::time::{Duration, Instant};

use support::*;

use crate::harness::*;

const ALL: [usize; 3] = [1, 2, 3];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serial_the_workers_node_killed_mid_stream_and_restarted_15s_later() {
    let mut cluster_env = ClusterEnv::new(&ALL);
    let env = &mut cluster_env.env;
    publish_stream(env, &node_url(1, &env.vhost)).await;
    env.spawn_app().await;
    let addr = env.http.unwrap();
    let clock = ReplyClock::start(vec![addr]);
    wait_for_acks(&[addr], 500.0).await;
    let node = ClusterEnv::consuming_node(addr, &ALL).await;
    cluster(&["kill", &node.to_string()]);
    let fault = Instant::now();
    // The node stays down for the 15 s the scenario names: a duration, not an event.
    tokio::time::sleep(Duration::from_secs(15)).await;
    cluster(&["start", &node.to_string()]);
    wait_for_acks(&[addr], REQUESTS as f64).await;
    let recovery = clock.finish(fault).await;
    env.wait_ready(Duration::from_secs(30)).await;
    assert!(env.metric("prereg_sync_broker_failovers_total").await >= 1.0);
    assert_ne!(ClusterEnv::consuming_node(addr, &ALL).await, node);
    let url = node_url(node % 3 + 1, &env.vhost);
    check_stream(env, &url, "workers_node_killed", &recovery).await;
    env.stop_app().await;
}

/// The worker is kept off the leader's node, so this is about the queue, not the connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serial_the_request_queue_leader_killed_mid_stream() {
    let mut cluster_env = ClusterEnv::new(&ALL);
    publish_stream(&cluster_env.env, &cluster_env.url(1)).await;
    let leader = cluster_env.request_queue_leader();
    let others: Vec<usize> = ALL.into_iter().filter(|n| *n != leader).collect();
    let env = &mut cluster_env.env;
    let url = node_list(&others, &env.vhost);
    env.vars.insert("AMQP_URL".into(), url);
    env.spawn_app().await;
    let addr = env.http.unwrap();
    let clock = ReplyClock::start(vec![addr]);
    wait_for_acks(&[addr], 500.0).await;
    cluster(&["kill", &leader.to_string()]);
    let fault = Instant::now();
    wait_for_acks(&[addr], REQUESTS as f64).await;
    let recovery = clock.finish(fault).await;
    cluster(&["start", &leader.to_string()]);
    env.wait_ready(Duration::from_secs(30)).await;
    check_stream(
        env,
        &node_url(others[0], &env.vhost),
        "leader_killed",
        &recovery,
    )
    .await;
    env.stop_app().await;
}

/// Each node stopped cleanly and started again in turn, as an upgrade does it. The worker runs
/// with a small window so the stream lasts through the whole roll.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serial_a_rolling_restart_of_all_three_nodes() {
    let mut cluster_env = ClusterEnv::new(&ALL);
    let env = &mut cluster_env.env;
    for (key, value) in [
        ("PREREG_SYNC__WORKER__CONCURRENCY", "2"),
        ("PREREG_SYNC__AMQP__PREFETCH", "2"),
    ] {
        env.vars.insert(key.into(), value.into());
    }
    publish_stream(env, &node_url(1, &env.vhost)).await;
    env.spawn_app().await;
    let addr = env.http.unwrap();
    let clock = ReplyClock::start(vec![addr]);
    wait_for_acks(&[addr], 200.0).await;
    let fault = Instant::now();
    for node in ALL {
        cluster(&["stop", &node.to_string()]);
        cluster(&["start", &node.to_string()]);
        // Let the restarted quorum members catch up before the next node goes.
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
    let rolled = fault.elapsed();
    wait_for_acks(&[addr], REQUESTS as f64).await;
    let recovery = clock.finish(fault).await;
    env.wait_ready(Duration::from_secs(30)).await;
    println!("rolling restart took {:.1}s", rolled.as_secs_f64());
    check_stream(env, &node_url(1, &env.vhost), "rolling_restart", &recovery).await;
    env.stop_app().await;
}

/// Two replicas consuming from different nodes (the second is restarted until its random
/// start differs from the first's); the first one's node dies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serial_two_replicas_on_different_nodes_while_one_node_dies() {
    let mut cluster_env = ClusterEnv::new(&ALL);
    let first = &mut cluster_env.env;
    first.spawn_app().await;
    let first_addr = first.http.unwrap();
    let first_node = ClusterEnv::consuming_node(first_addr, &ALL).await;
    let vars: Vec<(String, String)> = first.vars.clone().into_iter().collect();
    let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let mut second = TestEnv::with_vars(&vars);
    let second_addr = loop {
        second.spawn_app().await;
        let addr = second.http.unwrap();
        if ClusterEnv::consuming_node(addr, &ALL).await != first_node {
            break addr;
        }
        second.stop_app().await;
    };
    let addrs = vec![first_addr, second_addr];
    publish_stream(first, &node_url(1, &first.vhost)).await;
    let clock = ReplyClock::start(addrs.clone());
    wait_for_acks(&addrs, 500.0).await;
    cluster(&["kill", &first_node.to_string()]);
    let fault = Instant::now();
    wait_for_acks(&addrs, REQUESTS as f64).await;
    let recovery = clock.finish(fault).await;
    cluster(&["start", &first_node.to_string()]);
    first.wait_ready(Duration::from_secs(30)).await;
    second.wait_ready(Duration::from_secs(30)).await;
    let shares = (
        first.metric(ACK_REPLIES).await,
        second.metric(ACK_REPLIES).await,
    );
    println!("replies by replica: {shares:?}");
    assert!(shares.0 > 0.0 && shares.1 > 0.0, "both replicas worked");
    let url = node_url(first_node % 3 + 1, &first.vhost);
    check_stream(first, &url, "two_replicas_one_node_dies", &recovery).await;
    second.stop_app().await;
    first.stop_app().await;
}
