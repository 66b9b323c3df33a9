//! `kubernate pki` run as a user runs it: the real binary, a real directory,
//! and every certificate parsed and checked independently with x509-parser.

#![allow(clippy::unwrap_used)] // a panic in a test is a failed test

use std::path::Path;
use std::process::Command;

use x509_parser::extensions::GeneralName;
use x509_parser::pem::parse_x509_pem;

fn kubernate(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_kubernate"))
        .args(args)
        .output()
        .expect("run kubernate")
}

fn init(dir: &Path, extra: &[&str]) -> std::process::Output {
    let mut args = vec!["pki", "init", "--dir", dir.to_str().unwrap()];
    args.extend_from_slice(extra);
    kubernate(&args)
}

struct Cert {
    der: Vec<u8>,
}

impl Cert {
    fn load(path: &Path) -> Cert {
        let text = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let (_, pem) = parse_x509_pem(&text).unwrap();
        Cert { der: pem.contents }
    }

    fn parsed(&self) -> x509_parser::certificate::X509Certificate<'_> {
        x509_parser::parse_x509_certificate(&self.der).unwrap().1
    }

    fn cn(&self) -> String {
        let c = self.parsed();
        let cn = c
            .subject()
            .iter_common_name()
            .next()
            .unwrap()
            .as_str()
            .unwrap()
            .to_string();
        cn
    }

    fn orgs(&self) -> Vec<String> {
        self.parsed()
            .subject()
            .iter_organization()
            .map(|o| o.as_str().unwrap().to_string())
            .collect()
    }

    fn sans(&self) -> Vec<String> {
        let c = self.parsed();
        let Some(ext) = c.subject_alternative_name().unwrap() else {
            return vec![];
        };
        ext.value
            .general_names
            .iter()
            .map(|n| match n {
                GeneralName::DNSName(d) => d.to_string(),
                GeneralName::IPAddress(b) if b.len() == 4 => {
                    std::net::Ipv4Addr::from(<[u8; 4]>::try_from(*b).unwrap()).to_string()
                }
                GeneralName::IPAddress(b) => std::net::Ipv6Addr::from(<[u8; 16]>::try_from(*b).unwrap()).to_string(),
                other => format!("{other:?}"),
            })
            .collect()
    }

    /// Whether `issuer` signed this certificate (signature and names).
    fn signed_by(&self, issuer: &Cert) -> bool {
        let (c, i) = (self.parsed(), issuer.parsed());
        c.issuer() == i.subject() && c.verify_signature(Some(i.public_key())).is_ok()
    }

    fn eku(&self) -> (bool, bool) {
        let c = self.parsed();
        let eku = c.extended_key_usage().unwrap().expect("extended key usage").value;
        (eku.server_auth, eku.client_auth)
    }

    fn is_ca(&self) -> bool {
        self.parsed()
            .basic_constraints()
            .unwrap()
            .map(|b| b.value.ca)
            .unwrap_or(false)
    }
}

/// (file, CA, CN, O, serverAuth, clientAuth)
type Expected<'a> = (String, &'a Cert, String, Vec<&'a str>, bool, bool);

