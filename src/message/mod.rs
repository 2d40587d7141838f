//! The request and reply formats of the contract: parsing, validation, error codes, PRID rules,
//! a request's identity, and the validation rules `[validation]` configures.
//! Everything here is pure, so it is unit- and property-tested without services.

pub mod envelope;
pub(crate) mod error_code;
pub(crate) mod identity;
pub mod prid;
pub(crate) mod reply;
pub(crate) mod rules;
pub(crate) mod transaction_id;

pub use envelope::{Envelope, RequestValidator};
pub use error_code::ErrorCode;
pub use identity::{Identity, registration_processor_id};
pub use reply::Reply;
pub(crate) use reply::ReplyKind;
pub use rules::ValidationRules;
pub use transaction_id::{TransactionId, body_sha256_hex};

use chrono::{DateTime, Utc};

/// The contract's timestamp format (`yyyy-MM-dd'T'HH:mm:ss.SSS'Z'`, UTC), used in replies and
/// dead-letter headers.
pub fn format_timestamp(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}
