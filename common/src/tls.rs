//! Mutual TLS configurations, loaded from PEM files.
//!
//! Every connection between Kubernate components is TLS in both directions:
//! the server proves who it is with a certificate from the cluster CA, and so
//! does the client, whose certificate subject becomes its user name (CN) and
//! groups (O). This module turns certificate and key files into rustls
//! configurations that do exactly that, using the `ring` crypto provider so
//! no system crypto library is involved.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};

/// What can go wrong while loading TLS material.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A file held no usable PEM certificate.
    #[error("{origin}: no PEM certificate found")]
    NoCertificate { origin: String },
    /// A file held no usable PEM private key (PKCS#8, PKCS#1 or SEC1).
    #[error("{origin}: no PEM private key found")]
    NoKey { origin: String },
    /// The PEM text was malformed.
    #[error("{origin}: malformed PEM: {detail}")]
    Pem { origin: String, detail: String },
    /// A CA certificate was not acceptable as a trust anchor.
    #[error("{origin}: not a usable CA certificate: {source}")]
    TrustAnchor {
        origin: String,
        #[source]
        source: rustls::Error,
    },
    /// rustls refused the configuration (for example a key that does not
    /// match its certificate).
    #[error("TLS configuration rejected: {0}")]
    Config(#[from] rustls::Error),
    /// The client-certificate verifier could not be built.
    #[error("client certificate verifier: {0}")]
    Verifier(String),
}

/// A certificate chain and the private key that goes with it.
#[derive(Debug)]
pub struct Identity {
    /// The leaf certificate first, then any intermediates.
    pub certs: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
}

impl Clone for Identity {
    fn clone(&self) -> Self {
        Identity {
            certs: self.certs.clone(),
            key: self.key.clone_key(),
        }
    }
}

impl Identity {
    /// Loads a certificate chain and key from two PEM files.
    pub fn from_files(cert: &Path, key: &Path) -> Result<Self, Error> {
        Self::from_pem(
            &read(cert)?,
            &cert.display().to_string(),
            &read(key)?,
            &key.display().to_string(),
        )
    }

    /// Parses a certificate chain and key from PEM text; `*_origin` names
    /// where the text came from, for error messages.
    pub fn from_pem(cert_pem: &[u8], cert_origin: &str, key_pem: &[u8], key_origin: &str) -> Result<Self, Error> {
        Ok(Identity {
            certs: parse_certs(cert_pem, cert_origin)?,
            key: parse_key(key_pem, key_origin)?,
        })
    }
}

/// Whether a server demands a client certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientAuth {
    /// Every client must present a certificate from the client CA. The
    /// default between components.
    Required,
    /// As `Required`, and the certificate's CN must be one of these: the
    /// handshake itself fails otherwise (the store admits only the API
    /// server this way).
    RequiredWithCn(Vec<String>),
    /// A client may present one; one that does not must authenticate some
    /// other way (a bearer token). Used by the API server's REST port, where
    /// kubectl may come with a token.
    Optional,
    /// No client certificates are asked for (server-only TLS).
    None,
}

/// The crypto provider used for every configuration: `ring`.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Reads a file, naming it in the error.
pub fn read(path: &Path) -> Result<Vec<u8>, Error> {
    std::fs::read(path).map_err(|source| Error::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// Every certificate in PEM text; at least one is required.
pub fn parse_certs(pem: &[u8], origin: &str) -> Result<Vec<CertificateDer<'static>>, Error> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Error::Pem {
            origin: origin.to_string(),
            detail: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(Error::NoCertificate {
            origin: origin.to_string(),
        });
    }
    Ok(certs)
}

/// The first private key in PEM text.
pub fn parse_key(pem: &[u8], origin: &str) -> Result<PrivateKeyDer<'static>, Error> {
    PrivateKeyDer::from_pem_slice(pem).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => Error::NoKey {
            origin: origin.to_string(),
        },
        other => Error::Pem {
            origin: origin.to_string(),
            detail: other.to_string(),
        },
    })
}

/// Loads every certificate of a PEM file (a CA bundle).
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, Error> {
    parse_certs(&read(path)?, &path.display().to_string())
}

