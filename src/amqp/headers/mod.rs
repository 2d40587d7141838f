//! AMQP properties and headers of the contract: reply properties, and the properties of a
//! request republished by the worker (delayed retry, dead-letter copy, replay) or moved by the
//! operator commands (within the dead-letter queue, between queues by `upgrade-queues`).
//!
//! The header names, the size budget that bounds every republished table and the builders that
//! apply it belong together, in one file; the unit tests are in `tests.rs`.

use chrono::{DateTime, Utc};
use lapin::{
    BasicProperties,
    types::{AMQPValue, FieldTable, LongString, ShortString},
};

use crate::message::{Identity, ReplyKind, envelope::parse_request_time, format_timestamp};

/// The whole header table the worker sends stays within this, far below `frame_max`.
pub(crate) const HEADER_BUDGET: usize = 16 * 1024;
/// Longest failure message kept; longer ones end with [`TRUNCATED`].
const MAX_MESSAGE: usize = 1024;
const TRUNCATED: &str = "…[truncated]";

pub(crate) const ERROR_CODE: &str = "x-error-code";
pub(crate) const EXCEPTION_MESSAGE: &str = "x-exception-message";
pub(crate) const ORIGINAL_EXCHANGE: &str = "x-original-exchange";
pub(crate) const ORIGINAL_ROUTING_KEY: &str = "x-original-routingKey";
pub(crate) const RETRY_COUNT: &str = "retry-count";
pub(crate) const FIRST_FAILURE_TIME: &str = "x-first-failure-time";
pub(crate) const TRANSACTION_ID: &str = "x-transaction-id";
pub(crate) const REPLAY_COUNT: &str = "x-replay-count";
/// When the last replay happened; `x-first-failure-time` stays as it was.
pub(crate) const REPLAY_TIME: &str = "x-replay-time";
pub(crate) const DELIVERY_COUNT: &str = "x-delivery-count";
/// The request's `expiration`, kept as a header: a copy the worker publishes never expires.
pub(crate) const ORIGINAL_EXPIRATION: &str = "x-original-expiration";
/// The request's `user_id`, kept as a header: the broker refuses (406) a publish whose
/// `user_id` is not the publishing connection's user, so no copy carries the property.
pub(crate) const ORIGINAL_USER_ID: &str = "x-original-user-id";
/// How many incoming headers did not fit within [`HEADER_BUDGET`] and were left out.
const DROPPED_HEADERS: &str = "x-dropped-headers";
/// prereg-sync's own carry-over of the broker's `x-death` counts when `dlq` tools move a
/// message within the dead-letter queue (the broker-owned header itself is never written).
pub(crate) const DEATH_COUNT: &str = "x-death-count";

/// Headers the broker owns: read, never written, dropped on every republish.
fn is_broker_owned(key: &str) -> bool {
    key == "x-death"
        || key == DELIVERY_COUNT
        || key.starts_with("x-first-death-")
        || key.starts_with("x-last-death-")
}

/// Sender-selected distribution: the broker also routes a message to every queue these name.
/// A copy must go where the worker sends it and nowhere else, so they never travel on one.
fn is_sender_routing(key: &str) -> bool {
    key.eq_ignore_ascii_case("CC") || key.eq_ignore_ascii_case("BCC")
}

/// Headers describing a failure, removed by a replay (which keeps `x-first-failure-time`).
pub(crate) const FAILURE_HEADERS: [&str; 5] = [
    ERROR_CODE,
    EXCEPTION_MESSAGE,
    ORIGINAL_EXCHANGE,
    ORIGINAL_ROUTING_KEY,
    RETRY_COUNT,
];

/// An integer header of any AMQP integer width (brokers and clients differ).
pub fn integer(headers: Option<&FieldTable>, key: &str) -> Option<i64> {
    match headers?.inner().get(key)? {
        AMQPValue::ShortShortInt(v) => Some(i64::from(*v)),
        AMQPValue::ShortShortUInt(v) => Some(i64::from(*v)),
        AMQPValue::ShortInt(v) => Some(i64::from(*v)),
        AMQPValue::ShortUInt(v) => Some(i64::from(*v)),
        AMQPValue::LongInt(v) => Some(i64::from(*v)),
        AMQPValue::LongUInt(v) => Some(i64::from(*v)),
        AMQPValue::LongLongInt(v) => Some(*v),
        _ => None,
    }
}

