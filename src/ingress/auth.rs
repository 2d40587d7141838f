//! Who is calling: a JWT verified offline against the issuer's JWKS, or (under `mtls`) the
//! client certificate the TLS handshake already checked.
//!
//! Only the asymmetric algorithms of the contract are accepted, and the key must come from the
//! configured set under the token's `kid`: a token cannot choose its own key, `none`, or an HMAC
//! keyed with a public key. A token verified once is remembered until it expires
//! (`verified.rs`). Refusals carry no detail to the caller; the token itself is never
//! logged, and neither is anything read from it before its signature is verified.

use std::{
    path::PathBuf,
    sync::{Arc, Mutex, RwLock},
    time::{Duration, Instant},
};

use anyhow::Context;
use axum::http::{HeaderMap, header};
use jsonwebtoken::{
    Algorithm, DecodingKey, Validation, decode, decode_header, get_current_timestamp,
    jwk::{Jwk, JwkSet},
};
use serde_json::Value;

use super::verified::VerifiedTokens;
use crate::config::{JwtSettings, KeySource};

/// The contract's algorithms: RSA, RSA-PSS and ECDSA only.
const ALLOWED: [Algorithm; 6] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::PS256,
];
/// Clock skew tolerated on `exp` and `nbf`, in seconds.
const LEEWAY_SECONDS: u64 = 60;
/// A key set older than this is reloaded before it is used again, so a key the issuer has
/// withdrawn stops being trusted within this time even if no unknown `kid` asks for a reload.
const KEY_SET_MAX_AGE: Duration = Duration::from_secs(3600);
/// Bound on one fetch of `jwks_url`.
const JWKS_FETCH_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a caller is refused: 401 (no valid token) or 403 (valid, without a required role).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    Unauthenticated,
    Forbidden,
}

/// Verifies bearer tokens against the configured issuer's keys.
#[derive(Clone)]
pub(crate) struct Verifier(Arc<Inner>);

struct Inner {
    settings: JwtSettings,
    validation: Validation,
    source: Source,
    verified: VerifiedTokens,
    keys: RwLock<JwkSet>,
    /// When the key set was last (re)loaded; refreshes are at most one per interval.
    loaded_at: Mutex<Option<Instant>>,
}

enum Source {
    File(PathBuf),
    Url(url::Url, reqwest::Client),
}

impl Verifier {
    /// Loads the key set. A file that cannot be read fails start-up; an unreachable URL is
    /// fetched again when the first token arrives.
    pub(crate) async fn new(settings: &JwtSettings) -> anyhow::Result<Verifier> {
        // Its algorithm is set per token, to the token's own once it is known to be allowed.
        let mut validation = Validation::new(Algorithm::RS256);
        validation.leeway = LEEWAY_SECONDS;
        validation.validate_nbf = true;
        validation.set_issuer(&[&settings.issuer]);
        validation.set_required_spec_claims(&["exp", "iss"]);
        match &settings.audience {
            Some(audience) => {
                validation.set_audience(&[audience]);
                validation.required_spec_claims.insert("aud".to_owned());
            }
            None => validation.validate_aud = false,
        }
        let source = match &settings.keys {
            KeySource::File(path) => Source::File(path.clone()),
            KeySource::Url(url) => {
                let client = reqwest::Client::builder()
                    .use_preconfigured_tls(crate::tls::https_client_config()?)
                    .timeout(JWKS_FETCH_TIMEOUT)
                    .build()
                    .context("building the JWKS client")?;
                Source::Url(url.clone(), client)
            }
        };
        let verifier = Verifier(Arc::new(Inner {
            settings: settings.clone(),
            validation,
            source,
            verified: VerifiedTokens::new(LEEWAY_SECONDS),
            keys: RwLock::new(JwkSet { keys: Vec::new() }),
            loaded_at: Mutex::new(None),
        }));
        match (&settings.keys, verifier.reload().await) {
            (_, Ok(())) => {}
            (KeySource::File(_), Err(err)) => return Err(err),
            (KeySource::Url(_), Err(err)) => {
                tracing::warn!(error = %format!("{err:#}"), "ingress.jwks_url not fetched; trying again at the first token");
            }
        }
        Ok(verifier)
    }

    /// The caller's `app_id` (`azp`, else `client_id`, else `sub`) when the token is valid and
    /// holds a required role.
    pub(crate) async fn verify(&self, token: &str) -> Result<String, Refusal> {
        let now = get_current_timestamp();
        if let Some(app_id) = self.0.verified.get(token, now) {
            return Ok(app_id);
        }
        let (app_id, exp) = self.verify_signed(token).await?;
        self.0.verified.insert(token, app_id.clone(), exp, now);
        Ok(app_id)
    }

