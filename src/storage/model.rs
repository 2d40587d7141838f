//! What the hot path's statements take and give: a request's rows to write, the transaction
//! recorded earlier, and the outcome of a store. Shared by `transactions` (the statements)
//! and `rows` (the rows a group commit writes), which otherwise do not know each other's types.

use chrono::NaiveDateTime;

/// A transaction recorded earlier: enough to tell a duplicate from a conflict and to re-send
/// the reply byte for byte.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct StoredTransaction {
    pub(crate) body_sha256: String,
    pub(crate) reply_body: Vec<u8>,
}

/// Everything one request writes (owned: it travels to the group-commit task).
#[derive(Debug)]
pub(crate) struct NewTransaction {
    pub(crate) transaction_id: String,
    pub(crate) app_id: String,
    pub(crate) body_sha256: String,
    pub(crate) received_at: NaiveDateTime,
    pub(crate) request_time: NaiveDateTime,
    /// Surviving PRIDs (unique).
    pub(crate) prids: Vec<String>,
    pub(crate) reply_body: Vec<u8>,
    pub(crate) lang_code: String,
    pub(crate) created_by: String,
}

/// What storing one request came to.
#[derive(Debug, PartialEq)]
pub(crate) enum StoreOutcome {
    /// Committed; `newly_processed` PRIDs were not in `processed_prereg_list` before.
    Stored { newly_processed: u64 },
    /// Another delivery of the same transaction ID committed first (a concurrent duplicate):
    /// nothing was written here.
    AlreadyRecorded(StoredTransaction),
}