/// A string header (long or short string).
pub fn string<'a>(headers: Option<&'a FieldTable>, key: &str) -> Option<&'a str> {
    match headers?.inner().get(key)? {
        AMQPValue::LongString(v) => std::str::from_utf8(v.as_bytes()).ok(),
        AMQPValue::ShortString(v) => Some(v.as_str()),
        _ => None,
    }
}

pub(crate) fn long_string(value: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(value))
}

/// Properties of a reply: `correlation_id` echoed (else the transaction ID), a deterministic
/// `message_id` so consumers can de-duplicate, persistent, typed, and the transaction header.
/// A request whose `message_id` is no transaction ID is answered under that `message_id` as
/// sent, never under the body-derived ID (which may be another request's transaction).
pub(crate) fn reply_properties(
    identity: &Identity,
    correlation_id: Option<&ShortString>,
    kind: ReplyKind,
) -> BasicProperties {
    let name = identity
        .unusable_message_id
        .as_deref()
        .unwrap_or(identity.transaction_id.as_str());
    let mut headers = FieldTable::default();
    headers.insert(TRANSACTION_ID.into(), long_string(name));
    let correlation = correlation_id.cloned().unwrap_or_else(|| name.into());
    BasicProperties::default()
        .with_correlation_id(correlation)
        .with_message_id(reply_message_id(name, kind).into())
        .with_content_type("application/json".into())
        .with_delivery_mode(2)
        .with_type(kind.as_str().into())
        .with_headers(headers)
}

/// `<name>.<kind>`, cut to the 255 bytes of an AMQP short string (an unusable `message_id` can
/// be that long already).
fn reply_message_id(name: &str, kind: ReplyKind) -> String {
    let suffix = format!(".{}", kind.as_str());
    let mut end = name.len().min(255 - suffix.len());
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}{suffix}", &name[..end])
}

/// Why a request is being republished (delayed retry or dead-letter copy).
#[derive(Debug)]
pub(crate) struct Failure<'a> {
    pub(crate) error_code: &'a str,
    pub(crate) message: &'a str,
    pub(crate) original_exchange: &'a str,
    pub(crate) original_routing_key: &'a str,
    pub(crate) retry_count: i64,
    pub(crate) transaction_id: &'a str,
    pub(crate) now: DateTime<Utc>,
}

/// The request's own properties and headers, broker-owned headers dropped, the failure headers
/// set (`x-first-failure-time` kept from an earlier failure when it is a contract timestamp),
/// and the whole table within [`HEADER_BUDGET`]: publisher headers that do not fit are dropped
/// and counted in `x-dropped-headers`.
pub(crate) fn failure_properties(
    original: &BasicProperties,
    failure: &Failure<'_>,
) -> BasicProperties {
    let old = original.headers().as_ref();
    // Copied from the incoming message, so it is only kept when it has the contract's shape: a
    // hostile 100 KiB value must not ride along on every copy.
    let first_failure = string(old, FIRST_FAILURE_TIME)
        .filter(|kept| parse_request_time(kept).is_some())
        .map(str::to_owned)
        .unwrap_or_else(|| format_timestamp(failure.now));
    let mut ours = FieldTable::default();
    ours.insert(ERROR_CODE.into(), long_string(failure.error_code));
    ours.insert(
        EXCEPTION_MESSAGE.into(),
        long_string(&truncate(failure.message, MAX_MESSAGE)),
    );
    ours.insert(
        ORIGINAL_EXCHANGE.into(),
        long_string(failure.original_exchange),
    );
    ours.insert(
        ORIGINAL_ROUTING_KEY.into(),
        long_string(failure.original_routing_key),
    );
    ours.insert(
        RETRY_COUNT.into(),
        AMQPValue::LongLongInt(failure.retry_count),
    );
    ours.insert(FIRST_FAILURE_TIME.into(), long_string(&first_failure));
    ours.insert(TRANSACTION_ID.into(), long_string(failure.transaction_id));
    republished(original, ours, is_broker_owned)
}

