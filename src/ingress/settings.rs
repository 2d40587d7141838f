//! `[ingress]`, parsed once into what the ingress runs with: off, or a listener with exactly one
//! way to authenticate callers. A combination that cannot work (JWT without keys or issuer,
//! mTLS without a client CA, `none` on a routable address) fails loading, naming the keys.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use serde::Deserialize;

use crate::tls::ServerTls;

/// `[ingress]` as written: flat keys, as the contract names them.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawIngress {
    listen: Option<SocketAddr>,
    path: String,
    auth: AuthKind,
    jwks_file: Option<PathBuf>,
    jwks_url: Option<url::Url>,
    issuer: Option<String>,
    audience: Option<String>,
    roles: Vec<String>,
    roles_claim: String,
    #[serde(with = "humantime_serde")]
    jwks_refresh_interval: Duration,
    dev_signing_key_file: Option<PathBuf>,
    #[serde(with = "humantime_serde")]
    reply_timeout: Duration,
    max_concurrent_requests: usize,
    max_reply_waiters: usize,
    #[serde(with = "humantime_serde")]
    header_read_timeout: Duration,
    #[serde(with = "humantime_serde")]
    body_read_timeout: Duration,
    #[serde(default)]
    tls: RawTls,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum AuthKind {
    Jwt,
    Mtls,
    None,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    cert_file: Option<PathBuf>,
    key_file: Option<PathBuf>,
    client_ca_file: Option<PathBuf>,
}

/// `[ingress]`: `None` while `ingress.listen` is unset (the ingress is off, and its other keys
/// are not checked).
#[derive(Debug, Deserialize)]
#[serde(try_from = "RawIngress")]
pub struct IngressSection(pub Option<IngressSettings>);

#[derive(Debug, Clone)]
pub struct IngressSettings {
    pub listen: SocketAddr,
    /// The POST route; the lookup is `<path>/{transactionId}`.
    pub path: String,
    pub auth: AuthSettings,
    pub reply_timeout: Duration,
    /// Requests handled at once; one more is answered 503 at once.
    pub max_concurrent_requests: usize,
    /// Requests waiting for the worker's reply at once; one more is answered 202 `QUEUED` as
    /// soon as its publish is confirmed.
    pub max_reply_waiters: usize,
    pub header_read_timeout: Duration,
    pub body_read_timeout: Duration,
    pub tls: Option<ServerTls>,
}

#[derive(Debug, Clone)]
pub enum AuthSettings {
    Jwt(Box<JwtSettings>),
    /// A client certificate signed by `ingress.tls.client_ca_file` is the credential.
    Mtls,
    /// Loopback only: whoever can reach the port is trusted.
    None,
}

#[derive(Debug, Clone)]
pub struct JwtSettings {
    pub keys: KeySource,
    pub issuer: String,
    pub audience: Option<String>,
    pub roles: Vec<String>,
    /// `roles_claim` split at its dots: the path to the roles array inside the claims.
    pub roles_claim: Vec<String>,
    /// The least time between two fetches of `jwks_url` (a token with an unknown `kid` asks
    /// for one).
    pub refresh_interval: Duration,
    /// Test systems only: the private key `prereg-sync dev-token` signs with.
    pub dev_signing_key_file: Option<PathBuf>,
}

#[derive(Debug, Clone)]
pub enum KeySource {
    File(PathBuf),
    Url(url::Url),
}

impl TryFrom<RawIngress> for IngressSection {
    type Error = String;