#[cfg(unix)]
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn init_creates_every_identity_signed_by_the_right_ca() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("pki");
    let out = init(
        &dir,
        &[
            "--apiserver-hosts",
            "api.example.com,192.0.2.10",
            "--store-members",
            "3",
            "--nodes",
            "n1,n2",
        ],
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    let ca = Cert::load(&dir.join("ca.crt"));
    let store_ca = Cert::load(&dir.join("store-ca.crt"));
    assert!(ca.is_ca() && store_ca.is_ca());
    assert_ne!(ca.cn(), store_ca.cn());

    let expected: Vec<Expected<'_>> = {
        let mut v = vec![
            (
                "apiserver".to_string(),
                &ca,
                "kube-apiserver".to_string(),
                vec![],
                true,
                false,
            ),
            (
                "apiserver-store-client".into(),
                &store_ca,
                "kube-apiserver-etcd-client".into(),
                vec![],
                false,
                true,
            ),
            (
                "apiserver-kubelet-client".into(),
                &ca,
                "kube-apiserver-kubelet-client".into(),
                vec!["system:masters"],
                false,
                true,
            ),
            ("admin".into(), &ca, "admin".into(), vec!["system:masters"], false, true),
            (
                "scheduler".into(),
                &ca,
                "system:kube-scheduler".into(),
                vec![],
                false,
                true,
            ),
            (
                "controller-manager".into(),
                &ca,
                "system:kube-controller-manager".into(),
                vec![],
                false,
                true,
            ),
            (
                "kube-proxy".into(),
                &ca,
                "system:kube-proxy".into(),
                vec!["system:node-proxier"],
                false,
                true,
            ),
        ];
        for i in 0..3 {
            v.push((
                format!("store/store-{i}"),
                &store_ca,
                format!("store-{i}"),
                vec![],
                true,
                false,
            ));
            v.push((
                format!("store/store-{i}-peer"),
                &store_ca,
                format!("store-{i}"),
                vec![],
                true,
                true,
            ));
        }
        for n in ["n1", "n2"] {
            v.push((
                format!("nodes/{n}"),
                &ca,
                format!("system:node:{n}"),
                vec!["system:nodes"],
                false,
                true,
            ));
            v.push((
                format!("nodes/{n}-serving"),
                &ca,
                format!("system:node:{n}"),
                vec!["system:nodes"],
                true,
                false,
            ));
        }
        v
    };
    for (base, issuer, cn, orgs, server, client) in &expected {
        let cert = Cert::load(&dir.join(format!("{base}.crt")));
        assert!(cert.signed_by(issuer), "{base} is not signed by the expected CA");
        let other = if std::ptr::eq(*issuer, &ca) { &store_ca } else { &ca };
        assert!(!cert.signed_by(other), "{base} chains to the wrong CA");
        assert_eq!(&cert.cn(), cn, "{base} CN");
        assert_eq!(cert.orgs(), *orgs, "{base} O");
        assert_eq!(cert.eku(), (*server, *client), "{base} extended key usage");
        assert!(!cert.is_ca(), "{base} must not be a CA");
        #[cfg(unix)]
        {
            assert_eq!(mode(&dir.join(format!("{base}.key"))), 0o600, "{base}.key mode");
            assert_eq!(mode(&dir.join(format!("{base}.crt"))), 0o644, "{base}.crt mode");
        }
    }

    let sans = Cert::load(&dir.join("apiserver.crt")).sans();
    for want in [
        "localhost",
        "127.0.0.1",
        "::1",
        "kubernetes.default.svc.cluster.local",
        "10.96.0.1",
        "api.example.com",
        "192.0.2.10",
    ] {
        assert!(sans.iter().any(|s| s == want), "apiserver SANs {sans:?} lack {want}");
    }
    let sans = Cert::load(&dir.join("nodes/n1-serving.crt")).sans();
    assert!(
        sans.contains(&"n1".to_string()) && sans.contains(&"127.0.0.1".to_string()),
        "{sans:?}"
    );
    let sans = Cert::load(&dir.join("store/store-2.crt")).sans();
    assert!(
        sans.contains(&"store-2".to_string()) && sans.contains(&"localhost".to_string()),
        "{sans:?}"
    );

    // Keys and kubeconfigs are secret; the ServiceAccount pair is ES256.
    #[cfg(unix)]
    for secret in [
        "ca.key",
        "store-ca.key",
        "service-account.key",
        "admin.kubeconfig",
        "nodes/n2.kubeconfig",
    ] {
        assert_eq!(mode(&dir.join(secret)), 0o600, "{secret}");
    }
    let sa_pub = std::fs::read_to_string(dir.join("service-account.pub")).unwrap();
    assert!(sa_pub.starts_with("-----BEGIN PUBLIC KEY-----"), "{sa_pub}");

    // Every kubeconfig resolves to its identity, trusting the cluster CA.
    for (kubeconfig, cn) in [
        ("admin.kubeconfig", "admin"),
        ("scheduler.kubeconfig", "system:kube-scheduler"),
        ("controller-manager.kubeconfig", "system:kube-controller-manager"),
        ("kube-proxy.kubeconfig", "system:kube-proxy"),
        ("nodes/n1.kubeconfig", "system:node:n1"),
    ] {
        let resolved = common::kubeconfig::Kubeconfig::load_resolved(&dir.join(kubeconfig)).unwrap();
        assert_eq!(resolved.server, "https://127.0.0.1:6443");
        assert_eq!(
            resolved.ca_pem,
            std::fs::read(dir.join("ca.crt")).unwrap(),
            "{kubeconfig} CA"
        );
        let identity = resolved.identity.clone().expect("client certificate");
        let leaf = Cert {
            der: identity.certs[0].to_vec(),
        };
        assert_eq!(leaf.cn(), cn, "{kubeconfig}");
        assert!(leaf.signed_by(&ca));
        resolved.client_tls(&[b"h2"]).expect("usable TLS client config");
    }
}

