//! Certificate authorities and the certificates they issue.
//!
//! A cluster has two CAs, as etcd deployments do: the cluster CA signs every
//! identity that talks to the API server (and the API server's own serving
//! certificate), while the store CA signs only the store members and the API
//! server's store-client certificate. A component certificate from the
//! cluster CA therefore cannot open the store. All keys are ECDSA P-256:
//! small, fast, and accepted by kubectl, etcd and rustls alike.

use std::path::Path;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use time::{Duration, OffsetDateTime};

use super::files::{self, Error, Mode, PairState};

/// How long a CA certificate is valid.
pub const CA_VALIDITY: Duration = Duration::days(3650);
/// How long a leaf certificate is valid; `pki init --force` reissues.
pub const LEAF_VALIDITY: Duration = Duration::days(365);
/// Backdating, so a peer whose clock is slightly behind accepts a new cert.
const CLOCK_SKEW: Duration = Duration::minutes(5);

/// What a certificate may be used for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Usage {
    /// A TLS server (serverAuth).
    Server,
    /// A TLS client (clientAuth).
    Client,
    /// Both, for store members talking to each other.
    Peer,
}

/// One certificate to issue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeafSpec {
    /// Subject CN: the user name the API server sees.
    pub common_name: String,
    /// Subject O entries: the groups the API server sees.
    pub organizations: Vec<String>,
    /// DNS names and IP addresses a server answers to.
    pub sans: Vec<String>,
    pub usage: Usage,
}

/// A certificate and its private key, PEM-encoded.
#[derive(Debug, Clone)]
pub struct Issued {
    pub cert_pem: String,
    pub key_pem: String,
}

/// A CA that can sign.
pub struct Authority {
    pub cert_pem: String,
    issuer: Issuer<'static, KeyPair>,
    /// Whether this run created it (so certificates on disk from an older
    /// CA are stale).
    pub created: bool,
}

impl Authority {
    /// Loads `<base>.crt`/`<base>.key` from `dir`, or creates them when both
    /// are absent (or `force` is set). A half pair is refused.
    pub fn load_or_create(dir: &Path, base: &str, common_name: &str, force: bool) -> Result<Self, Error> {
        let (cert, key) = (dir.join(format!("{base}.crt")), dir.join(format!("{base}.key")));
        if !force && files::pair_state(&cert, &key)? == PairState::Present {
            return Self::load(dir, base);
        }
        let key_pair = generate_key(common_name)?;
        let mut params = CertificateParams::default();
        params.distinguished_name = name(common_name, &[]);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let now = OffsetDateTime::now_utc();
        params.not_before = now - CLOCK_SKEW;
        params.not_after = now + CA_VALIDITY;
        let cert_pem = params
            .self_signed(&key_pair)
            .map_err(|e| generate_err(common_name, e))?
            .pem();
        files::write(&key, key_pair.serialize_pem().as_bytes(), Mode::Secret)?;
        files::write(&cert, cert_pem.as_bytes(), Mode::Public)?;
        Ok(Authority {
            cert_pem,
            issuer: Issuer::new(params, key_pair),
            created: true,
        })
    }

    /// Loads an existing CA from `<base>.crt`/`<base>.key` in `dir`.
    pub fn load(dir: &Path, base: &str) -> Result<Self, Error> {
        let (cert, key) = (dir.join(format!("{base}.crt")), dir.join(format!("{base}.key")));
        let cert_pem = files::read(&cert)?;
        let key_pair = KeyPair::from_pem(&files::read(&key)?).map_err(|e| Error::Unusable {
            path: key.clone(),
            what: "private key",
            detail: e.to_string(),
        })?;
        let issuer = Issuer::from_ca_cert_pem(&cert_pem, key_pair).map_err(|e| Error::Unusable {
            path: cert.clone(),
            what: "CA certificate",
            detail: e.to_string(),
        })?;
        Ok(Authority {
            cert_pem,
            issuer,
            created: false,
        })
    }

