//! A test's own identity provider for the HTTP ingress: an ECDSA P-256 key pair, its JWKS
//! written to a file the ingress reads, and tokens signed (or forged) by the test.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use rcgen::KeyPair;
use serde_json::{Value, json};

use crate::Scratch;

pub const ISSUER: &str = "https://idp.test/auth/realms/mosip";
pub const KID: &str = "test-key-1";
/// The token's client: the requests' `app_id`.
pub const CLIENT: &str = "registration-processor";

pub struct Keys {
    pub dir: Scratch,
    pair: KeyPair,
    kid: String,
    pub jwks_file: String,
    pub private_key_file: String,
}

impl Keys {
    #[allow(clippy::new_without_default)] // generates a key pair and writes files: not a default value
    pub fn new() -> Keys {
        Keys::with_kid(KID)
    }

    /// A key pair published under `kid` (a rotated key, say).
    pub fn with_kid(kid: &str) -> Keys {
        let dir = Scratch::new();
        let pair = KeyPair::generate().unwrap(); // P-256
        let point = pair.public_key_raw(); // 0x04 || x || y
        let jwks = json!({"keys": [{
            "kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256", "kid": kid,
            "x": URL_SAFE_NO_PAD.encode(&point[1..33]),
            "y": URL_SAFE_NO_PAD.encode(&point[33..65]),
        }]});
        let jwks_file = dir.write("jwks.json", &jwks.to_string());
        let private_key_file = dir.write("signing-key.pem", &pair.serialize_pem());
        Keys {
            dir,
            pair,
            kid: kid.to_owned(),
            jwks_file,
            private_key_file,
        }
    }

    /// The configuration of an ingress on `listen` that trusts these keys.
    pub fn vars(&self, listen: &str) -> Vec<(String, String)> {
        [
            ("PREREG_SYNC__INGRESS__LISTEN", listen.to_owned()),
            ("PREREG_SYNC__INGRESS__JWKS_FILE", self.jwks_file.clone()),
            ("PREREG_SYNC__INGRESS__ISSUER", ISSUER.to_owned()),
            ("PREREG_SYNC__INGRESS__REPLY_TIMEOUT", "10s".to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
    }

    /// Valid claims: the issuer, the role, an hour to live.
    pub fn claims() -> Value {
        let now = chrono::Utc::now().timestamp();
        json!({
            "iss": ISSUER, "azp": CLIENT, "sub": "service-account-rp",
            "iat": now, "exp": now + 3600,
            "realm_access": {"roles": ["REGISTRATION_PROCESSOR"]},
        })
    }

    pub fn token(&self) -> String {
        self.sign(&Self::claims(), &self.kid)
    }

    /// The JWKS (its one key), as written to `jwks_file`.
    pub fn jwks(&self) -> Value {
        serde_json::from_str(&std::fs::read_to_string(&self.jwks_file).unwrap()).unwrap()
    }

    pub fn sign(&self, claims: &Value, kid: &str) -> String {
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(kid.to_owned());
        let key = EncodingKey::from_ec_pem(self.pair.serialize_pem().as_bytes()).unwrap();
        encode(&header, claims, &key).unwrap()
    }

    /// Signed by a key the ingress does not know, under the known `kid`.
    pub fn forged(&self) -> String {
        let other = KeyPair::generate().unwrap();
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(KID.to_owned());
        let key = EncodingKey::from_ec_pem(other.serialize_pem().as_bytes()).unwrap();
        encode(&header, &Self::claims(), &key).unwrap()
    }

    /// The algorithm-confusion attack: HS256 keyed with the public key as the secret.
    pub fn hs256_with_public_key(&self) -> String {
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(KID.to_owned());
        let key = EncodingKey::from_secret(self.pair.public_key_pem().as_bytes()).unwrap();
        encode(&header, &Self::claims(), &key).unwrap()
    }

    /// `alg: none`, no signature.
    pub fn unsigned() -> String {
        let part = |value: Value| URL_SAFE_NO_PAD.encode(value.to_string());
        format!(
            "{}.{}.",
            part(json!({"alg": "none", "typ": "JWT", "kid": KID})),
            part(Self::claims())
        )
    }
}
