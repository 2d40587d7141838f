use super::*;

fn failure(message: &str) -> Failure<'_> {
    Failure {
        error_code: "PRG_PAM_CORE_001",
        message,
        original_exchange: "prereg.reverse-sync",
        original_routing_key: "consumed-prereg-ids",
        retry_count: 2,
        transaction_id: "tx-1",
        now: "2026-11-22T07:05:09.002Z".parse().unwrap(),
    }
}

fn with_headers(entries: &[(&str, AMQPValue)]) -> BasicProperties {
    let mut table = FieldTable::default();
    for (k, v) in entries {
        table.insert((*k).into(), v.clone());
    }
    BasicProperties::default()
        .with_headers(table)
        .with_message_id("tx-1".into())
}

#[test]
fn failure_headers_are_set_and_broker_headers_dropped() {
    let original = with_headers(&[
        ("x-death", AMQPValue::LongString("d".into())),
        ("x-first-death-queue", long_string("q")),
        ("x-delivery-count", AMQPValue::LongLongInt(3)),
        ("custom", long_string("kept")),
    ]);
    let props = failure_properties(&original, &failure("boom"));
    let headers = props.headers().as_ref();
    assert_eq!(string(headers, ERROR_CODE), Some("PRG_PAM_CORE_001"));
    assert_eq!(integer(headers, RETRY_COUNT), Some(2));
    assert_eq!(
        string(headers, FIRST_FAILURE_TIME),
        Some("2026-11-22T07:05:09.002Z")
    );
    assert_eq!(string(headers, "custom"), Some("kept"));
    assert!(!headers.unwrap().contains_key("x-death"));
    assert!(!headers.unwrap().contains_key("x-first-death-queue"));
    assert!(!headers.unwrap().contains_key("x-delivery-count"));
    assert_eq!(
        props.message_id().as_ref().map(|m| m.as_str()),
        Some("tx-1")
    );
}

#[test]
fn first_failure_time_survives_later_failures() {
    let original = with_headers(&[(FIRST_FAILURE_TIME, long_string("2020-01-01T00:00:00.000Z"))]);
    let props = failure_properties(&original, &failure("again"));
    assert_eq!(
        string(props.headers().as_ref(), FIRST_FAILURE_TIME),
        Some("2020-01-01T00:00:00.000Z")
    );
}

#[test]
fn header_table_stays_within_budget() {
    let big = "x".repeat(6000);
    let original = with_headers(&[
        ("a", long_string(&big)),
        ("b", long_string(&big)),
        ("c", long_string(&big)),
    ]);
    let props = failure_properties(&original, &failure(&"m".repeat(50_000)));
    let headers = props.headers().as_ref().unwrap();
    assert!(table_size(headers) <= HEADER_BUDGET);
    assert_eq!(integer(Some(headers), "x-dropped-headers"), Some(1));
    assert!(
        string(Some(headers), EXCEPTION_MESSAGE)
            .unwrap()
            .ends_with(TRUNCATED)
    );
}

#[test]
fn every_copy_is_persistent_never_expires_and_goes_nowhere_else() {
    let original = with_headers(&[
        ("custom", long_string("kept")),
        (
            "CC",
            AMQPValue::FieldArray(vec![long_string("victim")].into()),
        ),
        (
            "BCC",
            AMQPValue::FieldArray(vec![long_string("victim")].into()),
        ),
    ])
    .with_delivery_mode(1)
    .with_expiration("60000".into())
    .with_user_id("rp-user".into())
    .with_app_id("rp-1".into())
    .with_priority(3);
    let copies = [
        failure_properties(&original, &failure("boom")),
        replay_properties(&original, Utc::now()),
        moved_properties(&original),
    ];
    for copy in copies {
        assert_eq!(copy.delivery_mode(), &Some(2));
        assert_eq!(copy.expiration(), &None);
        assert_eq!(copy.user_id(), &None);
        let headers = copy.headers().as_ref();
        assert!(!headers.unwrap().contains_key("CC") && !headers.unwrap().contains_key("BCC"));
        assert_eq!(string(headers, ORIGINAL_USER_ID), Some("rp-user"));
        assert_eq!(string(headers, ORIGINAL_EXPIRATION), Some("60000"));
        assert_eq!(string(headers, "custom"), Some("kept"));
        assert_eq!(copy.app_id().as_ref().unwrap().as_str(), "rp-1");
        assert_eq!(copy.priority(), &Some(3));
        assert_eq!(copy.message_id().as_ref().unwrap().as_str(), "tx-1");
    }
}

