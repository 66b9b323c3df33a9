//! The kubeconfig file: where the API server is and who we are to it.
//!
//! Kubernate components read the same kubeconfig format kubectl does, so an
//! operator manages one kind of credential file. This module reads and
//! writes it (certificates inline as `*-data` or as file paths relative to
//! the kubeconfig) and resolves the current context into what a TLS client
//! needs. Fields this code does not know (exec plugins, extensions) are
//! ignored on read.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine;
use serde::{Deserialize, Serialize};

use crate::tls;

/// What can go wrong with a kubeconfig.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read kubeconfig {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("kubeconfig {origin} is not valid YAML: {source}")]
    Parse {
        origin: String,
        #[source]
        source: serde_yaml::Error,
    },
    #[error("kubeconfig {origin}: {message}")]
    Invalid { origin: String, message: String },
    #[error(transparent)]
    Tls(#[from] tls::Error),
}

/// A kubeconfig document (`apiVersion: v1`, `kind: Config`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "kebab-case")]
pub struct Kubeconfig {
    #[serde(rename = "apiVersion", default)]
    pub api_version: String,
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub clusters: Vec<NamedCluster>,
    #[serde(default)]
    pub users: Vec<NamedUser>,
    #[serde(default)]
    pub contexts: Vec<NamedContext>,
    #[serde(default)]
    pub current_context: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct NamedCluster {
    pub name: String,
    pub cluster: Cluster,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "kebab-case")]
pub struct Cluster {
    pub server: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate_authority: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate_authority_data: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_server_name: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct NamedUser {
    pub name: String,
    pub user: User,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "kebab-case")]
