//! Which dead-lettered messages a command applies to, and the times `--since`/`--until` take.

use chrono::{DateTime, Utc};

use super::Row;
use crate::message::envelope::parse_request_time;

/// Which dead-lettered messages a command applies to; all criteria must hold.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub(crate) struct Filter {
    pub(crate) error_code: Option<String>,
    pub(crate) transaction_id: Option<String>,
    pub(crate) since: Option<DateTime<Utc>>,
    pub(crate) until: Option<DateTime<Utc>>,
}

impl Filter {
    pub(super) fn matches(&self, row: &Row) -> bool {
        let failed_at = row
            .first_failure_time
            .as_deref()
            .and_then(parse_request_time)
            .map(|t| t.and_utc());
        self.error_code
            .as_ref()
            .is_none_or(|c| row.error_code.as_ref() == Some(c))
            && self
                .transaction_id
                .as_ref()
                .is_none_or(|t| row.transaction_id.as_ref() == Some(t))
            && self
                .since
                .is_none_or(|since| failed_at.is_some_and(|at| at >= since))
            && self
                .until
                .is_none_or(|until| failed_at.is_some_and(|at| at < until))
    }
}

/// `--since` / `--until`: an RFC 3339 time, the contract's format, or a duration ago (`2h`).
pub(crate) fn parse_time(raw: &str) -> Result<DateTime<Utc>, String> {
    if let Ok(at) = DateTime::parse_from_rfc3339(raw) {
        return Ok(at.with_timezone(&Utc));
    }
    if let Some(at) = parse_request_time(raw) {
        return Ok(at.and_utc());
    }
    humantime::parse_duration(raw)
        .ok()
        .and_then(|ago| chrono::Duration::from_std(ago).ok())
        .map(|ago| Utc::now() - ago)
        .ok_or_else(|| format!("`{raw}` is neither a time (RFC 3339) nor a duration ago (e.g. 2h)"))
}
