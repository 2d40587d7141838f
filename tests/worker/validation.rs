//! Every validation rule yields its code in an error reply and a dead-letter copy
//! with the contract's headers, and nothing reaches the PRID tables.

use std::time::Duration;

use lapin::{BasicProperties, message::Delivery};
use prereg_sync::message::format_timestamp;

use support::*;

fn envelope(id: &str, version: &str, requesttime: &str, request: &str) -> Vec<u8> {
    format!(r#"{{"id":{id},"version":{version},"requesttime":{requesttime},"request":{request}}}"#)
        .into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_rule_has_its_code_reply_and_dead_letter() {
    let mut env = TestEnv::with_vars(&[
        ("PREREG_SYNC__VALIDATION__MAX_REQUEST_AGE", "1h"),
        ("PREREG_SYNC__VALIDATION__MAX_BODY_BYTES", "4096"),
    ]);
    env.spawn_app().await;
    let ids = prids(1);
    env.seed_applications(&ids).await;
    let broker = env.broker().await;
    let replies = broker.reply_queue("rp.replies").await;

    let cases = one_case_per_rule(&ids[0]);
    for (_, content_type, message_id, body) in &cases {
        let mut props = BasicProperties::default()
            .with_message_id(message_id.as_str().into())
            .with_reply_to(replies.as_str().into())
            .with_app_id("rp-test".into());
        if let Some(ct) = content_type {
            props = props.with_content_type((*ct).into());
        }
        broker.publish(body, props).await;
    }
    let got = broker
        .get_n(&replies, cases.len(), Duration::from_secs(30))
        .await;
    let dead = broker
        .get_n(DLQ, cases.len(), Duration::from_secs(30))
        .await;
    for case in &cases {
        assert_rejected(case, &got, &dead);
    }
    for table in [
        "processed_prereg_list",
        "intf_processed_prereg_list",
        "sync_transaction",
    ] {
        assert_eq!(
            env.count(&format!("SELECT count(*) FROM prereg.{table}"))
                .await,
            0,
            "{table} untouched"
        );
    }
    let rejected = env
        .count("SELECT count(*) FROM prereg.sync_audit WHERE event = 'REJECTED' AND outcome = 'FAILURE' AND error_code IS NOT NULL")
        .await;
    assert_eq!(rejected, cases.len() as i64);
    env.stop_app().await;
}

/// A request that breaks one rule: the error code it must get, its content type, its
/// `message_id` and its body.
type Case = (&'static str, Option<&'static str>, String, Vec<u8>);

/// One request per validation rule, each otherwise valid (`prid` a known PRID).
fn one_case_per_rule(prid: &str) -> Vec<Case> {
    let now = format!("\"{}\"", format_timestamp(chrono::Utc::now()));
    let id = "\"mosip.pre-registration.datasync.store\"";
    let ok_request = format!(r#"{{"preRegistrationIds":["{prid}"]}}"#);
    let valid = envelope(id, "\"1.0\"", &now, &ok_request);
    let json = Some("application/json");
    vec![
        (
            "PRS_UNSUPPORTED_CONTENT_TYPE",
            Some("text/plain"),
            "v-ct".into(),
            valid.clone(),
        ),
        (
            "PRS_INVALID_TRANSACTION_ID",
            json,
            "x".repeat(37),
            valid.clone(),
        ),
        (
            "PRG_CORE_REQ_015",
            json,
            "v-json".into(),
            b"{not json".to_vec(),
        ),
        (
            "PRG_CORE_REQ_015",
            json,
            "v-big".into(),
            format!(r#"{{"pad":"{}"}}"#, "x".repeat(5000)).into_bytes(),
        ),
        (
            "PRG_PAM_CORE_001",
            json,
            "v-id".into(),
            envelope("\"other\"", "\"1.0\"", &now, &ok_request),
        ),
        (
            "PRG_PAM_CORE_002",
            json,
            "v-ver".into(),
            envelope(id, "\"2.0\"", &now, &ok_request),
        ),
        (
            "PRG_PAM_CORE_003",
            json,
            "v-time".into(),
            envelope(id, "\"1.0\"", "\"2026-11-22 07:05:08\"", &ok_request),
        ),
        (
            "PRG_PAM_CORE_004",
            json,
            "v-req".into(),
            envelope(id, "\"1.0\"", &now, "null"),
        ),
        (
            "PRG_DATA_SYNC_011",
            json,
            "v-ids".into(),
            envelope(id, "\"1.0\"", &now, r#"{"preRegistrationIds":[]}"#),
        ),
        (
            "PRG_CORE_REQ_013",
            json,
            "v-age".into(),
            envelope(id, "\"1.0\"", "\"2020-01-01T00:00:00.000Z\"", &ok_request),
        ),
    ]
}

/// `case`'s error reply (in `got`) and dead-letter copy (in `dead`), as the contract says.
fn assert_rejected((code, _, message_id, body): &Case, got: &[Delivery], dead: &[Delivery]) {
    // An unusable message_id: the copy goes by the body-derived ID, the reply by the
    // message_id as sent.
    let tx = if message_id.len() > 36 {
        derived_transaction_id(body)
    } else {
        message_id.clone()
    };
    let reply_message_id = format!("{message_id}.error");
    let reply = got
        .iter()
        .find(|r| r.properties.message_id().as_ref().map(|m| m.as_str()) == Some(&reply_message_id))
        .unwrap_or_else(|| panic!("reply for {code}"));
    assert_eq!(error_code(reply), *code, "reply code for {message_id}");
    assert_eq!(reply.properties.kind().as_ref().unwrap().as_str(), "error");
    let body_json = json(reply);
    assert!(body_json["response"].is_null());
    assert_eq!(body_json["errors"].as_array().unwrap().len(), 1);

    let copy = dead
        .iter()
        .find(|d| header_str(d, "x-transaction-id").as_deref() == Some(tx.as_str()))
        .unwrap_or_else(|| panic!("dead-letter copy for {code}"));
    assert_eq!(&copy.data, body, "original body kept");
    assert_eq!(header_str(copy, "x-error-code").as_deref(), Some(*code));
    assert!(header_str(copy, "x-exception-message").is_some_and(|m| !m.is_empty()));
    assert_eq!(
        header_str(copy, "x-original-exchange").as_deref(),
        Some(EXCHANGE)
    );
    assert_eq!(
        header_str(copy, "x-original-routingKey").as_deref(),
        Some(ROUTING_KEY)
    );
    assert_eq!(header_int(copy, "retry-count"), Some(0));
    let first = header_str(copy, "x-first-failure-time").unwrap();
    assert!(
        prereg_sync::message::envelope::parse_request_time(&first).is_some(),
        "{first}"
    );
    assert_eq!(
        copy.properties.message_id().as_ref().unwrap().as_str(),
        message_id.as_str()
    );
    assert!(
        !copy
            .properties
            .headers()
            .as_ref()
            .unwrap()
            .contains_key("x-death")
    );
}
