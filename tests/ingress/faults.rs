//! Faults: the worker away (202 QUEUED, stored when it returns), the broker cut off (503,
//! nothing queued), the ingress process SIGKILLed under load (every acknowledged request
//! stored) and SIGTERMed (requests in progress answered, then exit 0).

use std::{
    net::SocketAddr,
    process::{Child, Stdio},
    sync::{Arc, Mutex},
    time::Duration,
};

use support::*;

use crate::{answer, code, free_port, ingress_env, post};

/// `prereg-sync ingress` as a process against `env`, with `extra` variables; returns it, its
/// ingress address and its `/readyz` address, once ready.
async fn spawn_ingress(
    env: &TestEnv,
    keys: &Keys,
    extra: &[(&str, &str)],
    log: &Scratch,
) -> (Child, SocketAddr, SocketAddr) {
    let ingress: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let http: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let log = std::fs::File::create(log.write("ingress.log", "")).unwrap();
    let child = env
        .command()
        .arg("ingress")
        .envs(keys.vars(&ingress.to_string()))
        .env("PREREG_SYNC__HTTP__LISTEN", http.to_string())
        .envs(extra.iter().copied())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("spawning prereg-sync ingress");
    wait_until(
        Duration::from_secs(30),
        Duration::from_millis(100),
        "ingress not ready",
        async || {
            reqwest::get(format!("http://{http}/readyz"))
                .await
                .is_ok_and(|response| response.status().is_success())
        },
    )
    .await;
    (child, ingress, http)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_worker_stopped_a_request_is_queued_then_stored_when_it_returns() {
    let keys = Keys::new();
    let scratch = Scratch::new();
    let mut env = TestEnv::new();
    env.migrate().await;
    let ids = prids(1);
    env.seed_applications(&ids).await;
    let (mut child, ingress, _) = spawn_ingress(
        &env,
        &keys,
        &[("PREREG_SYNC__INGRESS__REPLY_TIMEOUT", "1s")],
        &scratch,
    )
    .await;
    let client = reqwest::Client::new();
    let token = keys.token();
    let body = request_body(&ids);
    let key = [("Idempotency-Key", "tx-queued")];

    let (status, queued, bytes) =
        answer(post(&client, ingress, Some(&token), &body, &key).await).await;
    assert_eq!(status, 202, "{queued}");
    check_reply_body(Some("ingress"), &bytes, "202");
    assert_eq!(queued["response"]["status"], "QUEUED");
    assert_eq!(queued["response"]["transactionId"], "tx-queued");
    assert_eq!(
        env.broker().await.depth(REQUEST_QUEUE).await,
        1,
        "durable in the request queue"
    );

    env.spawn_app().await;
    env.wait_for_count(
        "SELECT count(*) FROM prereg.sync_transaction WHERE transaction_id = 'tx-queued'",
        1,
        Duration::from_secs(10),
    )
    .await;
    // The retry gets the stored reply.
    let (status, stored, _) = answer(post(&client, ingress, Some(&token), &body, &key).await).await;
    assert_eq!(
        (status, &stored["response"]["countOfStoredPreRegIds"]),
        (200, &serde_json::json!("1")),
        "{stored}"
    );
    terminate(&child);
    assert!(child.wait().unwrap().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_broker_unreachable_the_answer_is_503_and_nothing_is_queued() {
    let keys = Keys::new();
    let proxy = Proxy::start(rabbitmq_addr(), true).await;
    let mut env = ingress_env(&keys, &[("PREREG_SYNC__AMQP__PUBLISH_TIMEOUT", "5s")]);
    let via_proxy = format!(
        "amqp://guest:guest@127.0.0.1:{}/{}",
        proxy.port(),
        env.vhost
    );
    env.vars.insert("AMQP_URL".into(), via_proxy);
    env.spawn_app().await;
    let ingress = env.ingress.unwrap();
    let ids = prids(2);
    env.seed_applications(&ids).await;
    let client = reqwest::Client::new();
    let token = keys.token();
    let (status, _, _) = answer(
        post(
            &client,
            ingress,
            Some(&token),
            &request_body(&ids[..1]),
            &[],
        )
        .await,
    )
    .await;
    assert_eq!(status, 200);

    proxy.cut();
    // Not ready while the ingress has no broker session. Waited for before posting: a request
    // published in the instant of the cut may reach the queue with its confirm lost, and is
    // then answered 503 although queued (a retry finds it stored, docs/reliability.md).
    wait_until(
        Duration::from_secs(10),
        Duration::from_millis(50),
        "still ready",
        async || !env.ready().await,
    )
    .await;
    let response = post(
        &client,
        ingress,
        Some(&token),
        &request_body(&ids[1..]),
        &[],
    )
    .await;
    assert!(response.headers().contains_key("retry-after"));
    let (status, reply, bytes) = answer(response).await;
    assert_eq!(
        (status, code(&reply)),
        (503, "PRS_BROKER_UNAVAILABLE"),
        "{reply}"
    );
    check_reply_body(Some("ingress"), &bytes, "503");
    // Nothing of the refused request in the queue. The first request may be back in it: its
    // ack, coalesced with others, can still have been on the worker's connection at the cut.
    let refused = request_body(&ids[1..]);
    let broker = env.broker().await;
    while let Some(queued) = broker.get(REQUEST_QUEUE, Duration::ZERO).await {
        assert_ne!(queued.data, refused, "the refused request was queued");
    }
    assert_eq!(env.rows("sync_transaction").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ingress_killed_with_500_requests_in_flight_loses_none_it_acknowledged() {
    let keys = Keys::new();
    let scratch = Scratch::new();
    let mut env = TestEnv::new();
    env.migrate().await;
    let ids = prids(500);
    env.seed_applications(&ids).await;
    // No worker yet: every request waits for its reply, then is answered QUEUED.
    let (mut child, ingress, _) = spawn_ingress(
        &env,
        &keys,
        &[("PREREG_SYNC__INGRESS__REPLY_TIMEOUT", "300ms")],
        &scratch,
    )
    .await;
    let client = reqwest::Client::new();
    let token = Arc::new(keys.token());
    let acknowledged = Arc::new(Mutex::new(Vec::new()));
    let requests: Vec<_> = ids
        .iter()
        .enumerate()
        .map(|(n, prid)| {
            let (client, token, acknowledged) =
                (client.clone(), token.clone(), acknowledged.clone());
            let body = request_body(std::slice::from_ref(prid));
            tokio::spawn(async move {
                let key = format!("tx-kill-{n}");
                let sent = client
                    .post(crate::url(ingress))
                    .bearer_auth(token.as_str())
                    .header("content-type", "application/json")
                    .header("Idempotency-Key", &key)
                    .body(body)
                    .send()
                    .await;
                if let Ok(response) = sent
                    && matches!(response.status().as_u16(), 200 | 202)
                    && response.bytes().await.is_ok()
                {
                    acknowledged.lock().unwrap().push(key);
                }
            })
        })
        .collect();
    wait_until(
        Duration::from_secs(30),
        Duration::from_millis(5),
        "no answers",
        async || acknowledged.lock().unwrap().len() >= 100,
    )
    .await;
    must(std::process::Command::new("kill").args(["-KILL", &child.id().to_string()]));
    child.wait().expect("the killed ingress is reaped");
    for request in requests {
        request.await.unwrap();
    }
    let acknowledged = acknowledged.lock().unwrap().clone();
    assert!(
        acknowledged.len() < 500,
        "some requests were still in flight at the kill"
    );

    env.spawn_app().await;
    let broker = env.broker().await;
    wait_until(
        Duration::from_secs(60),
        Duration::from_millis(100),
        "request queue not drained",
        async || broker.depth(REQUEST_QUEUE).await == 0,
    )
    .await;
    let listed = acknowledged
        .iter()
        .map(|key| format!("'{key}'"))
        .collect::<Vec<_>>()
        .join(",");
    let stored = env
        .wait_for_count(
            &format!(
                "SELECT count(*) FROM prereg.sync_transaction WHERE transaction_id IN ({listed})"
            ),
            acknowledged.len() as i64,
            Duration::from_secs(30),
        )
        .await;
    assert_eq!(stored, acknowledged.len() as i64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_answers_the_requests_in_progress_then_exits() {
    let keys = Keys::new();
    let scratch = Scratch::new();
    let env = TestEnv::new();
    env.migrate().await;
    let ids = prids(20);
    let (mut child, ingress, _) = spawn_ingress(
        &env,
        &keys,
        &[("PREREG_SYNC__INGRESS__REPLY_TIMEOUT", "60s")],
        &scratch,
    )
    .await;
    let client = reqwest::Client::new();
    let token = Arc::new(keys.token());
    let requests: Vec<_> = ids
        .iter()
        .map(|prid| {
            let (client, token) = (client.clone(), token.clone());
            let body = request_body(std::slice::from_ref(prid));
            tokio::spawn(async move {
                answer(post(&client, ingress, Some(&token), &body, &[]).await).await
            })
        })
        .collect();
    // All 20 published and waiting for a reply no worker will send.
    let broker = env.broker().await;
    wait_until(
        Duration::from_secs(30),
        Duration::from_millis(20),
        "requests not queued",
        async || broker.depth(REQUEST_QUEUE).await == 20,
    )
    .await;
    terminate(&child);
    for request in requests {
        let (status, body, _) = request.await.unwrap();
        assert_eq!(
            (status, &body["response"]["status"]),
            (202, &serde_json::json!("QUEUED"))
        );
    }
    assert!(child.wait().unwrap().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_concurrency_cap_requests_are_shed_with_503_and_past_the_waiter_cap_queued_at_once()
 {
    let keys = Keys::new();
    let scratch = Scratch::new();
    let env = TestEnv::new();
    env.migrate().await;
    let ids = prids(3);
    // No worker: a request with a waiter slot holds its concurrency slot for the reply timeout.
    let (mut child, ingress, _) = spawn_ingress(
        &env,
        &keys,
        &[
            ("PREREG_SYNC__INGRESS__REPLY_TIMEOUT", "60s"),
            ("PREREG_SYNC__INGRESS__MAX_CONCURRENT_REQUESTS", "2"),
            ("PREREG_SYNC__INGRESS__MAX_REPLY_WAITERS", "1"),
        ],
        &scratch,
    )
    .await;
    let client = reqwest::Client::new();
    let token = keys.token();
    let waiting = {
        let (client, token, body) = (client.clone(), token.clone(), request_body(&ids[..1]));
        tokio::spawn(
            async move { answer(post(&client, ingress, Some(&token), &body, &[]).await).await },
        )
    };
    let broker = env.broker().await;
    wait_until(
        Duration::from_secs(10),
        Duration::from_millis(20),
        "first request not queued",
        async || broker.depth(REQUEST_QUEUE).await == 1,
    )
    .await;
    // The only waiter slot is taken: the next request is answered QUEUED once confirmed.
    let (status, queued, _) = answer(
        post(
            &client,
            ingress,
            Some(&token),
            &request_body(&ids[1..2]),
            &[],
        )
        .await,
    )
    .await;
    assert_eq!(
        (status, &queued["response"]["status"]),
        (202, &serde_json::json!("QUEUED"))
    );
    // Hold the second concurrency slot with a body that never finishes arriving, then probe
    // until a request is shed. A probe can reach the ingress before the stalled request does
    // and get it shed instead: then the slot is held again by a new stalled request.
    let mut held = stall(&client, ingress, &token).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        if held.1.is_finished() {
            held = stall(&client, ingress, &token).await;
        }
        let response = post(
            &client,
            ingress,
            Some(&token),
            &request_body(&ids[2..]),
            &[],
        )
        .await;
        if response.status() == 503 && code(&answer(response).await.1) == "PRS_OVERLOADED" {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no 503");
        // The pacing of the probes: the shed request is the event, and only a probe shows it.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (sender, stalled) = held;
    drop(sender);
    // Its body complete at last, it is queued like the second (no waiter slot free).
    let stalled = stalled
        .await
        .unwrap()
        .expect("the stalled request is answered");
    assert_eq!(stalled.status(), 202);
    terminate(&child);
    let (status, _, _) = waiting.await.unwrap();
    assert_eq!(status, 202);
    assert!(child.wait().unwrap().success());
}

/// A request whose body stops after its first byte: it holds a concurrency slot until the
/// returned sender is dropped (the body then ends, `{` alone).
async fn stall(
    client: &reqwest::Client,
    ingress: std::net::SocketAddr,
    token: &str,
) -> (
    tokio::sync::mpsc::Sender<Result<Vec<u8>, std::io::Error>>,
    tokio::task::JoinHandle<reqwest::Result<reqwest::Response>>,
) {
    let (sender, receiver) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(1);
    let stalled = client
        .post(crate::url(ingress))
        .bearer_auth(token)
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(tokio_stream_of(receiver)))
        .send();
    let stalled = tokio::spawn(stalled);
    sender.send(Ok(b"{".to_vec())).await.unwrap();
    (sender, stalled)
}

/// A stream of body chunks from a channel, for a request body the test controls.
fn tokio_stream_of(
    mut receiver: tokio::sync::mpsc::Receiver<Result<Vec<u8>, std::io::Error>>,
) -> impl futures_util::Stream<Item = Result<Vec<u8>, std::io::Error>> {
    futures_util::stream::poll_fn(move |cx| receiver.poll_recv(cx))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_token_reaches_the_logs_even_at_trace_level() {
    let keys = Keys::new();
    let scratch = Scratch::new();
    let env = TestEnv::new();
    env.migrate().await;
    let ids = prids(1);
    let (mut child, ingress, _) = spawn_ingress(
        &env,
        &keys,
        &[
            ("RUST_LOG", "trace"),
            ("PREREG_SYNC__INGRESS__REPLY_TIMEOUT", "100ms"),
        ],
        &scratch,
    )
    .await;
    let (valid, forged) = (keys.token(), keys.forged());
    let client = reqwest::Client::new();
    let h2 = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    for (client, token) in [(&client, &valid), (&client, &forged), (&h2, &valid)] {
        post(client, ingress, Some(token), &request_body(&ids), &[]).await;
    }
    terminate(&child);
    assert!(child.wait().unwrap().success());
    let log = std::fs::read_to_string(scratch.path("ingress.log")).unwrap();
    assert!(
        log.contains("ingress signing keys loaded"),
        "the log was written"
    );
    assert!(log.contains("h2::"), "HTTP/2 frames were traced");
    for token in [&valid, &forged] {
        for part in token.split('.') {
            assert!(!log.contains(part), "a token part reached the log");
        }
    }
    assert!(!log.contains(&ids[0]), "a PRID reached the log");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_does_not_finish_its_headers_is_disconnected() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let keys = Keys::new();
    let mut env = ingress_env(
        &keys,
        &[("PREREG_SYNC__INGRESS__HEADER_READ_TIMEOUT", "1s")],
    );
    env.spawn_app().await;
    let mut slow = tokio::net::TcpStream::connect(env.ingress.unwrap())
        .await
        .unwrap();
    slow.write_all(b"POST /preregistration/v1/sync/consumedPreRegIds HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    // The server closes the connection (after a 408, or without a word): reading reaches the end.
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), slow.read_to_end(&mut answer))
        .await
        .expect("the ingress closed the connection")
        .unwrap();
}
