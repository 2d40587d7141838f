//! Validation of a request: the contract's rule 2 in its order (first failure wins), then the
//! per-PRID format check of rule 3. Pure: no I/O, so every rule is unit-tested here; the
//! known-application half of rule 3 needs the database and lives in the processor.

use std::collections::HashSet;

use chrono::{DateTime, NaiveDateTime, Utc};
use serde::Deserialize;
use serde_json::Value;

use super::{ErrorCode, prid::PridValidator, rules::ValidationRules};

const REQUEST_ID: &str = "mosip.pre-registration.datasync.store";
const REQUEST_VERSION: &str = "1.0";
const JSON: &str = "application/json";

/// A request that passed rule 2: its time and its PRIDs, duplicates removed, first-seen order.
#[derive(Debug, PartialEq)]
pub struct Envelope {
    pub(crate) request_time: NaiveDateTime,
    pub prids: Vec<String>,
}

/// The request envelope as it arrives. Fields stay loosely typed so that a wrong type maps to
/// the rule that owns the field (an `id` of 5 is `PRG_PAM_CORE_001`, not a shape error); serde's
/// derived visitor rejects duplicate keys, which closes the "which `id` wins" ambiguity.
#[derive(Deserialize)]
struct RawEnvelope {
    id: Option<Value>,
    version: Option<Value>,
    requesttime: Option<Value>,
    request: Option<RawRequest>,
}

#[derive(Deserialize)]
struct RawRequest {
    #[serde(rename = "preRegistrationIds", alias = "pre_registration_ids")]
    ids: Option<Value>,
}

/// Rule 2 and the format half of rule 3, configured once at start-up.
#[derive(Debug, Clone)]
pub struct RequestValidator {
    prids: PridValidator,
    max_body_bytes: usize,
    max_ids: usize,
    max_request_age: Option<chrono::Duration>,
}

impl RequestValidator {
    pub fn new(rules: &ValidationRules) -> RequestValidator {
        RequestValidator {
            prids: PridValidator::new(rules.prid_format, rules.prid_rules.clone()),
            max_body_bytes: rules.max_body_bytes,
            max_ids: rules.max_ids,
            max_request_age: rules
                .max_request_age
                .and_then(|age| chrono::Duration::from_std(age).ok()),
        }
    }

    /// Checks rule 2. `message_id_ok` is false when the publisher sent an unusable
    /// `message_id`; it is checked here so the rule order holds (content type first). The
    /// request's age is judged against `age_judged_at`, and not at all when it is `None` (a
    /// request judged at an earlier attempt).
    pub fn validate(
        &self,
        content_type: Option<&str>,
        message_id_ok: bool,
        body: &[u8],
        age_judged_at: Option<DateTime<Utc>>,
    ) -> Result<Envelope, ErrorCode> {
        if content_type.is_some_and(|ct| !is_json_media_type(ct)) {
            return Err(ErrorCode::UnsupportedContentType);
        }
        if !message_id_ok {
            return Err(ErrorCode::InvalidTransactionId);
        }
        // The size is checked before parsing, so nothing proportional to a claimed size is
        // allocated for an oversized body.
        if body.len() > self.max_body_bytes {
            return Err(ErrorCode::InvalidRequestBody);
        }
        let raw: RawEnvelope =
            serde_json::from_slice(body).map_err(|_| ErrorCode::InvalidRequestBody)?;
        if raw.id.as_ref().and_then(Value::as_str) != Some(REQUEST_ID) {
            return Err(ErrorCode::InvalidRequestId);
        }
        if raw.version.as_ref().and_then(Value::as_str) != Some(REQUEST_VERSION) {
            return Err(ErrorCode::InvalidVersion);
        }
        let request_time = raw
            .requesttime
            .as_ref()
            .and_then(Value::as_str)
            .and_then(parse_request_time)
            .ok_or(ErrorCode::InvalidRequestTime)?;
        let request = raw.request.ok_or(ErrorCode::MissingRequest)?;
        let prids = self.prid_list(request.ids)?;
        if let (Some(max_age), Some(now)) = (self.max_request_age, age_judged_at)
            && request_time < now.naive_utc() - max_age
        {
            return Err(ErrorCode::RequestTooOld);
        }
        Ok(Envelope {
            request_time,
            prids,
        })
    }

    /// The PRID list: present, non-empty, strings only, within the count limit; duplicates
    /// count once.
    fn prid_list(&self, ids: Option<Value>) -> Result<Vec<String>, ErrorCode> {
        let Some(Value::Array(items)) = ids else {
            return Err(ErrorCode::InvalidPreRegistrationIds);
        };
        if items.is_empty() || items.len() > self.max_ids {
            return Err(ErrorCode::InvalidPreRegistrationIds);
        }
        let mut seen = HashSet::with_capacity(items.len());
        let mut prids = Vec::with_capacity(items.len());
        for item in items {
            let Value::String(prid) = item else {
                return Err(ErrorCode::InvalidPreRegistrationIds);
            };
            if seen.insert(prid.clone()) {
                prids.push(prid);
            }
        }
        Ok(prids)
    }

    /// Rule 3, format half.
    pub(crate) fn prid_format_ok(&self, prid: &str) -> bool {
        self.prids.is_valid(prid)
    }
}

/// `application/json`, case-insensitive, parameters such as `; charset=utf-8` allowed.
fn is_json_media_type(content_type: &str) -> bool {
    content_type
        .split(';')
        .next()
        .is_some_and(|media| media.trim().eq_ignore_ascii_case(JSON))
}

/// `yyyy-MM-dd'T'HH:mm:ss.SSS'Z'` exactly: MOSIP's request time format, always UTC.
pub fn parse_request_time(raw: &str) -> Option<NaiveDateTime> {
    let shape_ok = raw.len() == 24
        && raw.bytes().enumerate().all(|(i, b)| match i {
            4 | 7 => b == b'-',
            10 => b == b'T',
            13 | 16 => b == b':',
            19 => b == b'.',
            23 => b == b'Z',
            _ => b.is_ascii_digit(),
        });
    if !shape_ok {
        return None;
    }
    NaiveDateTime::parse_from_str(raw, "%Y-%m-%dT%H:%M:%S%.3fZ").ok()
}

#[cfg(test)]
mod tests;
