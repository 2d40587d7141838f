//! What the AMQP contract tests check, through the ingress: a success, duplicates, validation
//! errors, unknown PRIDs, the lookup; HTTP/1.1 keep-alive and HTTP/2; the metrics.

use std::time::Duration;

use support::*;

use crate::{PATH, answer, code, ingress_env, post};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_is_stored_and_answered_with_the_workers_reply_and_a_retry_gets_the_same() {
    let keys = Keys::new();
    let mut env = ingress_env(&keys, &[]);
    env.spawn_app().await;
    let ingress = env.ingress.expect("the ingress is on");
    let ids = prids(2);
    env.seed_applications(&ids).await;
    let client = reqwest::Client::new();
    let token = keys.token();
    let body = request_body(&ids);

    let first = post(
        &client,
        ingress,
        Some(&token),
        &body,
        &[("Idempotency-Key", "tx-http-1")],
    )
    .await;
    assert_eq!(first.version(), reqwest::Version::HTTP_11);
    let (status, reply, bytes) = answer(first).await;
    assert_eq!(status, 200, "{reply}");
    check_reply_body(Some("ack"), &bytes, "ingress reply");
    assert_eq!(reply["response"]["transactionId"], "tx-http-1");
    assert_eq!(reply["response"]["countOfStoredPreRegIds"], "2");
    // The token's client is the request's app_id, stored with the transaction.
    let app_ids = env
        .count("SELECT count(*) FROM prereg.sync_transaction WHERE transaction_id = 'tx-http-1' AND app_id = 'registration-processor'")
        .await;
    assert_eq!(app_ids, 1);

    // Same Idempotency-Key (and X-Request-ID, its alias): the stored reply, byte for byte.
    let (status, _, again) = answer(
        post(
            &client,
            ingress,
            Some(&token),
            &body,
            &[("Idempotency-Key", "tx-http-1")],
        )
        .await,
    )
    .await;
    assert_eq!((status, &again), (200, &bytes));
    let (status, _, alias) = answer(
        post(
            &client,
            ingress,
            Some(&token),
            &body,
            &[("X-Request-ID", "tx-http-1")],
        )
        .await,
    )
    .await;
    assert_eq!((status, &alias), (200, &bytes));

    // The lookup answers the same bytes; an unknown transaction is 404.
    let lookup = client
        .get(format!("{}/tx-http-1", crate::url(ingress)))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    let (status, _, looked_up) = answer(lookup).await;
    assert_eq!((status, &looked_up), (200, &bytes));
    let missing = client
        .get(format!("{}/no-such-tx", crate::url(ingress)))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    let (status, body404, bytes404) = answer(missing).await;
    assert_eq!((status, code(&body404)), (404, "PRS_TRANSACTION_NOT_FOUND"));
    check_reply_body(Some("ingress"), &bytes404, "404");

    // The same body without a key twice: the transaction ID is derived from it; the second
    // answer is the first's.
    let other_ids = prids(1);
    env.seed_applications(&other_ids).await;
    let other = request_body(&other_ids);
    let (status, derived, first_bytes) =
        answer(post(&client, ingress, Some(&token), &other, &[]).await).await;
    assert_eq!(status, 200, "{derived}");
    assert_eq!(
        derived["response"]["transactionId"],
        derived_transaction_id(&other)
    );
    let (_, _, second_bytes) =
        answer(post(&client, ingress, Some(&token), &other, &[]).await).await;
    assert_eq!(second_bytes, first_bytes);

    // Routes are counted by template, never by transaction ID.
    let metrics = env.metrics().await;
    let route = format!("prereg_sync_http_requests_total{{route=\"{PATH}\",status=\"200\"}}");
    assert!(env.metric(&route).await >= 5.0, "{metrics}");
    let lookup_route = format!(
        "prereg_sync_http_requests_total{{route=\"{PATH}/{{transaction_id}}\",status=\"404\"}}"
    );
    assert_eq!(env.metric(&lookup_route).await, 1.0, "{metrics}");
    assert!(!metrics.contains("tx-http-1") && !metrics.contains(&token));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_requests_get_the_workers_error_reply_and_oversized_bodies_413() {
    let keys = Keys::new();
    let mut env = ingress_env(
        &keys,
        &[("PREREG_SYNC__VALIDATION__MAX_BODY_BYTES", "4096")],
    );
    env.spawn_app().await;
    let ingress = env.ingress.unwrap();
    let client = reqwest::Client::new();
    let token = keys.token();
    let ids = prids(1);
    let body = |id: &str| {
        serde_json::to_vec(&serde_json::json!({
            "id": id, "version": "1.0", "requesttime": REQUEST_TIME,
            "request": {"preRegistrationIds": ids},
        }))
        .unwrap()
    };
    let json = "application/json";
    let cases = [
        (body("wrong.id"), json, "PRG_PAM_CORE_001"),
        (b"not json".to_vec(), json, "PRG_CORE_REQ_015"),
        // Valid, but no application is known for the PRID.
        (
            body("mosip.pre-registration.datasync.store"),
            json,
            "PRG_DATA_SYNC_011",
        ),
        (
            request_body(&prids(1)),
            "text/plain",
            "PRS_UNSUPPORTED_CONTENT_TYPE",
        ),
    ];
    for (body, content_type, expected) in cases {
        let headers = [("content-type", content_type)];
        let (status, reply, bytes) =
            answer(post(&client, ingress, Some(&token), &body, &headers).await).await;
        assert_eq!((status, code(&reply)), (200, expected), "{reply}");
        check_reply_body(Some("error"), &bytes, expected);
    }
    // A body over validation.max_body_bytes is refused without being read to its end.
    let large = vec![b' '; 64 * 1024];
    let (status, reply, bytes) =
        answer(post(&client, ingress, Some(&token), &large, &[]).await).await;
    assert_eq!((status, code(&reply)), (413, "PRG_CORE_REQ_015"));
    check_reply_body(Some("ingress"), &bytes, "413");
    assert_eq!(env.rows("sync_transaction").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_and_http11_keep_alive_are_both_served() {
    let keys = Keys::new();
    let mut env = ingress_env(&keys, &[]);
    env.spawn_app().await;
    let ingress = env.ingress.unwrap();
    let ids = prids(4);
    env.seed_applications(&ids).await;
    let token = keys.token();
    let h2 = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let h1 = reqwest::Client::builder()
        .http1_only()
        .pool_max_idle_per_host(1)
        .build()
        .unwrap();
    for (client, version, chunk) in [
        (&h2, reqwest::Version::HTTP_2, &ids[..2]),
        (&h1, reqwest::Version::HTTP_11, &ids[2..]),
    ] {
        for prid in chunk {
            let response = post(
                client,
                ingress,
                Some(&token),
                &request_body(std::slice::from_ref(prid)),
                &[],
            )
            .await;
            assert_eq!(response.version(), version);
            let (status, reply, _) = answer(response).await;
            assert_eq!(
                (status, &reply["response"]["countOfStoredPreRegIds"]),
                (200, &serde_json::json!("1"))
            );
        }
    }
    env.wait_for_count(
        "SELECT count(*) FROM prereg.sync_transaction",
        4,
        Duration::from_secs(5),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loadgen_via_http_drives_the_ingress_and_reports_every_answer() {
    let keys = Keys::new();
    let listen = format!("127.0.0.1:{}", crate::free_port());
    let mut env = ingress_env(
        &keys,
        &[
            ("PREREG_SYNC__INGRESS__LISTEN", &listen),
            (
                "PREREG_SYNC__INGRESS__DEV_SIGNING_KEY_FILE",
                &keys.private_key_file,
            ),
        ],
    );
    env.spawn_app().await;
    let out = env.cli_ok(&[
        "--json",
        "loadgen",
        "--via",
        "http",
        "--requests",
        "20",
        "--batch",
        "2",
        "--concurrency",
        "4",
        "--seed-fake-applications",
    ]);
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (report["acks"].as_u64(), report["errors"].as_u64()),
        (Some(20), Some(0)),
        "{report}"
    );
    assert_eq!(env.rows("sync_transaction").await, 20);
    assert_eq!(
        env.count("SELECT count(*) FROM prereg.sync_transaction WHERE app_id = 'loadgen'")
            .await,
        20
    );
}
