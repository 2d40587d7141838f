//! `prereg-sync dev-token`, for test systems: a token the ingress accepts, signed with
//! `ingress.dev_signing_key_file`. It is refused unless the ingress already trusts that key
//! (the configured JWKS holds its public half), so the command mints nothing a production
//! ingress, which trusts only its identity provider's keys, would take.

use std::time::Duration;

use anyhow::Context;
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use serde_json::json;

use super::Verifier;
use crate::config::{AuthSettings, IngressSettings};

/// A signed token for `client_id` (its `azp` and `sub`) holding the required roles, valid for
/// `ttl`.
pub(crate) async fn dev_token(
    settings: &IngressSettings,
    client_id: &str,
    ttl: Duration,
) -> anyhow::Result<String> {
    let AuthSettings::Jwt(jwt) = &settings.auth else {
        anyhow::bail!("dev-token needs ingress.auth = \"jwt\"");
    };
    let path = jwt.dev_signing_key_file.as_ref().context(
        "ingress.dev_signing_key_file is not set: dev-token is for test systems whose ingress trusts a local key",
    )?;
    let pem = std::fs::read(path)
        .with_context(|| format!("reading ingress.dev_signing_key_file {}", path.display()))?;
    let verifier = Verifier::new(jwt).await?;
    let now = chrono::Utc::now().timestamp();
    let mut claims = json!({
        "iss": jwt.issuer,
        "azp": client_id,
        "sub": client_id,
        "iat": now,
        "exp": now + i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX / 2),
    });
    if let Some(audience) = &jwt.audience {
        claims["aud"] = json!(audience);
    }
    // The roles at their claim path, e.g. {"realm_access": {"roles": [...]}}.
    let (top, rest) = jwt
        .roles_claim
        .split_first()
        .context("ingress.roles_claim is empty")?;
    let roles = rest
        .iter()
        .rev()
        .fold(json!(jwt.roles), |inner, step| json!({ step: inner }));
    claims[top] = roles;
    for alg in [Algorithm::ES256, Algorithm::ES384, Algorithm::RS256] {
        let key = match alg {
            Algorithm::RS256 => EncodingKey::from_rsa_pem(&pem),
            _ => EncodingKey::from_ec_pem(&pem),
        };
        let Ok(key) = key else { continue };
        for kid in verifier.kids() {
            let mut header = Header::new(alg);
            header.kid = Some(kid);
            let Ok(token) = encode(&header, &claims, &key) else {
                continue;
            };
            if verifier.verify(&token).await.is_ok() {
                return Ok(token);
            }
        }
    }
    anyhow::bail!(
        "refused: the ingress does not trust ingress.dev_signing_key_file (its JWKS holds no matching public key)"
    )
}
