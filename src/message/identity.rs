//! Who a request is and who sent it, as every part that names a request (the processor, the
//! worker, the dead-letter tools) must agree on it.

use super::{TransactionId, body_sha256_hex};

/// Who a request is: its transaction ID, the publisher's `message_id` when it was no usable
/// transaction ID, and the body hash that tells a duplicate from a conflict.
#[derive(Debug, Clone)]
pub struct Identity {
    pub transaction_id: TransactionId,
    /// The `message_id` as sent, when it is not a valid transaction ID (too long, not
    /// printable): the request's reply is named by it, never by the derived ID, which may be
    /// another request's.
    pub unusable_message_id: Option<String>,
    pub(crate) body_sha256: String,
}

impl Identity {
    /// The `message_id` when it is a valid transaction ID; otherwise (absent or invalid) the
    /// ID derived from the body, so even an invalid request's reply and dead-letter copy carry
    /// a stable, storable ID.
    pub fn of(message_id: Option<&str>, body: &[u8]) -> Identity {
        let body_sha256 = body_sha256_hex(body);
        let parsed = message_id.map(|id| (id, TransactionId::parse(id)));
        let unusable_message_id = match parsed {
            Some((id, None)) => Some(id.to_owned()),
            _ => None,
        };
        let transaction_id = parsed
            .and_then(|(_, parsed)| parsed)
            .unwrap_or_else(|| TransactionId::derived(&body_sha256));
        Identity {
            transaction_id,
            unusable_message_id,
            body_sha256,
        }
    }

    /// Whether the `message_id` was absent or a valid transaction ID.
    pub fn message_id_ok(&self) -> bool {
        self.unusable_message_id.is_none()
    }
}

/// The `app_id` property as the audit trail stores it: `unknown` when absent or empty, control
/// characters (which PostgreSQL text cannot hold, in the case of NUL) replaced by `?`. AMQP
/// short strings are at most 255 bytes, within the 256 of the column.
pub fn registration_processor_id(app_id: Option<&str>) -> String {
    match app_id {
        None | Some("") => "unknown".to_owned(),
        Some(id) => id
            .chars()
            .map(|c| if c.is_control() { '?' } else { c })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn app_id_is_made_storable() {
        assert_eq!(registration_processor_id(None), "unknown");
        assert_eq!(registration_processor_id(Some("")), "unknown");
        assert_eq!(registration_processor_id(Some("rp-1")), "rp-1");
        assert_eq!(registration_processor_id(Some("a\0b\nc")), "a?b?c");
    }

    #[test]
    fn identity_uses_a_valid_message_id() {
        let id = Identity::of(Some("tx-1"), b"{}");
        assert_eq!(id.transaction_id.as_str(), "tx-1");
        assert!(id.message_id_ok());
    }

    #[test]
    fn identity_derives_from_the_body_when_absent_or_invalid() {
        let absent = Identity::of(None, b"{}");
        assert!(absent.message_id_ok());
        let invalid = Identity::of(Some(&"x".repeat(40)), b"{}");
        assert_eq!(invalid.unusable_message_id, Some("x".repeat(40)));
        assert_eq!(absent.transaction_id, invalid.transaction_id);
    }
}
