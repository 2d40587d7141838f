//! Who may call: every kind of bad token refused with MOSIP's envelope and nothing queued; the
//! cookie accepted; a client certificate accepted under `mtls`.

use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use tokio_rustls::rustls::{
    ClientConfig, RootCertStore,
    pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject},
};

use support::*;

use crate::{answer, code, ingress_env, post};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_tokens_are_refused_and_nothing_is_queued_and_the_cookie_is_accepted() {
    let keys = Keys::new();
    let mut env = ingress_env(&keys, &[]);
    env.spawn_app().await;
    let ingress = env.ingress.unwrap();
    let ids = prids(1);
    env.seed_applications(&ids).await;
    let body = request_body(&ids);
    let client = reqwest::Client::new();
    let with = |change: &dyn Fn(&mut serde_json::Value)| {
        let mut claims = Keys::claims();
        change(&mut claims);
        keys.sign(&claims, KID)
    };
    let past = chrono::Utc::now().timestamp() - 3600;
    let refused: Vec<(&str, Option<String>, u16, &str)> = vec![
        ("missing token", None, 401, "KER-ATH-401"),
        ("bad signature", Some(keys.forged()), 401, "KER-ATH-401"),
        (
            "wrong issuer",
            Some(with(&|c| c["iss"] = "https://evil.test".into())),
            401,
            "KER-ATH-401",
        ),
        (
            "expired",
            Some(with(&|c| c["exp"] = past.into())),
            401,
            "KER-ATH-401",
        ),
        ("alg none", Some(Keys::unsigned()), 401, "KER-ATH-401"),
        (
            "HS256 keyed with the public key",
            Some(keys.hs256_with_public_key()),
            401,
            "KER-ATH-401",
        ),
        (
            "unknown kid",
            Some(keys.sign(&Keys::claims(), "unknown-kid")),
            401,
            "KER-ATH-401",
        ),
        ("not a JWT", Some("abc".to_owned()), 401, "KER-ATH-401"),
        (
            "wrong role",
            Some(with(&|c| {
                c["realm_access"]["roles"] = serde_json::json!(["RESIDENT"])
            })),
            403,
            "KER-ATH-403",
        ),
    ];
    for (case, token, status, expected) in refused {
        let (got, reply, bytes) =
            answer(post(&client, ingress, token.as_deref(), &body, &[]).await).await;
        assert_eq!((got, code(&reply)), (status, expected), "{case}: {reply}");
        check_reply_body(Some("ingress"), &bytes, case);
    }
    // The lookup is behind the same check.
    let lookup = client
        .get(format!("{}/x", crate::url(ingress)))
        .send()
        .await
        .unwrap();
    assert_eq!(lookup.status(), 401);
    assert_eq!(env.broker().await.depth(REQUEST_QUEUE).await, 0);
    assert_eq!(env.rows("sync_transaction").await, 0);

    // MOSIP's Authorization cookie carries the token as well.
    let response = client
        .post(crate::url(ingress))
        .header("content-type", "application/json")
        .header("cookie", format!("Authorization={}", keys.token()))
        .body(body.clone())
        .send()
        .await
        .unwrap();
    let (status, reply, _) = answer(response).await;
    assert_eq!(
        (status, &reply["response"]["countOfStoredPreRegIds"]),
        (200, &serde_json::json!("1")),
        "{reply}"
    );
    // Nothing of a token reaches the logs' metrics.
    assert!(!env.metrics().await.contains(ISSUER));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_token_is_refused_unless_the_ingress_trusts_its_key() {
    let keys = Keys::new();
    let env = ingress_env(&keys, &[]);
    let refused = env.cli(&["dev-token"]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("dev_signing_key_file is not set"));
    let stranger = KeyPair::generate().unwrap();
    let stranger_file = keys.dir.write("stranger.pem", &stranger.serialize_pem());
    let untrusted = env
        .command()
        .args(["dev-token"])
        .env("PREREG_SYNC__INGRESS__DEV_SIGNING_KEY_FILE", &stranger_file)
        .output()
        .unwrap();
    assert!(!untrusted.status.success());
    assert!(String::from_utf8_lossy(&untrusted.stderr).contains("does not trust"));

    let mut env = env;
    env.vars.insert(
        "PREREG_SYNC__INGRESS__DEV_SIGNING_KEY_FILE".into(),
        keys.private_key_file.clone(),
    );
    let token = env
        .cli_ok(&["dev-token", "--client-id", "rp-dev"])
        .trim()
        .to_owned();
    env.spawn_app().await;
    let ids = prids(1);
    env.seed_applications(&ids).await;
    let client = reqwest::Client::new();
    let (status, reply, _) = answer(
        post(
            &client,
            env.ingress.unwrap(),
            Some(&token),
            &request_body(&ids),
            &[],
        )
        .await,
    )
    .await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(
        env.count("SELECT count(*) FROM prereg.sync_transaction WHERE app_id = 'rp-dev'")
            .await,
        1
    );
}

fn issue(params: CertificateParams, ca: &CertifiedIssuer<'static, KeyPair>) -> (String, String) {
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, ca).unwrap();
    (cert.pem(), key.serialize_pem())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_certificate_is_accepted_under_mtls() {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "ingress test CA");
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let ca_pem = ca.pem();
    let files = Scratch::new();
    let (server_cert, server_key) = issue(
        CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()]).unwrap(),
        &ca,
    );
    let mut client_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    client_params
        .distinguished_name
        .push(DnType::CommonName, "rp-mtls");
    let (client_cert, client_key) = issue(client_params, &ca);
    let ca_file = files.write("ca.pem", &ca_pem);
    let cert_file = files.write("server.pem", &server_cert);
    let key_file = files.write("server.key", &server_key);
    let mut env = TestEnv::with_vars(&[
        ("PREREG_SYNC__INGRESS__LISTEN", "127.0.0.1:0"),
        ("PREREG_SYNC__INGRESS__AUTH", "mtls"),
        ("PREREG_SYNC__INGRESS__TLS__CERT_FILE", &cert_file),
        ("PREREG_SYNC__INGRESS__TLS__KEY_FILE", &key_file),
        ("PREREG_SYNC__INGRESS__TLS__CLIENT_CA_FILE", &ca_file),
    ]);
    env.spawn_app().await;
    let ingress = env.ingress.unwrap();
    let ids = prids(1);
    env.seed_applications(&ids).await;

    let tls = |identity: Option<(&str, &str)>| {
        let mut roots = RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_slice(ca_pem.as_bytes()).unwrap())
            .unwrap();
        let provider = Arc::new(tokio_rustls::rustls::crypto::aws_lc_rs::default_provider());
        let builder = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots);
        let config = match identity {
            Some((cert, key)) => builder
                .with_client_auth_cert(
                    vec![CertificateDer::from_pem_slice(cert.as_bytes()).unwrap()],
                    PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap(),
                )
                .unwrap(),
            None => builder.with_no_client_auth(),
        };
        reqwest::Client::builder()
            .use_preconfigured_tls(config)
            .build()
            .unwrap()
    };
    let url = format!("https://127.0.0.1:{}{}", ingress.port(), crate::PATH);
    let anonymous = tls(None)
        .post(&url)
        .header("content-type", "application/json")
        .body(request_body(&ids))
        .send()
        .await;
    assert!(
        anonymous.is_err(),
        "a client without a certificate is refused in the handshake"
    );
    let response = tls(Some((&client_cert, &client_key)))
        .post(&url)
        .header("content-type", "application/json")
        .body(request_body(&ids))
        .send()
        .await
        .unwrap();
    let (status, reply, _) = answer(response).await;
    assert_eq!(status, 200, "{reply}");
    // The certificate's subject is the request's app_id.
    assert_eq!(
        env.count("SELECT count(*) FROM prereg.sync_transaction WHERE app_id = 'rp-mtls'")
            .await,
        1
    );
}