#[test]
fn rerun_keeps_files_adds_what_is_new_and_force_replaces() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    assert!(init(dir, &[]).status.success());
    let ca_key = std::fs::read(dir.join("ca.key")).unwrap();
    let admin = std::fs::read(dir.join("admin.crt")).unwrap();

    // A second run with a node keeps the CA and admin and adds the node.
    let out = init(dir, &["--nodes", "late"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(std::fs::read(dir.join("ca.key")).unwrap(), ca_key);
    assert_eq!(std::fs::read(dir.join("admin.crt")).unwrap(), admin);
    let node = Cert::load(&dir.join("nodes/late.crt"));
    assert!(node.signed_by(&Cert::load(&dir.join("ca.crt"))));
    assert!(String::from_utf8_lossy(&out.stdout).contains("created"));

    // A half pair is refused, naming the file, and nothing is replaced.
    std::fs::remove_file(dir.join("admin.key")).unwrap();
    let out = init(dir, &[]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("admin.crt exists but") && err.contains("admin.key does not"),
        "{err}"
    );
    assert_eq!(std::fs::read(dir.join("admin.crt")).unwrap(), admin);

    // --force regenerates everything, CA included.
    let out = init(dir, &["--force"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_ne!(std::fs::read(dir.join("ca.key")).unwrap(), ca_key);
    let ca = Cert::load(&dir.join("ca.crt"));
    assert!(Cert::load(&dir.join("admin.crt")).signed_by(&ca));
}

#[test]
fn a_lost_ca_is_not_silently_replaced() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    assert!(init(dir, &[]).status.success());
    std::fs::remove_file(dir.join("store-ca.crt")).unwrap();
    std::fs::remove_file(dir.join("store-ca.key")).unwrap();
    let out = init(dir, &[]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("store-ca.crt") && err.contains("--force"), "{err}");
    assert!(!dir.join("store-ca.key").exists(), "nothing written on error");
}

#[test]
fn pki_node_adds_a_node_later_and_checks_its_input() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let d = dir.to_str().unwrap();
    assert!(init(dir, &["--server", "https://10.1.2.3:6443"]).status.success());
    let out = kubernate(&["pki", "node", "worker-7", "--dir", d]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let ca = Cert::load(&dir.join("ca.crt"));
    let cert = Cert::load(&dir.join("nodes/worker-7.crt"));
    assert!(cert.signed_by(&ca));
    assert_eq!(cert.cn(), "system:node:worker-7");
    let kc = common::kubeconfig::Kubeconfig::load_resolved(&dir.join("nodes/worker-7.kubeconfig")).unwrap();
    assert_eq!(kc.server, "https://10.1.2.3:6443", "server taken from admin.kubeconfig");

    let out = kubernate(&["pki", "node", "Bad_Name", "--dir", d]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid node name \"Bad_Name\""));

    let empty = tempfile::tempdir().unwrap();
    let out = kubernate(&["pki", "node", "n1", "--dir", empty.path().to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no cluster CA"));

    let out = init(dir, &["--apiserver-hosts", "not a host"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid host name \"not a host\""));
}
