//! TLS termination for `protocol "https"` listeners (rustls).

use std::sync::Arc;

use anyhow::Context;
use std::collections::HashMap;

use frameguard_config::{Config, Protocol, TlsFiles};
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::{self, ServerConfig};
use tokio_rustls::TlsAcceptor;

/// Load the certificate chain and key and build an acceptor offering HTTP/1.1 only (WebSocket
/// upgrades need it).
pub fn acceptor(files: &TlsFiles) -> anyhow::Result<TlsAcceptor> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.cert_file)
        .with_context(|| format!("cannot read certificate file {}", files.cert_file.display()))?
        .collect::<Result<_, _>>()
        .with_context(|| format!("bad certificate in {}", files.cert_file.display()))?;
    if certs.is_empty() {
        anyhow::bail!("no certificate in {}", files.cert_file.display());
    }
    let key = PrivateKeyDer::from_pem_file(&files.key_file)
        .with_context(|| format!("cannot read private key from {}", files.key_file.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .context("certificate and key do not match")?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// TLS acceptors of the `https` listeners, by listener name.
pub type TlsAcceptors = HashMap<String, TlsAcceptor>;

pub fn acceptors(config: &Config) -> anyhow::Result<TlsAcceptors> {
    config
        .listeners
        .iter()
        .filter(|l| l.protocol == Protocol::Https)
        .map(|l| {
            let files = l.tls.as_ref().context("https listener without tls block")?;
            let acceptor = acceptor(files).with_context(|| format!("listener `{}`", l.name))?;
            Ok((l.name.clone(), acceptor))
        })
        .collect()
}