    /// The full verification of a token not verified before: its `app_id` and `exp`.
    async fn verify_signed(&self, token: &str) -> Result<(String, u64), Refusal> {
        let header = decode_header(token).map_err(|_| Refusal::Unauthenticated)?;
        if !ALLOWED.contains(&header.alg) {
            return Err(Refusal::Unauthenticated);
        }
        let kid = header.kid.as_deref().ok_or(Refusal::Unauthenticated)?;
        if self.stale() {
            self.refresh().await;
        }
        let jwk = match self.key(kid) {
            Some(jwk) => jwk,
            None => {
                self.refresh().await;
                self.key(kid).ok_or(Refusal::Unauthenticated)?
            }
        };
        // A key published for one algorithm is not used with another.
        if jwk
            .common
            .key_algorithm
            .is_some_and(|alg| format!("{alg:?}") != format!("{:?}", header.alg))
        {
            return Err(Refusal::Unauthenticated);
        }
        let key = DecodingKey::from_jwk(&jwk).map_err(|_| Refusal::Unauthenticated)?;
        // The header's algorithm alone (checked against ALLOWED above): the library refuses a
        // key of another family for it.
        let mut validation = self.0.validation.clone();
        validation.algorithms = vec![header.alg];
        let claims = decode::<Value>(token, &key, &validation)
            .map_err(|_| Refusal::Unauthenticated)?
            .claims;
        if !self.has_role(&claims) {
            return Err(Refusal::Forbidden);
        }
        let app_id = ["azp", "client_id", "sub"]
            .iter()
            .find_map(|claim| claims.get(*claim).and_then(Value::as_str))
            .filter(|client| !client.is_empty())
            .ok_or(Refusal::Forbidden)?;
        // `exp` is a required claim, checked above; not a whole number: remembered for no time.
        let exp = claims
            .get("exp")
            .and_then(Value::as_u64)
            .unwrap_or_default();
        Ok((app_id.to_owned(), exp))
    }

    /// The `kid`s of the key set as loaded.
    pub(crate) fn kids(&self) -> Vec<String> {
        let keys = self.0.keys.read().unwrap_or_else(|e| e.into_inner());
        keys.keys
            .iter()
            .filter_map(|key| key.common.key_id.clone())
            .collect()
    }

    fn key(&self, kid: &str) -> Option<Jwk> {
        let keys = self.0.keys.read().unwrap_or_else(|e| e.into_inner());
        keys.find(kid).cloned()
    }

    fn has_role(&self, claims: &Value) -> bool {
        let required = &self.0.settings.roles;
        if required.is_empty() {
            return true;
        }
        let held = self
            .0
            .settings
            .roles_claim
            .iter()
            .try_fold(claims, |value, step| value.get(step))
            .and_then(Value::as_array);
        held.is_some_and(|held| {
            held.iter()
                .filter_map(Value::as_str)
                .any(|role| required.iter().any(|r| r == role))
        })
    }

    /// Whether the key set was loaded longer than [`KEY_SET_MAX_AGE`] ago (or never).
    fn stale(&self) -> bool {
        let loaded_at = self.0.loaded_at.lock().unwrap_or_else(|e| e.into_inner());
        loaded_at.is_none_or(|at| at.elapsed() > KEY_SET_MAX_AGE)
    }

    /// Reloads the key set for an unknown `kid` (or a stale set), unless it was loaded within the refresh
    /// interval (so a stream of made-up `kid`s cannot hammer the issuer).
    async fn refresh(&self) {
        {
            let mut loaded_at = self.0.loaded_at.lock().unwrap_or_else(|e| e.into_inner());
            if loaded_at.is_some_and(|at| at.elapsed() < self.0.settings.refresh_interval) {
                return;
            }
            // Claimed now, so concurrent requests with the unknown kid do not all fetch.
            *loaded_at = Some(Instant::now());
        }
        if let Err(err) = self.reload().await {
            tracing::warn!(error = %format!("{err:#}"), "ingress key set not refreshed");
        }
    }

    async fn reload(&self) -> anyhow::Result<()> {
        let text = match &self.0.source {
            Source::File(path) => std::fs::read_to_string(path)
                .with_context(|| format!("reading ingress.jwks_file {}", path.display()))?,
            Source::Url(url, client) => client
                .get(url.clone())
                .send()
                .await
                .and_then(reqwest::Response::error_for_status)
                .context("fetching ingress.jwks_url")?
                .text()
                .await
                .context("reading ingress.jwks_url")?,
        };
        let set: JwkSet = serde_json::from_str(&text).context("the JWKS is not a JWK set")?;
        tracing::info!(keys = set.keys.len(), "ingress signing keys loaded");
        *self.0.keys.write().unwrap_or_else(|e| e.into_inner()) = set;
        *self.0.loaded_at.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
        Ok(())
    }
}

/// The bearer token of a request: `Authorization: Bearer <jwt>`, else MOSIP's `Authorization`
/// cookie (its value the token, with or without `Bearer `).
pub(crate) fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    if let Some(value) = headers.get(header::AUTHORIZATION) {
        let value = value.to_str().ok()?;
        let (scheme, token) = value.split_once(' ')?;
        return scheme
            .eq_ignore_ascii_case("bearer")
            .then(|| token.trim())
            .filter(|token| !token.is_empty());
    }
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|cookies| cookies.split(';'))
        .filter_map(|cookie| cookie.trim().split_once('='))
        .find(|(name, _)| *name == "Authorization")
        .map(|(_, value)| value.strip_prefix("Bearer ").unwrap_or(value).trim())
        .filter(|token| !token.is_empty())
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn headers(name: header::HeaderName, value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(name, HeaderValue::from_str(value).unwrap());
        headers
    }

    #[test]
    fn the_token_comes_from_the_header_or_the_cookie() {
        assert_eq!(
            bearer_token(&headers(header::AUTHORIZATION, "Bearer abc")),
            Some("abc")
        );
        assert_eq!(
            bearer_token(&headers(header::AUTHORIZATION, "bearer abc")),
            Some("abc")
        );
        assert_eq!(
            bearer_token(&headers(header::AUTHORIZATION, "Basic abc")),
            None
        );
        assert_eq!(
            bearer_token(&headers(header::COOKIE, "a=1; Authorization=abc")),
            Some("abc")
        );
        assert_eq!(
            bearer_token(&headers(header::COOKIE, "Authorization=Bearer abc")),
            Some("abc")
        );
        assert_eq!(bearer_token(&headers(header::COOKIE, "auth=abc")), None);
    }
}