/// A trust store holding the given CA certificates.
pub fn root_store(cas: &[CertificateDer<'static>], origin: &str) -> Result<RootCertStore, Error> {
    let mut roots = RootCertStore::empty();
    for ca in cas {
        roots.add(ca.clone()).map_err(|source| Error::TrustAnchor {
            origin: origin.to_string(),
            source,
        })?;
    }
    Ok(roots)
}

/// A server configuration presenting `identity` and checking client
/// certificates against `client_cas` as `mode` says. `alpn` lists the
/// protocols offered, most preferred first (for gRPC: `h2`).
pub fn server_config(
    identity: &Identity,
    client_cas: &[CertificateDer<'static>],
    mode: ClientAuth,
    alpn: &[&[u8]],
) -> Result<Arc<ServerConfig>, Error> {
    let provider = provider();
    let builder = ServerConfig::builder_with_provider(provider.clone()).with_safe_default_protocol_versions()?;
    let builder = if mode == ClientAuth::None {
        builder.with_no_client_auth()
    } else {
        let roots = Arc::new(root_store(client_cas, "client CA")?);
        let verifier = WebPkiClientVerifier::builder_with_provider(roots, provider);
        let verifier = match mode {
            ClientAuth::Optional => verifier.allow_unauthenticated(),
            _ => verifier,
        }
        .build()
        .map_err(|e| Error::Verifier(e.to_string()))?;
        match mode {
            ClientAuth::RequiredWithCn(allowed) => builder.with_client_cert_verifier(Arc::new(CnAllowList {
                inner: verifier,
                allowed,
            })),
            _ => builder.with_client_cert_verifier(verifier),
        }
    };
    let mut config = builder.with_single_cert(identity.certs.clone(), identity.key.clone_key())?;
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}

/// A client configuration trusting `server_cas` and, when given, presenting
/// `identity` as its client certificate.
pub fn client_config(
    server_cas: &[CertificateDer<'static>],
    identity: Option<&Identity>,
    alpn: &[&[u8]],
) -> Result<Arc<ClientConfig>, Error> {
    let roots = root_store(server_cas, "server CA")?;
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots);
    let mut config = match identity {
        Some(id) => builder.with_client_auth_cert(id.certs.clone(), id.key.clone_key())?,
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}

/// A client verifier that, after the usual chain check, admits only
/// certificates whose subject CN is in `allowed`.
#[derive(Debug)]
struct CnAllowList {
    inner: Arc<dyn rustls::server::danger::ClientCertVerifier>,
    allowed: Vec<String>,
}

impl rustls::server::danger::ClientCertVerifier for CnAllowList {
    fn root_hint_subjects(&self) -> &[rustls::DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::server::danger::ClientCertVerified, rustls::Error> {
        let verified = self.inner.verify_client_cert(end_entity, intermediates, now)?;
        let cn = x509_parser::parse_x509_certificate(end_entity).ok().and_then(|(_, c)| {
            c.subject()
                .iter_common_name()
                .next()
                .and_then(|n| n.as_str().ok().map(str::to_string))
        });
        match cn {
            Some(cn) if self.allowed.contains(&cn) => Ok(verified),
            _ => Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::ApplicationVerificationFailure,
            )),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// File paths of a server's TLS material, as given on a command line.
#[derive(Debug, Clone)]
pub struct ServerFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub client_ca: PathBuf,
}

impl ServerFiles {
    /// Loads the files into a server configuration.
    pub fn load(&self, mode: ClientAuth, alpn: &[&[u8]]) -> Result<Arc<ServerConfig>, Error> {
        let identity = Identity::from_files(&self.cert, &self.key)?;
        server_config(&identity, &load_certs(&self.client_ca)?, mode, alpn)
    }
}

/// File paths of a client's TLS material.
#[derive(Debug, Clone)]
pub struct ClientFiles {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl ClientFiles {
    /// Loads the files into a client configuration.
    pub fn load(&self, alpn: &[&[u8]]) -> Result<Arc<ClientConfig>, Error> {
        let identity = Identity::from_files(&self.cert, &self.key)?;
        client_config(&load_certs(&self.ca)?, Some(&identity), alpn)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_pem_is_a_clear_error() {
        let err = parse_certs(b"", "ca.crt").unwrap_err();
        assert_eq!(err.to_string(), "ca.crt: no PEM certificate found");
        let err = parse_key(b"not pem", "ca.key").unwrap_err();
        assert_eq!(err.to_string(), "ca.key: no PEM private key found");
    }

    #[test]
    fn missing_file_names_the_file() {
        let err = load_certs(Path::new("/nonexistent/ca.crt")).unwrap_err();
        assert!(err.to_string().starts_with("cannot read /nonexistent/ca.crt"));
    }
}