/// The request's properties for a replay: failure and broker headers removed (but for
/// `x-first-failure-time`, so that a request failing again still shows when it first failed),
/// the replay counter incremented and the replay's time set.
pub(crate) fn replay_properties(original: &BasicProperties, now: DateTime<Utc>) -> BasicProperties {
    let old = original.headers().as_ref();
    let replays = integer(old, REPLAY_COUNT).unwrap_or(0) + 1;
    let mut ours = FieldTable::default();
    ours.insert(REPLAY_COUNT.into(), AMQPValue::LongLongInt(replays));
    ours.insert(REPLAY_TIME.into(), long_string(&format_timestamp(now)));
    republished(original, ours, |key| {
        is_broker_owned(key)
            || FAILURE_HEADERS.contains(&key)
            || key == DROPPED_HEADERS
            || key == DEATH_COUNT
    })
}

/// The properties of a message moved to another place in a queue or to another queue (the
/// `dlq` tools keeping a message at the DLQ's tail, `upgrade-queues`): the broker-owned headers
/// dropped, their death count carried over in [`DEATH_COUNT`], and otherwise treated as every
/// copy (see `republished`): persistent, no `expiration`, `user_id`, `CC` or `BCC`, and the
/// header table within [`HEADER_BUDGET`], so a message moved with more headers than that loses
/// those past it (counted in `x-dropped-headers`).
pub(crate) fn moved_properties(original: &BasicProperties) -> BasicProperties {
    let old = original.headers().as_ref();
    let mut ours = FieldTable::default();
    let deaths = integer(old, DEATH_COUNT).unwrap_or(0) + x_death_total(old);
    if deaths > 0 {
        ours.insert(DEATH_COUNT.into(), AMQPValue::LongLongInt(deaths));
    }
    republished(original, ours, is_broker_owned)
}

/// Every copy the worker publishes (retry, dead-letter copy, replay, a move within or between
/// queues): the original properties, made persistent whatever the publisher asked (a transient
/// copy would not survive a broker restart), without `expiration` (a dead letter must not expire
/// in a queue that has nowhere to dead-letter it; the value is kept in
/// [`ORIGINAL_EXPIRATION`]), without `user_id` (kept in [`ORIGINAL_USER_ID`]) and without
/// `CC`/`BCC`, with `ours` merged over the original headers within the budget.
fn republished(
    original: &BasicProperties,
    mut ours: FieldTable,
    drop: impl Fn(&str) -> bool,
) -> BasicProperties {
    if let Some(expiration) = original.expiration() {
        ours.insert(ORIGINAL_EXPIRATION.into(), long_string(expiration.as_str()));
    }
    if let Some(user_id) = original.user_id() {
        ours.insert(ORIGINAL_USER_ID.into(), long_string(user_id.as_str()));
    }
    let headers = merge_within_budget(original.headers().as_ref(), ours, |key| {
        is_sender_routing(key) || drop(key)
    });
    // lapin can set a property but not unset one: rebuild from everything but `expiration` and
    // `user_id`.
    let mut copy = BasicProperties::default()
        .with_delivery_mode(2)
        .with_headers(headers);
    let o = original;
    let short = [
        (
            o.content_type(),
            BasicProperties::with_content_type as fn(_, _) -> _,
        ),
        (o.content_encoding(), BasicProperties::with_content_encoding),
        (o.correlation_id(), BasicProperties::with_correlation_id),
        (o.reply_to(), BasicProperties::with_reply_to),
        (o.message_id(), BasicProperties::with_message_id),
        (o.kind(), BasicProperties::with_type),
        (o.app_id(), BasicProperties::with_app_id),
        (o.cluster_id(), BasicProperties::with_cluster_id),
    ];
    for (value, set) in short {
        if let Some(value) = value {
            copy = set(copy, value.clone());
        }
    }
    if let Some(priority) = o.priority() {
        copy = copy.with_priority(*priority);
    }
    if let Some(timestamp) = o.timestamp() {
        copy = copy.with_timestamp(*timestamp);
    }
    copy
}

