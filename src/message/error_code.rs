//! The error codes a reply or a dead-letter header can carry, with their fixed messages.
//! MOSIP's own codes where MOSIP has one (so existing registration-processor clients understand
//! them), `PRS_*` for failures only a message flow has.

/// Why a request was not stored. The message text is fixed per code: it never echoes input,
/// so no PRID or body fragment can leak through a reply, a header or a log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    UnsupportedContentType,
    InvalidTransactionId,
    InvalidRequestBody,
    InvalidRequestId,
    InvalidVersion,
    InvalidRequestTime,
    MissingRequest,
    InvalidPreRegistrationIds,
    RequestTooOld,
    TransactionConflict,
    StoreFailed,
    DeliveryLimit,
    ReplyUndelivered,
}

impl ErrorCode {
    pub const ALL: [ErrorCode; 13] = [
        ErrorCode::UnsupportedContentType,
        ErrorCode::InvalidTransactionId,
        ErrorCode::InvalidRequestBody,
        ErrorCode::InvalidRequestId,
        ErrorCode::InvalidVersion,
        ErrorCode::InvalidRequestTime,
        ErrorCode::MissingRequest,
        ErrorCode::InvalidPreRegistrationIds,
        ErrorCode::RequestTooOld,
        ErrorCode::TransactionConflict,
        ErrorCode::StoreFailed,
        ErrorCode::DeliveryLimit,
        ErrorCode::ReplyUndelivered,
    ];

    pub fn code(self) -> &'static str {
        match self {
            ErrorCode::UnsupportedContentType => "PRS_UNSUPPORTED_CONTENT_TYPE",
            ErrorCode::InvalidTransactionId => "PRS_INVALID_TRANSACTION_ID",
            ErrorCode::InvalidRequestBody => "PRG_CORE_REQ_015",
            ErrorCode::InvalidRequestId => "PRG_PAM_CORE_001",
            ErrorCode::InvalidVersion => "PRG_PAM_CORE_002",
            ErrorCode::InvalidRequestTime => "PRG_PAM_CORE_003",
            ErrorCode::MissingRequest => "PRG_PAM_CORE_004",
            ErrorCode::InvalidPreRegistrationIds => "PRG_DATA_SYNC_011",
            ErrorCode::RequestTooOld => "PRG_CORE_REQ_013",
            ErrorCode::TransactionConflict => "PRS_TRANSACTION_CONFLICT",
            ErrorCode::StoreFailed => "PRG_DATA_SYNC_012",
            ErrorCode::DeliveryLimit => "PRS_DELIVERY_LIMIT",
            ErrorCode::ReplyUndelivered => "PRS_REPLY_UNDELIVERED",
        }
    }

    pub(crate) fn message(self) -> &'static str {
        match self {
            ErrorCode::UnsupportedContentType => "Unsupported content type",
            ErrorCode::InvalidTransactionId => "Invalid transaction id",
            ErrorCode::InvalidRequestBody => "Invalid request body",
            ErrorCode::InvalidRequestId => "Request id is invalid",
            ErrorCode::InvalidVersion => "Request version is invalid",
            ErrorCode::InvalidRequestTime => "Invalid request time",
            ErrorCode::MissingRequest => "Request body is invalid",
            ErrorCode::InvalidPreRegistrationIds => "requested preregistration ids are not valid",
            ErrorCode::RequestTooOld => "Request date should be current date",
            ErrorCode::TransactionConflict => {
                "Transaction id was already used with a different request body"
            }
            ErrorCode::StoreFailed => "Failed to store prereg id",
            ErrorCode::DeliveryLimit => "Delivery limit reached; suspected crash loop",
            ErrorCode::ReplyUndelivered => {
                "The reply could not be delivered; the request is stored"
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn codes_are_unique() {
        let codes: HashSet<_> = ErrorCode::ALL.iter().map(|c| c.code()).collect();
        assert_eq!(codes.len(), ErrorCode::ALL.len());
    }
}
