//! PRIDs, requests as a publisher sends them, and the rows that make their applications known.

use chrono::Utc;
use lapin::BasicProperties;
use prereg_sync::message::prid;

use crate::TestEnv;

/// The `requesttime` of every [`request_body`].
pub const REQUEST_TIME: &str = "2026-11-22T07:05:08.850Z";

/// Valid, unique PRIDs under the default MOSIP rules.
pub fn prids(n: usize) -> Vec<String> {
    let rules = prid::PridRules::default();
    let mut rng = rand::rng();
    let mut seen = std::collections::HashSet::with_capacity(n);
    let mut out: Vec<String> = Vec::with_capacity(n);
    while out.len() < n {
        let candidate = prid::generate_valid(&rules, &mut rng);
        if seen.insert(candidate.clone()) {
            out.push(candidate);
        }
    }
    out
}

/// A valid request for `prids`.
pub fn request_body(prids: &[String]) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "id": "mosip.pre-registration.datasync.store",
        "version": "1.0",
        "requesttime": REQUEST_TIME,
        "request": {"preRegistrationIds": prids},
    }))
    .unwrap()
}

/// A publisher's properties: transaction ID `message_id`, persistent, JSON, app ID `rp-test`.
pub fn properties(message_id: &str, reply_to: Option<&str>) -> BasicProperties {
    let mut props = BasicProperties::default()
        .with_message_id(message_id.into())
        .with_correlation_id(format!("corr-{message_id}").into())
        .with_content_type("application/json".into())
        .with_app_id("rp-test".into())
        .with_delivery_mode(2);
    if let Some(reply_to) = reply_to {
        props = props.with_reply_to(reply_to.into());
    }
    props
}

pub fn now_utc() -> chrono::NaiveDateTime {
    Utc::now().naive_utc()
}

/// The transaction ID the worker derives from a request's body when its `message_id` is
/// missing or unusable.
pub fn derived_transaction_id(body: &[u8]) -> String {
    prereg_sync::message::TransactionId::derived(&prereg_sync::message::body_sha256_hex(body))
        .to_string()
}

impl TestEnv {
    /// Seeds `applicant_demographic` rows so the known-application check passes.
    pub async fn seed_applications(&self, prids: &[String]) {
        self.db()
            .await
            .execute(
                "INSERT INTO prereg.applicant_demographic (prereg_id, demog_detail, demog_detail_hash, encrypted_dtimes, \
                 status_code, lang_code, cr_appuser_id, cr_by, cr_dtimes) \
                 SELECT id, '\\x00'::bytea, 'h', now(), 'Booked', 'eng', 'u', 'test', now() FROM unnest($1::varchar[]) id \
                 ON CONFLICT DO NOTHING",
                &[&prids],
            )
            .await
            .unwrap();
    }
}
