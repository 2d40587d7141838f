//! What the worker sent: a reply's JSON, error code and headers; the replies of a stream by
//! transaction; and the JSON Schemas of `schemas/` (draft 2020-12) that every reply a test
//! receives must match (`tests/worker/schemas.rs` checks them against the worker).

use std::{collections::HashMap, sync::LazyLock};

use jsonschema::Validator;
use lapin::message::Delivery;

use crate::env::repo_dir;

pub fn json(delivery: &Delivery) -> serde_json::Value {
    serde_json::from_slice(&delivery.data).expect("reply is JSON")
}

/// The first error code of a reply's body; empty for a success reply.
pub fn error_code(delivery: &Delivery) -> String {
    json(delivery)["errors"][0]["errorCode"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

pub fn header_str(delivery: &Delivery, key: &str) -> Option<String> {
    prereg_sync::amqp::headers::string(delivery.properties.headers().as_ref(), key)
        .map(str::to_owned)
}

pub fn header_int(delivery: &Delivery, key: &str) -> Option<i64> {
    prereg_sync::amqp::headers::integer(delivery.properties.headers().as_ref(), key)
}

/// Reply bodies by transaction ID (header `x-transaction-id`), in arrival order.
pub type Answers = HashMap<String, Vec<Vec<u8>>>;

/// Files `reply`'s body under its transaction ID.
pub fn record_answer(answers: &mut Answers, reply: &Delivery) {
    answers
        .entry(header_str(reply, "x-transaction-id").expect("x-transaction-id header"))
        .or_default()
        .push(reply.data.clone());
}

/// `replies` filed by transaction ID.
pub fn by_transaction<'a>(replies: impl IntoIterator<Item = &'a Delivery>) -> Answers {
    let mut answers = Answers::new();
    for reply in replies {
        record_answer(&mut answers, reply);
    }
    answers
}

/// Whether every transaction's replies are byte-identical (a repeated answer is the stored
/// reply).
pub fn all_identical(answers: &Answers) -> bool {
    answers.values().all(|r| r.iter().all(|b| *b == r[0]))
}

fn load_schema(name: &str) -> Validator {
    let path = repo_dir().join("schemas").join(name);
    let schema: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap())
        .unwrap_or_else(|err| panic!("{}: {err}", path.display()));
    jsonschema::draft202012::new(&schema).unwrap_or_else(|err| panic!("{name}: {err}"))
}

pub static REQUEST_SCHEMA: LazyLock<Validator> = LazyLock::new(|| load_schema("request.json"));
pub static SUCCESS_SCHEMA: LazyLock<Validator> =
    LazyLock::new(|| load_schema("reply-success.json"));
pub static ERROR_SCHEMA: LazyLock<Validator> = LazyLock::new(|| load_schema("reply-error.json"));
/// The HTTP ingress's own answers (QUEUED, its errors).
pub static INGRESS_SCHEMA: LazyLock<Validator> =
    LazyLock::new(|| load_schema("ingress-answer.json"));

pub fn assert_valid(validator: &Validator, what: &str, instance: &serde_json::Value) {
    let errors: Vec<String> = validator
        .iter_errors(instance)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(errors.is_empty(), "{what} fails its schema: {errors:?}");
}

/// A message of AMQP `type` `kind` taken from a queue: a reply (`ack` or `error`) validates
/// against its schema, as `what` (`ingress`: an answer the HTTP ingress gives itself); anything else (a dead-letter copy, a request) is not a reply
/// and passes through. For clients other than lapin; lapin's deliveries: [`check_reply`].
pub fn check_reply_body(kind: Option<&str>, body: &[u8], what: &str) {
    let validator = match kind {
        Some("ack") => &*SUCCESS_SCHEMA,
        Some("error") => &*ERROR_SCHEMA,
        Some("ingress") => &*INGRESS_SCHEMA,
        _ => return,
    };
    let body: serde_json::Value = serde_json::from_slice(body).expect("a reply is JSON");
    assert_valid(validator, what, &body);
}

/// [`check_reply_body`] of a delivery taken by the test's [`Broker`](crate::Broker).
pub(crate) fn check_reply(delivery: &Delivery) {
    let kind = delivery.properties.kind().as_ref().map(|k| k.as_str());
    check_reply_body(kind, &delivery.data, "a received reply");
}
