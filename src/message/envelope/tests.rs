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
        #[allow(
            clippy::let_underscore_must_use,
            reason = "the property is that it returns, whatever the verdict"
        )]
        let _ = validator().validate(None, true, &body, Some(Utc::now()));
    }

    #[test]
    fn request_time_accepts_only_the_mosip_format(raw in "\\PC{0,30}") {
        if let Some(t) = parse_request_time(&raw) {
            prop_assert_eq!(t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string(), raw);
        }
    }
}
