//! TLS to RabbitMQ (`amqps://`, custom CA, optional client certificate) and to PostgreSQL
//! (`database.tls.mode` disable / require / verify-full, custom CA), the ingress's listener
//! (`[ingress.tls]`, optional client certificates) and its JWKS fetches, all through rustls.

use std::{path::Path, sync::Arc};

use anyhow::Context;
use lapin::tcp::{OwnedIdentity, OwnedTLSConfig};
use rustls::{
    ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme,
    client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
    crypto::CryptoProvider,
    pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime, pem::PemObject},
    server::WebPkiClientVerifier,
};

use serde::Deserialize;

/// `[amqp.tls]`: applies when `amqp.url` is `amqps://…`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AmqpTlsSettings {
    /// PEM file of the CA(s) that signed the broker's certificate; unset: the system's roots.
    pub ca_file: Option<std::path::PathBuf>,
    /// PEM certificate and PKCS#8 key for client-certificate authentication (both or neither).
    pub client_cert_file: Option<std::path::PathBuf>,
    pub client_key_file: Option<std::path::PathBuf>,
}

/// How the worker protects its PostgreSQL connections (libpq's `sslmode` names).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PostgresTlsMode {
    /// Plain TCP.
    #[default]
    Disable,
    /// Encrypted, server certificate not verified (protects against passive eavesdropping only).
    Require,
    /// Encrypted, certificate chain verified against `ca_file` (or the system's roots) and the
    /// host name checked.
    VerifyFull,
}

/// `[database.tls]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PostgresTlsSettings {
    pub mode: PostgresTlsMode,
    pub ca_file: Option<std::path::PathBuf>,
}

/// `[ingress.tls]` once checked (`ingress::settings`): the listener's certificate and key.
#[derive(Debug, Clone)]
pub struct ServerTls {
    pub cert_file: std::path::PathBuf,
    pub key_file: std::path::PathBuf,
    /// When set, clients must present a certificate this CA signed.
    pub client_ca_file: Option<std::path::PathBuf>,
}

fn read(path: &Path, what: &str) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("reading the {what} file {}", path.display()))
}

/// lapin's TLS configuration for `[amqp.tls]`.
pub(crate) fn amqp_config(settings: &AmqpTlsSettings) -> anyhow::Result<OwnedTLSConfig> {
    let cert_chain = settings
        .ca_file
        .as_deref()
        .map(|path| read(path, "amqp.tls.ca_file"))
        .transpose()?
        .map(|pem| String::from_utf8(pem).context("amqp.tls.ca_file is not PEM text"))
        .transpose()?;
    let identity = match (&settings.client_cert_file, &settings.client_key_file) {
        (Some(cert), Some(key)) => Some(OwnedIdentity::PKCS8 {
            pem: read(cert, "amqp.tls.client_cert_file")?,
            key: read(key, "amqp.tls.client_key_file")?,
        }),
        (None, None) => None,
        _ => anyhow::bail!("amqp.tls.client_cert_file and amqp.tls.client_key_file go together"),
    };
    Ok(OwnedTLSConfig {
        identity,
        cert_chain,
    })
}

/// The rustls client configuration for `[database.tls]`; `None` for `disable`.
pub(crate) fn postgres_config(
    settings: &PostgresTlsSettings,
) -> anyhow::Result<Option<ClientConfig>> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?;
    let config = match settings.mode {
        PostgresTlsMode::Disable => return Ok(None),
        PostgresTlsMode::Require => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(EncryptOnly(provider)))
            .with_no_client_auth(),
        PostgresTlsMode::VerifyFull => {
            let roots = match &settings.ca_file {
                Some(path) => {
                    roots_from_pem(&read(path, "database.tls.ca_file")?, "database.tls.ca_file")?
                }
                None => system_roots("database.tls.ca_file")?,
            };
            builder.with_root_certificates(roots).with_no_client_auth()
        }
    };
    Ok(Some(config))
}

/// An HTTPS client's configuration trusting the system's roots (the ingress's `jwks_url`).
pub(crate) fn https_client_config() -> anyhow::Result<ClientConfig> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    Ok(ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_root_certificates(system_roots("ingress.jwks_file instead of a URL")?)
        .with_no_client_auth())
}

/// The ingress listener's TLS (`[ingress.tls]`): its certificate chain and key, and, with a
/// client CA, client certificates required and verified against it. HTTP/2 and HTTP/1.1 are
/// offered by ALPN.
pub(crate) fn ingress_server_config(settings: &ServerTls) -> anyhow::Result<ServerConfig> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let chain =
        CertificateDer::pem_slice_iter(&read(&settings.cert_file, "ingress.tls.cert_file")?)
            .collect::<Result<Vec<_>, _>>()
            .context("ingress.tls.cert_file holds an unreadable certificate")?;
    anyhow::ensure!(
        !chain.is_empty(),
        "ingress.tls.cert_file holds no certificate"
    );
    let key = PrivateKeyDer::from_pem_slice(&read(&settings.key_file, "ingress.tls.key_file")?)
        .context("ingress.tls.key_file holds no usable private key")?;
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?;
    let builder = match &settings.client_ca_file {
        Some(path) => {
            let roots = roots_from_pem(
                &read(path, "ingress.tls.client_ca_file")?,
                "ingress.tls.client_ca_file",
            )?;
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .context("ingress.tls.client_ca_file")?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder
        .with_single_cert(chain, key)
        .context("ingress.tls.cert_file and key_file do not match")?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

fn roots_from_pem(pem: &[u8], key: &str) -> anyhow::Result<RootCertStore> {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(pem) {
        roots
            .add(cert.with_context(|| format!("{key} holds an unreadable certificate"))?)
            .with_context(|| format!("{key} holds an unusable CA certificate"))?;
    }
    anyhow::ensure!(!roots.is_empty(), "{key} holds no certificate");
    Ok(roots)
}

fn system_roots(instead: &str) -> anyhow::Result<RootCertStore> {
    let mut roots = RootCertStore::empty();
    let found = rustls_native_certs::load_native_certs();
    roots.add_parsable_certificates(found.certs);
    anyhow::ensure!(
        !roots.is_empty(),
        "no system CA certificates found; set {instead}"
    );
    Ok(roots)
}

/// `require`: like libpq, encrypt without authenticating the server. The handshake signatures
/// are still checked, so the session key belongs to whoever holds the presented certificate.
#[derive(Debug)]
struct EncryptOnly(Arc<CryptoProvider>);

impl ServerCertVerifier for EncryptOnly {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
