//! TLS to both services, with certificates the test generates: TLS-terminating proxies owned by
//! the test stand in front of the local RabbitMQ (amqps) and PostgreSQL (SSLRequest, then TLS),
//! the worker verifies them against the test CA, and a wrong CA is refused with a clear error.

use std::{net::SocketAddr, path::PathBuf, sync::Arc, time::Duration};

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};
use tokio_rustls::{
    TlsAcceptor,
    rustls::{
        ServerConfig,
        pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject},
    },
};

use support::*;

/// A CA and a server certificate for `localhost` / 127.0.0.1 it signed, written as PEM files.
struct Pki {
    dir: PathBuf,
    ca: PathBuf,
    server_cert: String,
    server_key: String,
}

fn ca(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap()
}

fn pki(tag: &str) -> Pki {
    let dir = std::env::temp_dir().join(format!("prs-tls-{tag}"));
    std::fs::create_dir_all(&dir).unwrap();
    let ca = ca("prereg-sync test CA");
    let key = KeyPair::generate().unwrap();
    let params =
        CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
    let server = params.signed_by(&key, &ca).unwrap();
    let ca_path = dir.join("ca.pem");
    std::fs::write(&ca_path, ca.pem()).unwrap();
    Pki {
        dir,
        ca: ca_path,
        server_cert: server.pem(),
        server_key: key.serialize_pem(),
    }
}

impl Pki {
    /// A PEM file of a CA that signed nothing here.
    fn wrong_ca(&self) -> PathBuf {
        let path = self.dir.join("wrong-ca.pem");
        std::fs::write(&path, ca("some other CA").pem()).unwrap();
        path
    }

    fn acceptor(&self) -> TlsAcceptor {
        let certs = vec![CertificateDer::from_pem_slice(self.server_cert.as_bytes()).unwrap()];
        let key = PrivateKeyDer::from_pem_slice(self.server_key.as_bytes()).unwrap();
        let provider = Arc::new(tokio_rustls::rustls::crypto::aws_lc_rs::default_provider());
        let config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .unwrap();
        TlsAcceptor::from(Arc::new(config))
    }
}

impl Drop for Pki {
    #[allow(
        clippy::let_underscore_must_use,
        reason = "cleanup at best: a drop, maybe while a failed assertion unwinds, cannot fail the test"
    )]
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// PostgreSQL's SSLRequest: length 8, code 80877103.
const SSL_REQUEST: [u8; 8] = [0, 0, 0, 8, 4, 210, 22, 47];

/// Terminates TLS and forwards the plain stream to `upstream`. With `postgres`, first answers
/// the client's SSLRequest with `S` as a TLS-enabled PostgreSQL server does.
async fn tls_proxy(acceptor: TlsAcceptor, upstream: SocketAddr, postgres: bool) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut client, _)) = listener.accept().await else {
                continue;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                if postgres {
                    let mut request = [0u8; 8];
                    if client.read_exact(&mut request).await.is_err() || request != SSL_REQUEST {
                        return;
                    }
                    if client.write_all(b"S").await.is_err() {
                        return;
                    }
                }
                let Ok(mut tls) = acceptor.accept(client).await else {
                    return;
                };
                let Ok(mut server) = TcpStream::connect(upstream).await else {
                    return;
                };
                #[allow(
                    clippy::let_underscore_must_use,
                    reason = "the proxied connection ends when either side closes it, however it ends"
                )]
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut server).await;
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worker_speaks_tls_to_both_services_and_refuses_a_wrong_ca() {
    let mut env = TestEnv::new();
    let pki = pki(&env.id);
    let amqps = tls_proxy(pki.acceptor(), rabbitmq_addr(), false).await;
    let pgs = tls_proxy(pki.acceptor(), postgres_addr(), true).await;
    let ca = pki.ca.to_str().unwrap().to_owned();
    env.vars.insert(
        "AMQP_URL".into(),
        format!(
            "amqps://guest:guest@localhost:{}/{}",
            amqps.port(),
            env.vhost
        ),
    );
    env.vars.insert(
        "DATABASE_URL".into(),
        format!(
            "postgres://postgres@localhost:{}/{}",
            pgs.port(),
            env.database
        ),
    );
    env.vars
        .insert("PREREG_SYNC__AMQP__TLS__CA_FILE".into(), ca.clone());
    env.vars.insert(
        "PREREG_SYNC__DATABASE__TLS__MODE".into(),
        "verify-full".into(),
    );
    env.vars
        .insert("PREREG_SYNC__DATABASE__TLS__CA_FILE".into(), ca);
    env.spawn_app().await;

    let ids = prids(2);
    env.seed_applications(&ids).await;
    let broker = env.broker().await; // the test's own client speaks plain AMQP
    let replies = broker.reply_queue("rp.replies").await;
    broker
        .publish(&request_body(&ids), properties("tx-tls", Some(&replies)))
        .await;
    let reply = broker
        .get(&replies, Duration::from_secs(20))
        .await
        .expect("a reply over TLS");
    assert_eq!(error_code(&reply), "");
    assert_eq!(env.rows("processed_prereg_list").await, 2);
    let ssl_sessions = env
        .count("SELECT count(*) FROM pg_stat_ssl JOIN pg_stat_activity USING (pid) WHERE application_name = 'prereg-sync'")
        .await;
    assert!(ssl_sessions >= 1, "the worker's sessions reach PostgreSQL");
    env.stop_app().await;

    // A wrong CA: both connections are refused, each with an error that says why.
    let wrong = pki.wrong_ca();
    let wrong = wrong.to_str().unwrap();
    env.vars
        .insert("PREREG_SYNC__DATABASE__TLS__CA_FILE".into(), wrong.into());
    let migrate = env.cli(&["migrate"]);
    assert!(!migrate.status.success());
    let error = String::from_utf8_lossy(&migrate.stderr);
    assert!(
        error.contains("certificate") && error.to_lowercase().contains("issuer"),
        "clear error: {error}"
    );
    env.vars
        .insert("PREREG_SYNC__AMQP__TLS__CA_FILE".into(), wrong.into());
    let list = env.cli(&["dlq", "list"]);
    assert!(!list.status.success());
    let error = String::from_utf8_lossy(&list.stderr);
    assert!(
        error.contains("certificate") && error.to_lowercase().contains("issuer"),
        "clear error: {error}"
    );
    // require: encrypted without verification, so even the wrong CA connects.
    env.vars
        .insert("PREREG_SYNC__DATABASE__TLS__MODE".into(), "require".into());
    assert!(env.cli(&["migrate"]).status.success());
}
