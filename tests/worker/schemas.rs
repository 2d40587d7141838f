//! The JSON Schemas in `schemas/` (draft 2020-12) agree with the worker: the request fixtures
//! validate, requests the worker rejects for their shape fail the schema with it, and every reply
//! validates as built. Every reply an integration test receives is checked too: the support
//! crate's `Broker` checks each one it takes from a queue.

use chrono::Utc;
use prereg_sync::message::{ErrorCode, Reply, RequestValidator};
use serde_json::{Value, json};

use support::{
    ERROR_SCHEMA, REQUEST_SCHEMA, SUCCESS_SCHEMA, assert_valid, default_settings, prids,
    request_body,
};

fn validator() -> RequestValidator {
    RequestValidator::new(&default_settings().validation)
}

#[test]
fn request_fixtures_validate() {
    let ids = prids(3);
    let fixtures = [
        serde_json::from_slice(&request_body(&ids)).unwrap(),
        // docs/contract.md's example.
        json!({"id": "mosip.pre-registration.datasync.store", "version": "1.0",
               "requesttime": "2026-11-22T07:05:08.850Z",
               "request": {"preRegistrationIds": ["75124301328620", "94625367217037"]}}),
        json!({"id": "mosip.pre-registration.datasync.store", "version": "1.0",
               "requesttime": "2026-11-22T07:05:08.850Z",
               "request": {"pre_registration_ids": ids}, "metadata": {}}),
    ];
    let worker = validator();
    for fixture in fixtures {
        let body = serde_json::to_vec(&fixture).unwrap();
        assert!(
            worker
                .validate(Some("application/json"), true, &body, Some(Utc::now()))
                .is_ok(),
            "the worker accepts {fixture}"
        );
        assert_valid(&REQUEST_SCHEMA, "a request fixture", &fixture);
    }
}

/// A change to a valid request: what it makes of the request, the change, and the worker's code
/// for the result.
type ShapeRule = (&'static str, fn(&mut Value), ErrorCode);

/// Every shape rule of the contract that a schema can express.
const SHAPE_RULES: [ShapeRule; 19] = [
    (
        "an array",
        |b| *b = json!([]),
        ErrorCode::InvalidRequestBody,
    ),
    (
        "a string",
        |b| *b = json!("x"),
        ErrorCode::InvalidRequestBody,
    ),
    (
        "request not an object",
        |b| b["request"] = json!(5),
        ErrorCode::InvalidRequestBody,
    ),
    (
        "both PRID list spellings",
        |b| b["request"]["pre_registration_ids"] = json!(["75124301328620"]),
        ErrorCode::InvalidRequestBody,
    ),
    (
        "no id",
        |b| drop(b.as_object_mut().unwrap().remove("id")),
        ErrorCode::InvalidRequestId,
    ),
    (
        "another id",
        |b| b["id"] = json!("mosip.pre-registration.datasync.fetch"),
        ErrorCode::InvalidRequestId,
    ),
    (
        "id not a string",
        |b| b["id"] = json!(1),
        ErrorCode::InvalidRequestId,
    ),
    (
        "no version",
        |b| drop(b.as_object_mut().unwrap().remove("version")),
        ErrorCode::InvalidVersion,
    ),
    (
        "version 1.1",
        |b| b["version"] = json!("1.1"),
        ErrorCode::InvalidVersion,
    ),
    (
        "version a number",
        |b| b["version"] = json!(1.0),
        ErrorCode::InvalidVersion,
    ),
    (
        "no requesttime",
        |b| drop(b.as_object_mut().unwrap().remove("requesttime")),
        ErrorCode::InvalidRequestTime,
    ),
    (
        "requesttime without milliseconds",
        |b| b["requesttime"] = json!("2026-11-22T07:05:08Z"),
        ErrorCode::InvalidRequestTime,
    ),
    (
        "requesttime with an offset",
        |b| b["requesttime"] = json!("2026-11-22T07:05:08.850+01:00"),
        ErrorCode::InvalidRequestTime,
    ),
    (
        "no request",
        |b| drop(b.as_object_mut().unwrap().remove("request")),
        ErrorCode::MissingRequest,
    ),
    (
        "request null",
        |b| b["request"] = Value::Null,
        ErrorCode::MissingRequest,
    ),
    (
        "no PRID list",
        |b| b["request"] = json!({}),
        ErrorCode::InvalidPreRegistrationIds,
    ),
    (
        "an empty PRID list",
        |b| b["request"]["preRegistrationIds"] = json!([]),
        ErrorCode::InvalidPreRegistrationIds,
    ),
    (
        "a PRID not a string",
        |b| b["request"]["preRegistrationIds"] = json!([75124301328620_u64]),
        ErrorCode::InvalidPreRegistrationIds,
    ),
    (
        "more than 10,000 PRIDs",
        |b| b["request"]["preRegistrationIds"] = json!(vec!["75124301328620"; 10_001]),
        ErrorCode::InvalidPreRegistrationIds,
    ),
];

/// The worker's code and the schema's verdict side by side, for each of [`SHAPE_RULES`].
#[test]
fn requests_rejected_for_their_shape_fail_the_schema() {
    let worker = validator();
    for (what, patch, code) in SHAPE_RULES {
        let mut body = json!({"id": "mosip.pre-registration.datasync.store", "version": "1.0",
                              "requesttime": "2026-11-22T07:05:08.850Z",
                              "request": {"preRegistrationIds": ["75124301328620"]}});
        patch(&mut body);
        let bytes = serde_json::to_vec(&body).unwrap();
        assert_eq!(
            worker.validate(Some("application/json"), true, &bytes, Some(Utc::now())),
            Err(code),
            "the worker's verdict on {what}"
        );
        assert!(
            !REQUEST_SCHEMA.is_valid(&body),
            "{what} ({}) passes the schema",
            code.code()
        );
    }
}

#[test]
fn replies_as_built_validate() {
    let ids = prids(3);
    let now = Utc::now();
    let success = Reply::success("tx-1", &ids[..2], &ids[2..], now);
    assert_valid(
        &SUCCESS_SCHEMA,
        "a success reply",
        &serde_json::from_slice(&success.body).unwrap(),
    );
    // PRS_REPLY_UNDELIVERED is a dead-letter code only: no reply ever carries it.
    for code in ErrorCode::ALL
        .into_iter()
        .filter(|code| *code != ErrorCode::ReplyUndelivered)
    {
        let reply: Value = serde_json::from_slice(&Reply::error(code, now).body).unwrap();
        assert_valid(&ERROR_SCHEMA, code.code(), &reply);
        assert!(
            !SUCCESS_SCHEMA.is_valid(&reply),
            "{} passes as a success",
            code.code()
        );
    }
}