pub struct User {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_certificate: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_certificate_data: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_key_data: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    #[serde(rename = "tokenFile", default, skip_serializing_if = "Option::is_none")]
    pub token_file: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct NamedContext {
    pub name: String,
    pub context: ContextRef,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ContextRef {
    pub cluster: String,
    pub user: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

/// The current context, resolved: every file read and every `*-data`
/// decoded.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub server: String,
    /// PEM of the CA that signs the server's certificate.
    pub ca_pem: Vec<u8>,
    /// The client certificate and key, if the user has them.
    pub identity: Option<tls::Identity>,
    /// A bearer token, if the user has one.
    pub token: Option<String>,
    pub namespace: Option<String>,
}

impl Resolved {
    /// A rustls client configuration for this context.
    pub fn client_tls(&self, alpn: &[&[u8]]) -> Result<Arc<rustls::ClientConfig>, Error> {
        let cas = tls::parse_certs(&self.ca_pem, "certificate-authority")?;
        Ok(tls::client_config(&cas, self.identity.as_ref(), alpn)?)
    }
}

impl Kubeconfig {
    /// A kubeconfig with one cluster, one user authenticating with a client
    /// certificate, and one context joining them, all inline.
    pub fn single(
        cluster_name: &str,
        server: &str,
        ca_pem: &str,
        user_name: &str,
        cert_pem: &str,
        key_pem: &str,
    ) -> Self {
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        let context = format!("{user_name}@{cluster_name}");
        Kubeconfig {
            api_version: "v1".into(),
            kind: "Config".into(),
            clusters: vec![NamedCluster {
                name: cluster_name.into(),
                cluster: Cluster {
                    server: server.into(),
                    certificate_authority_data: Some(b64(ca_pem)),
                    ..Default::default()
                },
            }],
            users: vec![NamedUser {
                name: user_name.into(),
                user: User {
                    client_certificate_data: Some(b64(cert_pem)),
                    client_key_data: Some(b64(key_pem)),
                    ..Default::default()
                },
            }],
            contexts: vec![NamedContext {
                name: context.clone(),
                context: ContextRef {
                    cluster: cluster_name.into(),
                    user: user_name.into(),
                    namespace: None,
                },
            }],
            current_context: context,
        }
    }

    /// Parses kubeconfig YAML; `origin` names it in errors.
    pub fn from_yaml(text: &str, origin: &str) -> Result<Self, Error> {
        serde_yaml::from_str(text).map_err(|source| Error::Parse {
            origin: origin.to_string(),
            source,
        })
    }

    /// The document as YAML.
    pub fn to_yaml(&self) -> String {
        // Serialising plain strings and vectors cannot fail.
        serde_yaml::to_string(self).unwrap_or_default()
    }

    /// Reads a kubeconfig file.
    pub fn load(path: &Path) -> Result<Self, Error> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_yaml(&text, &path.display().to_string())
    }

    /// Reads a kubeconfig file and resolves its current context; relative
    /// file names inside it are taken relative to the file's directory.
    pub fn load_resolved(path: &Path) -> Result<Resolved, Error> {
        let base = path.parent().unwrap_or(Path::new("."));
        Self::load(path)?.resolve(base, &path.display().to_string())
    }

    /// Resolves the current context. `base` is the directory relative file
    /// names are taken from; `origin` names the document in errors.
    pub fn resolve(&self, base: &Path, origin: &str) -> Result<Resolved, Error> {
        let invalid = |message: String| Error::Invalid {
            origin: origin.to_string(),
            message,
        };
        let ctx = self
            .contexts
            .iter()
            .find(|c| c.name == self.current_context)
            .ok_or_else(|| invalid(format!("current-context {:?} not found", self.current_context)))?;
        let cluster = self
            .clusters
            .iter()
            .find(|c| c.name == ctx.context.cluster)
            .ok_or_else(|| invalid(format!("cluster {:?} not found", ctx.context.cluster)))?;
        let user = self
            .users
            .iter()
            .find(|u| u.name == ctx.context.user)
            .ok_or_else(|| invalid(format!("user {:?} not found", ctx.context.user)))?;
        let material = |data: &Option<String>, file: &Option<String>, what: &str| {
            read_material(base, data.as_deref(), file.as_deref(), what).map_err(&invalid)
        };
        let c = &cluster.cluster;
        let ca_pem = material(
            &c.certificate_authority_data,
            &c.certificate_authority,
            "certificate-authority",
        )?
        .ok_or_else(|| invalid(format!("cluster {:?} has no certificate-authority", cluster.name)))?;
        let u = &user.user;
        let cert = material(&u.client_certificate_data, &u.client_certificate, "client-certificate")?;
        let key = material(&u.client_key_data, &u.client_key, "client-key")?;
        let identity = match (cert, key) {
            (Some(cert), Some(key)) => Some(tls::Identity::from_pem(
                &cert,
                &format!("{origin}: client-certificate"),
                &key,
                &format!("{origin}: client-key"),
            )?),
            (None, None) => None,
            _ => {
                return Err(invalid(format!(
                    "user {:?} needs both a client certificate and a client key",
                    user.name
                )))
            }
        };
        let token = match (&u.token, &u.token_file) {
            (Some(t), _) => Some(t.clone()),
            (None, Some(file)) => {
                let path = base.join(file);
                let text = std::fs::read_to_string(&path)
                    .map_err(|e| invalid(format!("tokenFile {}: {e}", path.display())))?;
                Some(text.trim().to_string())
            }
            (None, None) => None,
        };
        Ok(Resolved {
            server: c.server.clone(),
            ca_pem,
            identity,
            token,
            namespace: ctx.context.namespace.clone(),
        })
    }
}

/// Inline base64 data wins over a file name, as in client-go.
fn read_material(base: &Path, data: Option<&str>, file: Option<&str>, what: &str) -> Result<Option<Vec<u8>>, String> {
    if let Some(data) = data {
        return base64::engine::general_purpose::STANDARD
            .decode(data.trim())
            .map(Some)
            .map_err(|e| format!("{what}-data is not valid base64: {e}"));
    }
    match file {
        Some(file) => {
            let path = base.join(file);
            std::fs::read(&path)
                .map(Some)
                .map_err(|e| format!("{what} {}: {e}", path.display()))
        }
        None => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_yaml_with_kubectl_field_names() {
        let kc = Kubeconfig::single("kubernate", "https://127.0.0.1:6443", "CA", "admin", "CERT", "KEY");
        let yaml = kc.to_yaml();
        for field in [
            "certificate-authority-data",
            "client-certificate-data",
            "client-key-data",
            "current-context: admin@kubernate",
            "apiVersion: v1",
            "kind: Config",
        ] {
            assert!(yaml.contains(field), "{field} missing from\n{yaml}");
        }
        assert_eq!(Kubeconfig::from_yaml(&yaml, "test").unwrap(), kc);
    }

    #[test]
    fn missing_context_is_named() {
        let mut kc = Kubeconfig::single("c", "https://x:1", "CA", "u", "C", "K");
        kc.current_context = "nope".into();
        let err = kc.resolve(Path::new("."), "k.yaml").unwrap_err();
        assert_eq!(err.to_string(), "kubeconfig k.yaml: current-context \"nope\" not found");
    }

    #[test]
    fn files_are_relative_to_the_kubeconfig_and_token_files_are_read() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ca.pem"), "CA-PEM").unwrap();
        std::fs::write(dir.path().join("token"), "s3cret\n").unwrap();
        let yaml = "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: https://h:6443\n    certificate-authority: ca.pem\nusers:\n- name: u\n  user:\n    tokenFile: token\ncontexts:\n- name: x\n  context:\n    cluster: c\n    user: u\n    namespace: dev\ncurrent-context: x\n";
        std::fs::write(dir.path().join("config"), yaml).unwrap();
        let r = Kubeconfig::load_resolved(&dir.path().join("config")).unwrap();
        assert_eq!(r.server, "https://h:6443");
        assert_eq!(r.ca_pem, b"CA-PEM");
        assert_eq!(r.token.as_deref(), Some("s3cret"));
        assert_eq!(r.namespace.as_deref(), Some("dev"));
        assert!(r.identity.is_none());
    }
}