/// Sum of the `count` fields of the broker's `x-death` entries.
pub(crate) fn x_death_total(headers: Option<&FieldTable>) -> i64 {
    let Some(AMQPValue::FieldArray(deaths)) = headers.and_then(|h| h.inner().get("x-death")) else {
        return 0;
    };
    deaths
        .as_slice()
        .iter()
        .filter_map(|death| match death {
            AMQPValue::FieldTable(table) => integer(Some(table), "count"),
            _ => None,
        })
        .sum()
}

/// The reason of the newest `x-death` entry (`rejected`, `expired`, `maxlen`,
/// `delivery_limit`): why the broker dead-lettered a message the worker did not.
pub(crate) fn x_death_reason(headers: Option<&FieldTable>) -> Option<&str> {
    let Some(AMQPValue::FieldArray(deaths)) = headers.and_then(|h| h.inner().get("x-death")) else {
        return None;
    };
    match deaths.as_slice().first()? {
        AMQPValue::FieldTable(table) => string(Some(table), "reason"),
        _ => None,
    }
}

fn merge_within_budget(
    old: Option<&FieldTable>,
    mut ours: FieldTable,
    drop: impl Fn(&str) -> bool,
) -> FieldTable {
    let mut used = table_size(&ours) + 64; // room for x-dropped-headers
    let mut dropped = 0i64;
    for (key, value) in old.into_iter().flatten() {
        if drop(key.as_str()) || ours.contains_key(key.as_str()) {
            continue;
        }
        let size = entry_size(key, value);
        if used + size > HEADER_BUDGET {
            dropped += 1;
            continue;
        }
        used += size;
        ours.insert(key.clone(), value.clone());
    }
    if dropped > 0 {
        ours.insert(DROPPED_HEADERS.into(), AMQPValue::LongLongInt(dropped));
    }
    ours
}

fn truncate(message: &str, max: usize) -> String {
    if message.len() <= max {
        return message.to_owned();
    }
    let mut end = max - TRUNCATED.len();
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}{TRUNCATED}", &message[..end])
}

fn table_size(table: &FieldTable) -> usize {
    table.into_iter().map(|(k, v)| entry_size(k, v)).sum()
}

/// Tables and arrays nested deeper than this are not copied (their size is not even measured:
/// a hostile message can nest thousands deep, and measuring recurses).
const MAX_NESTING: usize = 8;

/// Encoded size of one field-table entry (AMQP 0-9-1 wire format), an upper bound; over the
/// budget for a value nested deeper than [`MAX_NESTING`].
fn entry_size(key: &ShortString, value: &AMQPValue) -> usize {
    1 + key.as_str().len() + value_size(value, 0)
}

fn value_size(value: &AMQPValue, depth: usize) -> usize {
    if depth > MAX_NESTING {
        return HEADER_BUDGET + 1;
    }
    let nested = |values: &mut dyn Iterator<Item = &AMQPValue>| {
        values
            .map(|v| value_size(v, depth + 1))
            .fold(0usize, usize::saturating_add)
    };
    1 + match value {
        AMQPValue::LongString(v) => 4 + v.as_bytes().len(),
        AMQPValue::ShortString(v) => 1 + v.as_str().len(),
        AMQPValue::FieldTable(t) => {
            let keys: usize = t.into_iter().map(|(k, _)| 1 + k.as_str().len()).sum();
            4 + keys.saturating_add(nested(&mut t.into_iter().map(|(_, v)| v)))
        }
        AMQPValue::FieldArray(a) => 4 + nested(&mut a.as_slice().iter()),
        AMQPValue::ByteArray(b) => 4 + b.as_slice().len(),
        _ => 8,
    }
}

#[cfg(test)]
mod tests;
