//! Reply bodies, byte-exact to the contract: field order and spelling are part of the interface.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{ErrorCode, format_timestamp};

const REPLY_ID: &str = "mosip.pre-registration.datasync.store";
const REPLY_VERSION: &str = "1.0";

/// Which reply it is; also the AMQP `type` property and the `message_id` suffix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReplyKind {
    Ack,
    Error,
}

impl ReplyKind {
    pub(crate) const ALL: [ReplyKind; 2] = [ReplyKind::Ack, ReplyKind::Error];

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            ReplyKind::Ack => "ack",
            ReplyKind::Error => "error",
        }
    }
}

/// A reply ready to publish.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    pub(crate) kind: ReplyKind,
    pub body: Vec<u8>,
}

#[derive(Serialize)]
struct Body<R: Serialize> {
    id: &'static str,
    version: &'static str,
    responsetime: String,
    response: Option<R>,
    errors: Option<[ErrorEntry; 1]>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SuccessResponse<'a> {
    transaction_id: &'a str,
    /// A string, as upstream MOSIP sends it.
    count_of_stored_pre_reg_ids: String,
    pre_registration_ids: &'a [String],
    rejected_pre_registration_ids: &'a [String],
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ErrorEntry {
    error_code: &'static str,
    message: &'static str,
}

impl Reply {
    pub fn success(
        transaction_id: &str,
        stored: &[String],
        rejected: &[String],
        now: DateTime<Utc>,
    ) -> Reply {
        let response = SuccessResponse {
            transaction_id,
            count_of_stored_pre_reg_ids: stored.len().to_string(),
            pre_registration_ids: stored,
            rejected_pre_registration_ids: rejected,
        };
        Reply {
            kind: ReplyKind::Ack,
            body: encode(Some(response), None, now),
        }
    }

    pub fn error(code: ErrorCode, now: DateTime<Utc>) -> Reply {
        let entry = ErrorEntry {
            error_code: code.code(),
            message: code.message(),
        };
        Reply {
            kind: ReplyKind::Error,
            body: encode::<()>(None, Some([entry]), now),
        }
    }
}

/// The reply envelope around any `response` or one error: for the answers the HTTP ingress
/// gives itself (`QUEUED`, authentication, overload), shaped like a worker's reply.
pub(crate) fn envelope<R: Serialize>(
    response: Option<R>,
    error: Option<(&'static str, &'static str)>,
    now: DateTime<Utc>,
) -> Vec<u8> {
    let errors = error.map(|(error_code, message)| {
        [ErrorEntry {
            error_code,
            message,
        }]
    });
    encode(response, errors, now)
}

fn encode<R: Serialize>(
    response: Option<R>,
    errors: Option<[ErrorEntry; 1]>,
    now: DateTime<Utc>,
) -> Vec<u8> {
    let body = Body {
        id: REPLY_ID,
        version: REPLY_VERSION,
        responsetime: format_timestamp(now),
        response,
        errors,
    };
    // Serialising plain strings and numbers into a Vec cannot fail.
    serde_json::to_vec(&body).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at() -> DateTime<Utc> {
        "2026-11-22T07:05:09.002Z".parse().unwrap()
    }

    #[test]
    fn success_body_is_byte_exact() {
        let stored = vec!["75124301328620".to_owned(), "94625367217037".to_owned()];
        let reply = Reply::success("tx-1", &stored, &[], at());
        assert_eq!(reply.kind, ReplyKind::Ack);
        assert_eq!(
            String::from_utf8(reply.body).unwrap(),
            r#"{"id":"mosip.pre-registration.datasync.store","version":"1.0","responsetime":"2026-11-22T07:05:09.002Z","response":{"transactionId":"tx-1","countOfStoredPreRegIds":"2","preRegistrationIds":["75124301328620","94625367217037"],"rejectedPreRegistrationIds":[]},"errors":null}"#
        );
    }

    #[test]
    fn error_body_is_byte_exact() {
        let reply = Reply::error(ErrorCode::InvalidRequestId, at());
        assert_eq!(reply.kind, ReplyKind::Error);
        assert_eq!(
            String::from_utf8(reply.body).unwrap(),
            r#"{"id":"mosip.pre-registration.datasync.store","version":"1.0","responsetime":"2026-11-22T07:05:09.002Z","response":null,"errors":[{"errorCode":"PRG_PAM_CORE_001","message":"Request id is invalid"}]}"#
        );
    }
}