    /// Issues a certificate for `spec` with a fresh key.
    pub fn issue(&self, spec: &LeafSpec) -> Result<Issued, Error> {
        let key_pair = generate_key(&spec.common_name)?;
        let mut params = CertificateParams::default();
        params.distinguished_name = name(&spec.common_name, &spec.organizations);
        params.subject_alt_names = spec.sans.iter().map(|s| san(s)).collect::<Result<_, _>>()?;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
        params.extended_key_usages = match spec.usage {
            Usage::Server => vec![ExtendedKeyUsagePurpose::ServerAuth],
            Usage::Client => vec![ExtendedKeyUsagePurpose::ClientAuth],
            Usage::Peer => vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth],
        };
        params.use_authority_key_identifier_extension = true;
        let now = OffsetDateTime::now_utc();
        params.not_before = now - CLOCK_SKEW;
        params.not_after = now + LEAF_VALIDITY;
        let cert = params
            .signed_by(&key_pair, &self.issuer)
            .map_err(|e| generate_err(&spec.common_name, e))?;
        Ok(Issued {
            cert_pem: cert.pem(),
            key_pem: key_pair.serialize_pem(),
        })
    }
}

/// A fresh ECDSA P-256 key.
pub fn generate_key(purpose: &str) -> Result<KeyPair, Error> {
    KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(|e| generate_err(&format!("a key for {purpose}"), e))
}

fn generate_err(what: &str, e: rcgen::Error) -> Error {
    Error::Generate {
        what: what.to_string(),
        detail: e.to_string(),
    }
}

fn name(common_name: &str, organizations: &[String]) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    for org in organizations {
        dn.push(DnType::OrganizationName, org.as_str());
    }
    dn.push(DnType::CommonName, common_name);
    dn
}

/// An IP address, or else a DNS name (validated).
pub fn san(value: &str) -> Result<SanType, Error> {
    if let Ok(ip) = value.parse::<std::net::IpAddr>() {
        return Ok(SanType::IpAddress(ip));
    }
    let invalid = |reason: &str| Error::InvalidInput {
        what: "host name",
        value: value.to_string(),
        reason: reason.to_string(),
    };
    if value.is_empty() || value.len() > 253 {
        return Err(invalid("must be 1 to 253 characters"));
    }
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    let labels: Vec<&str> = value.strip_prefix("*.").unwrap_or(value).split('.').collect();
    if !labels.iter().all(|l| label_ok(l)) {
        return Err(invalid(
            "must be an IP address or a DNS name of letters, digits, '-' and '.'",
        ));
    }
    let dns = value
        .to_string()
        .try_into()
        .map_err(|_| invalid("not an ASCII DNS name"))?;
    Ok(SanType::DnsName(dns))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sans_accept_ips_and_dns_names_and_refuse_junk() {
        assert!(matches!(san("10.96.0.1").unwrap(), SanType::IpAddress(_)));
        assert!(matches!(san("::1").unwrap(), SanType::IpAddress(_)));
        assert!(matches!(san("kubernetes.default.svc").unwrap(), SanType::DnsName(_)));
        for bad in ["", "bad host", "-x.example", "a..b", "ünïcode"] {
            let err = san(bad).unwrap_err().to_string();
            assert!(err.starts_with("invalid host name"), "{bad}: {err}");
        }
    }

    #[test]
    fn created_ca_can_be_loaded_back_and_signs() {
        let dir = tempfile::tempdir().unwrap();
        let ca = Authority::load_or_create(dir.path(), "ca", "test-ca", false).unwrap();
        assert!(ca.created);
        let again = Authority::load_or_create(dir.path(), "ca", "test-ca", false).unwrap();
        assert!(!again.created);
        assert_eq!(again.cert_pem, ca.cert_pem);
        let leaf = again
            .issue(&LeafSpec {
                common_name: "x".into(),
                organizations: vec![],
                sans: vec!["localhost".into()],
                usage: Usage::Server,
            })
            .unwrap();
        assert!(leaf.cert_pem.starts_with("-----BEGIN CERTIFICATE-----"));
        assert!(leaf.key_pem.contains("PRIVATE KEY"));
    }
}