    fn try_from(raw: RawIngress) -> Result<IngressSection, String> {
        let Some(listen) = raw.listen else {
            return Ok(IngressSection(None));
        };
        if !raw.path.starts_with('/') || raw.path.ends_with('/') {
            return Err("ingress.path must start with `/` and not end with one".into());
        }
        if raw.max_concurrent_requests == 0 || raw.max_reply_waiters == 0 {
            return Err(
                "ingress.max_concurrent_requests and ingress.max_reply_waiters must be positive"
                    .into(),
            );
        }
        let tls = match (raw.tls.cert_file, raw.tls.key_file) {
            (Some(cert_file), Some(key_file)) => Some(ServerTls {
                cert_file,
                key_file,
                client_ca_file: raw.tls.client_ca_file,
            }),
            (None, None) if raw.tls.client_ca_file.is_none() => None,
            _ => {
                return Err(
                    "ingress.tls needs both cert_file and key_file (client_ca_file requires them)"
                        .into(),
                );
            }
        };
        let auth = match raw.auth {
            AuthKind::None if !listen.ip().is_loopback() => {
                return Err(format!(
                    "ingress.auth = \"none\" is refused on {listen}: only a loopback ingress.listen may go without authentication"
                ));
            }
            AuthKind::None => AuthSettings::None,
            AuthKind::Mtls if tls.as_ref().is_none_or(|t| t.client_ca_file.is_none()) => {
                return Err(
                    "ingress.auth = \"mtls\" needs ingress.tls.cert_file, key_file and client_ca_file"
                        .into(),
                );
            }
            AuthKind::Mtls => AuthSettings::Mtls,
            AuthKind::Jwt => {
                let keys = match (raw.jwks_file, raw.jwks_url) {
                    (Some(file), None) => KeySource::File(file),
                    (None, Some(url)) => KeySource::Url(url),
                    _ => {
                        return Err("ingress.auth = \"jwt\" needs exactly one of ingress.jwks_file and ingress.jwks_url".into());
                    }
                };
                let issuer = raw
                    .issuer
                    .filter(|issuer| !issuer.is_empty())
                    .ok_or("ingress.auth = \"jwt\" needs ingress.issuer")?;
                AuthSettings::Jwt(Box::new(JwtSettings {
                    keys,
                    issuer,
                    audience: raw.audience.filter(|audience| !audience.is_empty()),
                    roles: raw.roles,
                    roles_claim: raw.roles_claim.split('.').map(str::to_owned).collect(),
                    refresh_interval: raw.jwks_refresh_interval,
                    dev_signing_key_file: raw.dev_signing_key_file,
                }))
            }
        };
        Ok(IngressSection(Some(IngressSettings {
            listen,
            path: raw.path,
            auth,
            reply_timeout: raw.reply_timeout,
            max_concurrent_requests: raw.max_concurrent_requests,
            max_reply_waiters: raw.max_reply_waiters,
            header_read_timeout: raw.header_read_timeout,
            body_read_timeout: raw.body_read_timeout,
            tls,
        })))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use crate::config::Settings;

    fn load(vars: &[(&str, &str)]) -> anyhow::Result<Settings> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Settings::load_from(std::path::Path::new("config"), &vars)
    }

    fn error(vars: &[(&str, &str)]) -> String {
        format!("{:#}", load(vars).unwrap_err())
    }

    #[test]
    fn off_by_default() {
        assert!(load(&[]).unwrap().ingress.0.is_none());
    }

    #[test]
    fn no_authentication_only_on_loopback() {
        let on = |listen| {
            load(&[
                ("PREREG_SYNC__INGRESS__LISTEN", listen),
                ("PREREG_SYNC__INGRESS__AUTH", "none"),
            ])
        };
        assert!(on("127.0.0.1:8093").is_ok());
        assert!(on("[::1]:8093").is_ok());
        let refused = format!("{:#}", on("0.0.0.0:8093").unwrap_err());
        assert!(refused.contains("only a loopback"), "{refused}");
    }

    #[test]
    fn jwt_needs_keys_and_an_issuer() {
        let listen = ("PREREG_SYNC__INGRESS__LISTEN", "0.0.0.0:8093");
        assert!(error(&[listen]).contains("exactly one of ingress.jwks_file"));
        let file = ("PREREG_SYNC__INGRESS__JWKS_FILE", "/etc/jwks.json");
        assert!(error(&[listen, file]).contains("needs ingress.issuer"));
        let issuer = ("PREREG_SYNC__INGRESS__ISSUER", "https://idp/realms/mosip");
        let settings = load(&[listen, file, issuer]).unwrap();
        let ingress = settings.ingress.0.unwrap();
        let super::AuthSettings::Jwt(jwt) = ingress.auth else {
            panic!("jwt expected")
        };
        assert_eq!(jwt.roles, ["REGISTRATION_PROCESSOR"]);
        assert_eq!(jwt.roles_claim, ["realm_access", "roles"]);
    }

    #[test]
    fn mtls_needs_a_client_ca() {
        let refused = error(&[
            ("PREREG_SYNC__INGRESS__LISTEN", "0.0.0.0:8093"),
            ("PREREG_SYNC__INGRESS__AUTH", "mtls"),
            ("PREREG_SYNC__INGRESS__TLS__CERT_FILE", "/c.pem"),
            ("PREREG_SYNC__INGRESS__TLS__KEY_FILE", "/k.pem"),
        ]);
        assert!(refused.contains("client_ca_file"), "{refused}");
    }
}
