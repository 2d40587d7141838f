//! The transaction ID: the idempotency key of a request.

use sha2::{Digest, Sha256};
use uuid::Uuid;

/// `prereg_trn_id` is varchar(36), so that is the longest ID that can be stored.
const MAX_LEN: usize = 36;

/// A transaction ID, valid by construction: 1 to 36 printable ASCII characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TransactionId(String);

impl TransactionId {
    /// Validates a publisher-supplied `message_id`.
    pub(crate) fn parse(raw: &str) -> Option<TransactionId> {
        let printable = raw.bytes().all(|b| (0x20..=0x7e).contains(&b));
        (!raw.is_empty() && raw.len() <= MAX_LEN && printable)
            .then(|| TransactionId(raw.to_owned()))
    }

    /// The ID of a request without `message_id`: UUID v5 (OID namespace) of the body's SHA-256
    /// in lowercase hex, so every redelivery of the same body maps to the same transaction.
    pub fn derived(body_sha256_hex: &str) -> TransactionId {
        TransactionId(Uuid::new_v5(&Uuid::NAMESPACE_OID, body_sha256_hex.as_bytes()).to_string())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for TransactionId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Lowercase hex SHA-256 of the raw body: the duplicate-vs-conflict test and the derived ID.
pub fn body_sha256_hex(body: &[u8]) -> String {
    hex::encode(Sha256::digest(body))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn accepts_printable_ascii_up_to_36() {
        assert!(TransactionId::parse("a").is_some());
        assert!(TransactionId::parse(&"x".repeat(36)).is_some());
        assert!(TransactionId::parse("tx 1/2:#").is_some());
    }

    #[test]
    fn rejects_empty_long_and_unprintable() {
        assert!(TransactionId::parse("").is_none());
        assert!(TransactionId::parse(&"x".repeat(37)).is_none());
        assert!(TransactionId::parse("tab\there").is_none());
        assert!(TransactionId::parse("nul\0").is_none());
        assert!(TransactionId::parse("é").is_none());
    }

    #[test]
    fn derived_id_is_the_contract_uuid_v5() {
        let hash = body_sha256_hex(b"{}");
        assert_eq!(
            hash,
            "44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
        );
        let id = TransactionId::derived(&hash);
        assert_eq!(id.as_str().len(), 36);
        assert_eq!(&id.as_str()[14..15], "5", "version nibble");
        assert_eq!(id, TransactionId::derived(&hash));
    }

    proptest! {
        #[test]
        fn parse_accepts_exactly_the_storable_ids(raw in "\\PC{0,40}") {
            let ok = !raw.is_empty() && raw.len() <= 36 && raw.bytes().all(|b| (0x20..=0x7e).contains(&b));
            prop_assert_eq!(TransactionId::parse(&raw).is_some(), ok);
        }
    }
}
