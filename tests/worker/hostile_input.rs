//! Any bytes a publisher can send get an error reply and a dead-letter copy, and the worker
//! keeps consuming.

use std::time::Duration;

use lapin::{
    BasicProperties,
    message::Delivery,
    types::{AMQPValue, FieldTable},
};

use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_requests_are_answered_dead_lettered_and_survived() {
    let mut env = TestEnv::new();
    env.spawn_app().await;
    let ids = prids(2);
    env.seed_applications(&ids).await;
    let broker = env.broker().await;
    let replies = broker.reply_queue("rp.replies").await;
    let cases = hostile_cases(&ids[0]);
    for (i, (_, body, content_type, _)) in cases.iter().enumerate() {
        let mut props = properties(&format!("tx-hostile-{i}"), Some(&replies));
        if let Some(ct) = content_type {
            props = props.with_content_type((*ct).into());
        }
        broker.publish(body, props).await;
    }
    // Overlong message_id and a hostile app_id (AMQP short strings stop at 255 bytes).
    let valid = request_body(&ids);
    let overlong = BasicProperties::default()
        .with_message_id("m".repeat(255).as_str().into())
        .with_app_id(format!("rp\0{}", "x".repeat(250)).as_str().into())
        .with_reply_to(replies.as_str().into());
    broker.publish(&valid, overlong).await;
    // Forged broker headers are ignored where they could hurt: x-death is dropped on republish.
    let mut forged = FieldTable::default();
    forged.insert("x-death".into(), AMQPValue::LongString("forged".into()));
    broker
        .publish(
            b"{}",
            properties("tx-forged", Some(&replies)).with_headers(forged),
        )
        .await;

    let total = cases.len() + 2;
    let got = broker.get_n(&replies, total, Duration::from_secs(60)).await;
    let dead = broker.get_n(DLQ, total, Duration::from_secs(30)).await;
    assert_cases_answered_and_dead_lettered(&cases, &got, &dead);
    assert_overlong_and_forged_handled(&env, &valid, &got, &dead).await;

    // Still consuming.
    broker
        .publish(&valid, properties("tx-after-hostile", Some(&replies)))
        .await;
    let after = broker
        .get(&replies, Duration::from_secs(20))
        .await
        .expect("a reply");
    assert_eq!(error_code(&after), "");
    assert_eq!(json(&after)["response"]["countOfStoredPreRegIds"], "2");
    assert_eq!(env.rows("processed_prereg_list").await, 2);
    env.stop_app().await;
}

/// A hostile request: what it is, its body, its content type when not JSON, the error code of
/// its answer.
type Case = (&'static str, Vec<u8>, Option<&'static str>, &'static str);

/// The request envelope around `request`.
fn envelope(request: &str) -> Vec<u8> {
    format!(
        r#"{{"id":"mosip.pre-registration.datasync.store","version":"1.0","requesttime":"{REQUEST_TIME}","request":{request}}}"#
    )
    .into_bytes()
}

/// Bodies a publisher can send (`id` a known PRID), transaction IDs `tx-hostile-<index>`.
fn hostile_cases(id: &str) -> Vec<Case> {
    let huge_list = format!(
        r#"{{"preRegistrationIds":[{}]}}"#,
        vec![format!("\"{id}\""); 10_001].join(",")
    );
    vec![
        ("oversized", vec![b' '; 1_048_577], None, "PRG_CORE_REQ_015"),
        (
            "deep nesting",
            format!("{}{}", "[".repeat(100_000), "]".repeat(100_000)).into_bytes(),
            None,
            "PRG_CORE_REQ_015",
        ),
        (
            "huge PRID list",
            envelope(&huge_list),
            None,
            "PRG_DATA_SYNC_011",
        ),
        (
            "not UTF-8",
            vec![0xff, 0xfe, 0x00, 0x7b],
            None,
            "PRG_CORE_REQ_015",
        ),
        (
            "NUL in a PRID",
            envelope(r#"{"preRegistrationIds":["7512430132\u00008620"]}"#),
            None,
            "PRG_DATA_SYNC_011",
        ),
        (
            "raw NUL byte",
            b"{\"id\":\"\0\"}".to_vec(),
            None,
            "PRG_CORE_REQ_015",
        ),
        (
            "number for string",
            envelope(r#"{"preRegistrationIds":[75124301328620]}"#),
            None,
            "PRG_DATA_SYNC_011",
        ),
        (
            "duplicate keys",
            {
                let mut body = envelope(&format!(r#"{{"preRegistrationIds":["{id}"]}}"#));
                body.pop();
                body.extend_from_slice(br#","id":"mosip.pre-registration.datasync.store"}"#);
                body
            },
            None,
            "PRG_CORE_REQ_015",
        ),
        (
            "unexpected content type",
            envelope(&format!(r#"{{"preRegistrationIds":["{id}"]}}"#)),
            Some("application/x-java-serialized-object"),
            "PRS_UNSUPPORTED_CONTENT_TYPE",
        ),
    ]
}

/// Each case got its error reply and a whole dead-letter copy.
fn assert_cases_answered_and_dead_lettered(cases: &[Case], got: &[Delivery], dead: &[Delivery]) {
    for (i, (name, body, _, code)) in cases.iter().enumerate() {
        let tx = format!("tx-hostile-{i}");
        let reply = got
            .iter()
            .find(|r| header_str(r, "x-transaction-id").as_deref() == Some(tx.as_str()));
        assert_eq!(reply.map(error_code).as_deref(), Some(*code), "{name}");
        let copy = dead
            .iter()
            .find(|d| header_str(d, "x-transaction-id").as_deref() == Some(tx.as_str()));
        assert_eq!(
            copy.map(|c| c.data.len()),
            Some(body.len()),
            "{name}: dead-lettered whole"
        );
    }
}

/// The overlong `message_id` is answered under that `message_id` as sent, never under the
/// body-derived ID (which may be another request's), and audited under the derived ID with its
/// hostile app ID made storable; the forged `x-death` header is dropped from the copy.
async fn assert_overlong_and_forged_handled(
    env: &TestEnv,
    valid: &[u8],
    got: &[Delivery],
    dead: &[Delivery],
) {
    let derived = derived_transaction_id(valid);
    let overlong_reply = got
        .iter()
        .find(|r| error_code(r) == "PRS_INVALID_TRANSACTION_ID")
        .expect("overlong message_id answered");
    let sent = "m".repeat(255);
    assert_eq!(
        header_str(overlong_reply, "x-transaction-id"),
        Some(sent.clone())
    );
    assert_eq!(
        overlong_reply
            .properties
            .message_id()
            .as_ref()
            .unwrap()
            .as_str(),
        format!("{}.error", &sent[..249]),
        "cut to an AMQP short string"
    );
    let forged_copy = dead
        .iter()
        .find(|d| header_str(d, "x-transaction-id").as_deref() == Some("tx-forged"))
        .unwrap();
    assert!(
        !forged_copy
            .properties
            .headers()
            .as_ref()
            .unwrap()
            .contains_key("x-death")
    );
    let audit_app: String = env
        .db()
        .await
        .query_one(
            "SELECT app_id FROM prereg.sync_audit WHERE transaction_id = $1",
            &[&derived.as_str()],
        )
        .await
        .unwrap()
        .get(0);
    assert!(
        audit_app.starts_with("rp?x"),
        "control characters made storable: {audit_app}"
    );
}
