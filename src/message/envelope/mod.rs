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
    pub request_time: NaiveDateTime,
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
    pub fn prid_format_ok(&self, prid: &str) -> bool {
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
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn validator() -> RequestValidator {
        RequestValidator::new(&ValidationRules::contract_defaults())
    }

    fn check(body: &str) -> Result<Envelope, ErrorCode> {
        validator().validate(Some(JSON), true, body.as_bytes(), Some(Utc::now()))
    }

    fn envelope(ids: &str) -> String {
        format!(
            r#"{{"id":"{REQUEST_ID}","version":"1.0","requesttime":"2026-11-22T07:05:08.850Z","request":{{"preRegistrationIds":{ids}}}}}"#
        )
    }

    #[test]
    fn valid_request_dedupes_ids_in_order() {
        let ok = check(&envelope(
            r#"["75124301328620","94625367217037","75124301328620"]"#,
        ))
        .unwrap();
        assert_eq!(ok.prids, vec!["75124301328620", "94625367217037"]);
        assert_eq!(ok.request_time.to_string(), "2026-11-22 07:05:08.850");
    }

    #[test]
    fn snake_case_alias_is_accepted() {
        let body =
            envelope(r#"["75124301328620"]"#).replace("preRegistrationIds", "pre_registration_ids");
        assert_eq!(check(&body).unwrap().prids.len(), 1);
    }

    #[test]
    fn content_type_is_checked_first() {
        let v = validator();
        let err = v.validate(Some("text/plain"), false, b"garbage", Some(Utc::now()));
        assert_eq!(err, Err(ErrorCode::UnsupportedContentType));
        assert!(
            v.validate(
                Some("Application/JSON; charset=utf-8"),
                true,
                envelope(r#"["1"]"#).as_bytes(),
                Some(Utc::now())
            )
            .is_ok()
        );
        assert!(
            v.validate(
                None,
                true,
                envelope(r#"["1"]"#).as_bytes(),
                Some(Utc::now())
            )
            .is_ok()
        );
    }

    #[test]
    fn transaction_id_before_body() {
        let err = validator().validate(None, false, b"garbage", Some(Utc::now()));
        assert_eq!(err, Err(ErrorCode::InvalidTransactionId));
    }

    #[test]
    fn body_shape_errors() {
        for body in [
            "",
            "nope",
            "[]",
            "\"s\"",
            "{",
            r#"{"request":"x"}"#,
            r#"{"id":1,"id":2}"#,
        ] {
            assert_eq!(check(body), Err(ErrorCode::InvalidRequestBody), "{body}");
        }
        let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
        assert_eq!(check(&deep), Err(ErrorCode::InvalidRequestBody));
        assert_eq!(
            validator().validate(None, true, &[0xff, 0xfe], Some(Utc::now())),
            Err(ErrorCode::InvalidRequestBody)
        );
    }

    #[test]
    fn oversized_body_is_rejected_before_parsing() {
        let mut rules = ValidationRules::contract_defaults();
        rules.max_body_bytes = 10;
        let v = RequestValidator::new(&rules);
        let body = envelope(r#"["75124301328620"]"#);
        assert_eq!(
            v.validate(None, true, body.as_bytes(), Some(Utc::now())),
            Err(ErrorCode::InvalidRequestBody)
        );
    }

    #[test]
    fn field_rules_in_order() {
        let ok = envelope(r#"["75124301328620"]"#);
        let cases = [
            (ok.replace(REQUEST_ID, "other"), ErrorCode::InvalidRequestId),
            (
                ok.replace(&format!(r#""id":"{REQUEST_ID}","#), ""),
                ErrorCode::InvalidRequestId,
            ),
            (ok.replace(r#""1.0""#, "1.0"), ErrorCode::InvalidVersion),
            (
                ok.replace(r#""1.0""#, r#""2.0""#),
                ErrorCode::InvalidVersion,
            ),
            (
                ok.replace("07:05:08.850Z", "07:05:08Z"),
                ErrorCode::InvalidRequestTime,
            ),
            (
                ok.replace("2026-11-22T", "2026-13-22T"),
                ErrorCode::InvalidRequestTime,
            ),
            (
                ok.replace("850Z", "850+00:00"),
                ErrorCode::InvalidRequestTime,
            ),
            (
                ok.replace(
                    r#""request":{"preRegistrationIds":["75124301328620"]}"#,
                    r#""request":null"#,
                ),
                ErrorCode::MissingRequest,
            ),
            (envelope("[]"), ErrorCode::InvalidPreRegistrationIds),
            (envelope("[1]"), ErrorCode::InvalidPreRegistrationIds),
            (
                envelope(r#""75124301328620""#),
                ErrorCode::InvalidPreRegistrationIds,
            ),
            (
                ok.replace("preRegistrationIds", "ids"),
                ErrorCode::InvalidPreRegistrationIds,
            ),
        ];
        for (body, code) in cases {
            assert_eq!(check(&body), Err(code), "{body}");
        }
    }

    #[test]
    fn id_count_limit() {
        let mut rules = ValidationRules::contract_defaults();
        rules.max_ids = 2;
        let v = RequestValidator::new(&rules);
        let body = envelope(r#"["a","b","c"]"#);
        assert_eq!(
            v.validate(None, true, body.as_bytes(), Some(Utc::now())),
            Err(ErrorCode::InvalidPreRegistrationIds)
        );
    }

    #[test]
    fn request_age_limit() {
        let mut rules = ValidationRules::contract_defaults();
        rules.max_request_age = Some(std::time::Duration::from_secs(3600));
        let v = RequestValidator::new(&rules);
        let body = envelope(r#"["75124301328620"]"#);
        let later = "2026-11-22T09:05:08.850Z".parse::<DateTime<Utc>>().unwrap();
        assert_eq!(
            v.validate(None, true, body.as_bytes(), Some(later)),
            Err(ErrorCode::RequestTooOld)
        );
        // Judged at an earlier attempt: not judged again, however late this one is.
        assert!(v.validate(None, true, body.as_bytes(), None).is_ok());
        let soon = "2026-11-22T07:35:08.850Z".parse::<DateTime<Utc>>().unwrap();
        assert!(v.validate(None, true, body.as_bytes(), Some(soon)).is_ok());
    }

    #[test]
    fn prid_format_uses_the_configured_rules() {
        assert!(validator().prid_format_ok("75124301328620"));
        assert!(!validator().prid_format_ok("75124301326313"));
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(body in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = validator().validate(None, true, &body, Some(Utc::now()));
        }

        #[test]
        fn request_time_accepts_only_the_mosip_format(raw in "\\PC{0,30}") {
            if let Some(t) = parse_request_time(&raw) {
                prop_assert_eq!(t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string(), raw);
            }
        }
    }
}
