//! TLS on the client ports (rustls, with the `ring` provider).
//!
//! - The configuration Redis users know (`tls-port`, `tls-cert-file`, `tls-key-file`,
//!   `tls-ca-cert-file`, `tls-auth-clients`) becomes a rustls server configuration at start
//!   ([`TlsConfig::server_config`]), so a bad certificate fails the start with its file named,
//!   never a connection later. The Redis port serves it on its TLS port; the native port, when
//!   told to, speaks TLS instead of plain ZeroMQ ([`tunnel`]).
//! - [`client_config`] builds the Rust client's side from PEM files (`redis-cli`'s `--cacert`,
//!   `--cert`, `--key`).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::RootCertStore;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;

pub mod tunnel;

/// Whether clients must present a certificate (Redis's `tls-auth-clients`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ClientAuth {
    /// Every client must present a certificate signed by the CA (Redis's default, `yes`).
    #[default]
    Required,
    /// A client may present one; if it does, it must be valid (`optional`).
    Optional,
    /// Clients are not asked for one (`no`).
    No,
}

impl std::str::FromStr for ClientAuth {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        match text.to_ascii_lowercase().as_str() {
            "yes" => Ok(Self::Required),
            "optional" => Ok(Self::Optional),
            "no" => Ok(Self::No),
            other => Err(format!("tls-auth-clients {other:?} is not yes, optional or no")),
        }
    }
}

/// The Redis port's TLS listener.
#[derive(Clone, Debug)]
pub struct TlsConfig {
    /// The Redis port's TLS port (0 picks a free one). The native port, told to use TLS
    /// ([`crate::native::FrontEndConfig::tls`]), uses the same files on its own port.
    pub port: u16,
    /// The server's certificate chain, PEM.
    pub cert_file: PathBuf,
    /// The server's private key, PEM.
    pub key_file: PathBuf,
    /// The CA that signs client certificates, PEM (needed unless `auth_clients` is `No`).
    pub ca_cert_file: Option<PathBuf>,
    /// Whether clients must present a certificate.
    pub auth_clients: ClientAuth,
}

fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .and_then(Iterator::collect)
        .map_err(|e| format!("cannot read certificates from {}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{} holds no PEM certificate", path.display()));
    }
    Ok(certs)
}

impl TlsConfig {
    /// The rustls configuration: certificates and key loaded and checked, client
    /// authentication set up.
    ///
    /// # Errors
    /// A file that cannot be read or parsed, a key that does not match the certificate, a
    /// missing CA when clients must authenticate; each message names the file or setting.
    pub fn server_config(&self) -> Result<Arc<rustls::ServerConfig>, String> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let certs = certificates(&self.cert_file)?;
        let key = PrivateKeyDer::from_pem_file(&self.key_file).map_err(|e| {
            format!("cannot read a private key from {}: {e}", self.key_file.display())
        })?;
        let builder = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS: {e}"))?;
        let builder = match (self.auth_clients, &self.ca_cert_file) {
            (ClientAuth::No, _) => builder.with_no_client_auth(),
            (_, None) => {
                return Err(
                    "tls-auth-clients needs --tls-ca-cert-file (or --tls-auth-clients no)".into()
                );
            }
            (auth, Some(ca)) => {
                let mut roots = RootCertStore::empty();
                for cert in certificates(ca)? {
                    roots.add(cert).map_err(|e| format!("{}: {e}", ca.display()))?;
                }
                let verifier =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
                let verifier = if auth == ClientAuth::Optional {
                    verifier.allow_unauthenticated()
                } else {
                    verifier
                };
                builder.with_client_cert_verifier(
                    verifier.build().map_err(|e| format!("{}: {e}", ca.display()))?,
                )
            }
        };
        let config = builder.with_single_cert(certs, key).map_err(|e| {
            format!(
                "{} and {} do not make a certificate and its key: {e}",
                self.cert_file.display(),
                self.key_file.display()
            )
        })?;
        Ok(Arc::new(config))
    }
}

/// A client's TLS configuration: servers are trusted when their certificate chains to a CA in
/// `ca_file` (PEM) and names the host dialled; `identity` is the client's own certificate chain
/// and key (PEM files), for servers that require one.
///
/// # Errors
/// A file that cannot be read or parsed, or a certificate and key that do not match; each
/// message names the file.
///
/// # Example
/// ```no_run
/// use std::path::Path;
/// let tls = anna_kvs::tls::client_config(Path::new("ca.pem"), None)?;
/// let config = anna_kvs::client::ClientConfig { tls: Some(tls), ..Default::default() };
/// # Ok::<(), String>(())
/// ```
pub fn client_config(
    ca_file: &Path,
    identity: Option<(&Path, &Path)>,
) -> Result<Arc<rustls::ClientConfig>, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = RootCertStore::empty();
    for cert in certificates(ca_file)? {
        roots.add(cert).map_err(|e| format!("{}: {e}", ca_file.display()))?;
    }
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .with_root_certificates(roots);
    let config = match identity {
        None => builder.with_no_client_auth(),
        Some((cert_file, key_file)) => {
            let key = PrivateKeyDer::from_pem_file(key_file).map_err(|e| {
                format!("cannot read a private key from {}: {e}", key_file.display())
            })?;
            builder.with_client_auth_cert(certificates(cert_file)?, key).map_err(|e| {
                format!(
                    "{} and {} do not make a certificate and its key: {e}",
                    cert_file.display(),
                    key_file.display()
                )
            })?
        }
    };
    Ok(Arc::new(config))
}
