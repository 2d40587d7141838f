//! Header values as people and `jq` read them. lapin serialises a header table losslessly but
//! unreadably (`"x-error-code": {"LongString": [80, 82, 71, …]}`); here a string is a string, a
//! number a number, a table an object. Bytes that are not text stay recoverable as base64.

use base64::{Engine, engine::general_purpose::STANDARD};
use lapin::types::{AMQPValue, FieldTable};
use serde_json::{Value, json};

/// A header table as a JSON object.
pub(crate) fn headers(table: &FieldTable) -> Value {
    Value::Object(
        table
            .inner()
            .iter()
            .map(|(key, field)| (key.to_string(), value(field)))
            .collect(),
    )
}

/// Message properties as lapin serialises them, with their `headers` made readable.
pub(crate) fn readable_properties(mut properties: Value) -> Value {
    let table = properties
        .get_mut("headers")
        .map(Value::take)
        .and_then(|raw| {
            serde_json::from_value::<Option<FieldTable>>(raw)
                .ok()
                .flatten()
        });
    if let Some(table) = table {
        properties["headers"] = headers(&table);
    }
    properties
}

fn value(field: &AMQPValue) -> Value {
    match field {
        AMQPValue::Boolean(b) => json!(b),
        AMQPValue::ShortShortInt(n) => json!(n),
        AMQPValue::ShortShortUInt(n) => json!(n),
        AMQPValue::ShortInt(n) => json!(n),
        AMQPValue::ShortUInt(n) => json!(n),
        AMQPValue::LongInt(n) => json!(n),
        AMQPValue::LongUInt(n) => json!(n),
        AMQPValue::LongLongInt(n) => json!(n),
        AMQPValue::Timestamp(n) => json!(n),
        AMQPValue::Float(x) => json!(x),
        AMQPValue::Double(x) => json!(x),
        AMQPValue::DecimalValue(d) => json!(f64::from(d.value) / 10f64.powi(d.scale.into())),
        AMQPValue::ShortString(s) => json!(s.as_str()),
        AMQPValue::LongString(s) => text_or_base64(s.as_bytes()),
        AMQPValue::ByteArray(b) => text_or_base64(b.as_slice()),
        AMQPValue::FieldArray(items) => Value::Array(items.as_slice().iter().map(value).collect()),
        AMQPValue::FieldTable(table) => headers(table),
        AMQPValue::Void => Value::Null,
    }
}

fn text_or_base64(bytes: &[u8]) -> Value {
    match std::str::from_utf8(bytes) {
        Ok(text) => json!(text),
        Err(_) => json!({ "base64": STANDARD.encode(bytes) }),
    }
}

#[cfg(test)]
mod tests {
    use lapin::types::{FieldArray, LongString, ShortString};

    use super::*;

    #[test]
    fn strings_are_strings_and_tables_nest() {
        let mut death = FieldTable::default();
        death.insert(
            ShortString::from("reason"),
            AMQPValue::LongString("rejected".into()),
        );
        death.insert(ShortString::from("count"), AMQPValue::LongLongInt(2));
        let mut table = FieldTable::default();
        table.insert(
            ShortString::from("x-error-code"),
            AMQPValue::LongString(LongString::from("PRG_DATA_SYNC_011")),
        );
        table.insert(
            ShortString::from("x-death"),
            AMQPValue::FieldArray(FieldArray::from(vec![AMQPValue::FieldTable(death)])),
        );
        table.insert(
            ShortString::from("raw"),
            AMQPValue::LongString(LongString::from(vec![0xff, 0x00])),
        );
        assert_eq!(
            headers(&table),
            json!({
                "x-error-code": "PRG_DATA_SYNC_011",
                "x-death": [{"reason": "rejected", "count": 2}],
                "raw": {"base64": "/wA="},
            })
        );
    }

    #[test]
    fn serialised_properties_get_readable_headers() {
        let mut table = FieldTable::default();
        table.insert(ShortString::from("x-retry-count"), AMQPValue::LongInt(3));
        table.insert(
            ShortString::from("x-error-code"),
            AMQPValue::LongString("E".into()),
        );
        let properties = lapin::BasicProperties::default()
            .with_message_id("tx-1".into())
            .with_headers(table);
        let readable = readable_properties(serde_json::to_value(&properties).unwrap());
        assert_eq!(
            readable["headers"],
            json!({"x-retry-count": 3, "x-error-code": "E"})
        );
        assert_eq!(readable["message_id"], "tx-1");
    }
}