#[test]
fn a_first_failure_time_not_in_the_contract_format_is_replaced() {
    let hostile = "9".repeat(100 * 1024);
    let original = with_headers(&[(FIRST_FAILURE_TIME, long_string(&hostile))]);
    let props = failure_properties(&original, &failure("boom"));
    let headers = props.headers().as_ref().unwrap();
    assert_eq!(
        string(Some(headers), FIRST_FAILURE_TIME),
        Some("2026-11-22T07:05:09.002Z")
    );
    assert!(table_size(headers) <= HEADER_BUDGET);
}

#[test]
fn deeply_nested_and_numerous_headers_stay_within_budget() {
    let mut deep = AMQPValue::LongString("leaf".into());
    for level in 0..500 {
        deep = if level % 2 == 0 {
            AMQPValue::FieldArray(vec![deep].into())
        } else {
            let mut table = FieldTable::default();
            table.insert("n".into(), deep);
            AMQPValue::FieldTable(table)
        };
    }
    let mut entries: Vec<(String, AMQPValue)> = (0..5_000)
        .map(|i| (format!("h{i}"), AMQPValue::LongLongInt(i)))
        .collect();
    entries.push(("deep".into(), deep));
    let refs: Vec<(&str, AMQPValue)> = entries
        .iter()
        .map(|(k, v)| (k.as_str(), v.clone()))
        .collect();
    let props = failure_properties(&with_headers(&refs), &failure("boom"));
    let headers = props.headers().as_ref().unwrap();
    assert!(table_size(headers) <= HEADER_BUDGET);
    assert!(!headers.contains_key("deep"));
    assert!(integer(Some(headers), DROPPED_HEADERS).unwrap() > 0);
}

#[test]
fn replay_strips_failure_headers_and_counts() {
    let failed = failure_properties(&with_headers(&[]), &failure("boom"));
    let first_failure = string(failed.headers().as_ref(), FIRST_FAILURE_TIME).map(str::to_owned);
    let replayed = replay_properties(&replay_properties(&failed, Utc::now()), Utc::now());
    let headers = replayed.headers().as_ref();
    assert_eq!(integer(headers, REPLAY_COUNT), Some(2));
    for key in FAILURE_HEADERS {
        assert!(!headers.unwrap().contains_key(key), "{key}");
    }
    assert_eq!(
        string(headers, FIRST_FAILURE_TIME).map(str::to_owned),
        first_failure
    );
    assert!(string(headers, REPLAY_TIME).is_some());
    assert_eq!(string(headers, TRANSACTION_ID), Some("tx-1"));
}

#[test]
fn moving_within_the_dlq_carries_the_death_count_not_x_death() {
    let mut death = FieldTable::default();
    death.insert("count".into(), AMQPValue::LongLongInt(3));
    death.insert("reason".into(), long_string("delivery_limit"));
    let deaths = AMQPValue::FieldArray(vec![AMQPValue::FieldTable(death)].into());
    let original = with_headers(&[("x-death", deaths), ("custom", long_string("kept"))]);
    assert_eq!(
        x_death_reason(original.headers().as_ref()),
        Some("delivery_limit")
    );
    let moved = moved_properties(&original);
    let headers = moved.headers().as_ref();
    assert!(!headers.unwrap().contains_key("x-death"));
    assert_eq!(integer(headers, DEATH_COUNT), Some(3));
    assert_eq!(
        integer(moved_properties(&moved).headers().as_ref(), DEATH_COUNT),
        Some(3)
    );
    assert_eq!(string(headers, "custom"), Some("kept"));
}

#[test]
fn reply_properties_follow_the_contract() {
    let props = reply_properties(&Identity::of(Some("tx-9"), b"{}"), None, ReplyKind::Error);
    assert_eq!(props.correlation_id().as_ref().unwrap().as_str(), "tx-9");
    assert_eq!(props.message_id().as_ref().unwrap().as_str(), "tx-9.error");
    assert_eq!(props.kind().as_ref().unwrap().as_str(), "error");
    assert_eq!(props.delivery_mode(), &Some(2));
    assert_eq!(
        string(props.headers().as_ref(), TRANSACTION_ID),
        Some("tx-9")
    );
}

#[test]
fn a_reply_to_an_unusable_message_id_is_named_by_it() {
    let sent = "x".repeat(250);
    let identity = Identity::of(Some(&sent), b"{}");
    let props = reply_properties(&identity, None, ReplyKind::Error);
    assert_eq!(
        string(props.headers().as_ref(), TRANSACTION_ID),
        Some(sent.as_str())
    );
    assert_eq!(props.correlation_id().as_ref().unwrap().as_str(), sent);
    let message_id = props.message_id().as_ref().unwrap().as_str();
    assert_eq!(message_id.len(), 255);
    assert!(message_id.ends_with("xxx.error"));
}
