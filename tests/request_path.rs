//! Property test at scale over the whole request path that needs no services: raw body bytes and
//! AMQP properties → transaction identity → validation outcome. `PROPTEST_CASES` sets the number
//! of cases per property (CI runs the default; the security issue's long run used 1,000,000).

use chrono::Utc;
use prereg_sync::message::{
    ErrorCode, Identity, RequestValidator, prid, registration_processor_id,
};
use proptest::prelude::*;

/// The validator of the default configuration, built once.
fn validator() -> &'static RequestValidator {
    static VALIDATOR: std::sync::OnceLock<RequestValidator> = std::sync::OnceLock::new();
    VALIDATOR.get_or_init(|| RequestValidator::new(&support::default_settings().validation))
}

/// Codes validation may produce; the others come from storage or the consumer.
const VALIDATION_CODES: [ErrorCode; 9] = [
    ErrorCode::UnsupportedContentType,
    ErrorCode::InvalidTransactionId,
    ErrorCode::InvalidRequestBody,
    ErrorCode::InvalidRequestId,
    ErrorCode::InvalidVersion,
    ErrorCode::InvalidRequestTime,
    ErrorCode::MissingRequest,
    ErrorCode::InvalidPreRegistrationIds,
    ErrorCode::RequestTooOld,
];

/// JSON values of every kind, nested a little.
fn json_value() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(serde_json::Value::from),
        "\\PC{0,20}".prop_map(serde_json::Value::from),
        "[0-9]{14}".prop_map(serde_json::Value::from),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::from),
            prop::collection::hash_map("\\PC{0,8}", inner, 0..4)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Envelopes close to valid, with any field replaced, dropped or mistyped.
fn near_envelope() -> impl Strategy<Value = Vec<u8>> {
    let rules = prid::PridRules::default();
    (
        prop::option::of(prop_oneof![
            Just("mosip.pre-registration.datasync.store".into()),
            json_value()
        ]),
        prop::option::of(prop_oneof![Just("1.0".into()), json_value()]),
        prop::option::of(prop_oneof![
            Just("2026-11-22T07:05:08.850Z".into()),
            json_value()
        ]),
        prop::option::of(prop_oneof![
            (0usize..30, any::<u64>()).prop_map(move |(n, seed)| {
                use rand::SeedableRng;
                let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
                let ids: Vec<String> = (0..n)
                    .map(|_| prid::generate_valid(&rules, &mut rng))
                    .collect();
                serde_json::json!({"preRegistrationIds": ids})
            }),
            json_value(),
        ]),
    )
        .prop_map(|(id, version, time, request)| {
            let mut map = serde_json::Map::new();
            for (key, value) in [
                ("id", id),
                ("version", version),
                ("requesttime", time),
                ("request", request),
            ] {
                if let Some(value) = value {
                    map.insert(key.into(), value);
                }
            }
            serde_json::to_vec(&serde_json::Value::Object(map)).unwrap()
        })
}

fn body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..512),
        near_envelope(),
        near_envelope().prop_flat_map(|b| {
            let len = b.len();
            (Just(b), 0..len.max(1), any::<u8>()).prop_map(|(mut b, i, byte)| {
                if !b.is_empty() {
                    let at = i % b.len();
                    b[at] = byte;
                }
                b
            })
        }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn any_request_gets_a_validation_outcome_and_never_panics(
        body in body(),
        message_id in prop::option::of("\\PC{0,40}"),
        content_type in prop::option::of(prop_oneof![Just("application/json".to_owned()), "\\PC{0,30}"]),
        app_id in prop::option::of("\\PC{0,40}"),
    ) {
        let identity = Identity::of(message_id.as_deref(), &body);
        let tx = identity.transaction_id.as_str();
        prop_assert!(!tx.is_empty() && tx.len() <= 36 && tx.bytes().all(|b| (0x20..=0x7e).contains(&b)));
        prop_assert!(!registration_processor_id(app_id.as_deref()).contains('\0'));
        let outcome = validator().validate(content_type.as_deref(), identity.message_id_ok(), &body, Some(Utc::now()));
        let json = content_type.as_deref().is_none_or(|ct| {
            ct.split(';').next().is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))
        });
        match outcome {
            Ok(envelope) => {
                prop_assert!(json && identity.message_id_ok());
                prop_assert!(!envelope.prids.is_empty() && envelope.prids.len() <= 10_000);
                let unique: std::collections::HashSet<_> = envelope.prids.iter().collect();
                prop_assert_eq!(unique.len(), envelope.prids.len());
            }
            Err(code) => {
                prop_assert!(VALIDATION_CODES.contains(&code));
                if !json {
                    prop_assert_eq!(code, ErrorCode::UnsupportedContentType);
                } else if !identity.message_id_ok() {
                    prop_assert_eq!(code, ErrorCode::InvalidTransactionId);
                }
            }
        }
    }
}