/// Serves whatever `jwks` holds at `GET /certs`, as Keycloak serves its realm's keys.
async fn jwks_server(jwks: Arc<std::sync::Mutex<serde_json::Value>>) -> std::net::SocketAddr {
    let app = axum::Router::new().route(
        "/certs",
        axum::routing::get(move || {
            let jwks = jwks.lock().unwrap().clone();
            async move { jwks.to_string() }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_come_from_the_jwks_url_and_a_rotated_key_is_fetched_on_its_unknown_kid() {
    let (old, new) = (Keys::new(), Keys::with_kid("rotated-key"));
    let jwks = Arc::new(std::sync::Mutex::new(old.jwks()));
    let server = jwks_server(jwks.clone()).await;
    let url = format!("http://{server}/certs");
    let mut env = ingress_env(
        &old,
        &[
            ("PREREG_SYNC__INGRESS__JWKS_URL", &url),
            ("PREREG_SYNC__INGRESS__JWKS_REFRESH_INTERVAL", "0s"),
        ],
    );
    env.vars.remove("PREREG_SYNC__INGRESS__JWKS_FILE");
    env.spawn_app().await;
    let ingress = env.ingress.unwrap();
    let ids = prids(2);
    env.seed_applications(&ids).await;
    let client = reqwest::Client::new();
    let status_with = async |keys: &Keys, prid: &String| {
        let body = request_body(std::slice::from_ref(prid));
        post(&client, ingress, Some(&keys.token()), &body, &[])
            .await
            .status()
    };
    assert_eq!(
        status_with(&old, &ids[0]).await,
        200,
        "the URL's key is trusted"
    );
    assert_eq!(
        status_with(&new, &ids[1]).await,
        401,
        "a key the issuer does not publish"
    );
    // The issuer rotates: the new key is published, and a token naming it is accepted.
    jwks.lock().unwrap()["keys"]
        .as_array_mut()
        .unwrap()
        .push(new.jwks()["keys"][0].clone());
    assert_eq!(status_with(&new, &ids[1]).await, 200);
}
