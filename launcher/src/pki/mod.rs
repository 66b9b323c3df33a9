//! `kubernate pki`: the certificates and kubeconfigs of a cluster.
//!
//! `init` creates everything a cluster needs in one directory; `node` adds
//! a node's identity later. Both are idempotent: what exists is kept (and
//! the CAs on disk sign whatever is missing), so running `init` again with
//! more nodes or store members only adds their files. `--force` replaces
//! everything, CAs included.
//!
//! The directory:
//!
//! ```text
//! ca.crt ca.key                        cluster CA
//! store-ca.crt store-ca.key            store CA
//! store/store-N.crt .key               store member N, client port (server)
//! store/store-N-peer.crt .key          store member N, peer port (server+client)
//! apiserver.crt .key                   API server serving cert
//! apiserver-store-client.crt .key      API server → store (store CA)
//! apiserver-kubelet-client.crt .key    API server → kubelets
//! admin.crt .key .kubeconfig           admin, in system:masters
//! controller-manager.* scheduler.* kube-proxy.*   control-plane clients
//! nodes/NAME.crt .key .kubeconfig      kubelet client identity
//! nodes/NAME-serving.crt .key          kubelet serving cert
//! service-account.key .pub             ServiceAccount token signing pair
//! ```

pub mod authority;
pub mod files;
pub mod plan;

use std::path::{Path, PathBuf};

use authority::Authority;
pub use files::Error;
use files::{Mode, PairState};
use plan::{Planned, Signer};

/// The cluster name written into kubeconfigs.
pub const CLUSTER_NAME: &str = "kubernate";
/// Where components and kubectl reach the API server by default.
pub const DEFAULT_SERVER: &str = "https://127.0.0.1:6443";
/// The API server's default `--service-cluster-ip-range`.
pub const DEFAULT_SERVICE_CIDR: &str = "10.96.0.0/12";

/// The options of `kubernate pki init`.
#[derive(Debug, Clone)]
pub struct InitOptions {
    pub dir: PathBuf,
    /// Extra names and addresses for the API server's certificate.
    pub apiserver_hosts: Vec<String>,
    pub store_members: u32,
    pub nodes: Vec<String>,
    /// The API server URL written into kubeconfigs.
    pub server: String,
    pub service_cidr: String,
    pub force: bool,
}

impl InitOptions {
    /// Defaults for a one-machine cluster in `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        InitOptions {
            dir: dir.into(),
            apiserver_hosts: Vec::new(),
            store_members: 1,
            nodes: Vec::new(),
            server: DEFAULT_SERVER.to_string(),
            service_cidr: DEFAULT_SERVICE_CIDR.to_string(),
            force: false,
        }
    }
}

/// What a command did, file by file.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Report {
    pub created: Vec<PathBuf>,
    pub kept: Vec<PathBuf>,
}

/// `kubernate pki init`.
pub fn init(opts: &InitOptions) -> Result<Report, Error> {
    if opts.store_members == 0 {
        return Err(Error::InvalidInput {
            what: "store member count",
            value: "0".into(),
            reason: "a cluster needs at least one store member".into(),
        });
    }
    let first_ip = plan::first_service_ip(&opts.service_cidr)?;
    for host in &opts.apiserver_hosts {
        authority::san(host)?;
    }
    let mut planned = plan::control_plane(&opts.apiserver_hosts, opts.store_members, first_ip);
    for node in &opts.nodes {
        planned.extend(plan::node(node)?);
    }
    let mut report = Report::default();
    make_dir(&opts.dir)?;
    let cluster = authority_for(
        &opts.dir,
        "ca",
        "kubernate-ca",
        Signer::Cluster,
        &planned,
        opts.force,
        &mut report,
    )?;
    let store = authority_for(
        &opts.dir,
        "store-ca",
        "kubernate-store-ca",
        Signer::Store,
        &planned,
        opts.force,
        &mut report,
    )?;
    issue_all(
        &opts.dir,
        &planned,
        &cluster,
        Some(&store),
        &opts.server,
        opts.force,
        &mut report,
    )?;
    service_account_keys(&opts.dir, opts.force, &mut report)?;
    Ok(report)
}

/// The API server URL for a new kubeconfig: the one given, else
/// admin.kubeconfig's, else [`DEFAULT_SERVER`].
fn server_for(dir: &Path, server: Option<&str>) -> String {
    match server {
        Some(s) => s.to_string(),
        None => common::kubeconfig::Kubeconfig::load(&dir.join("admin.kubeconfig"))
            .ok()
            .and_then(|kc| kc.clusters.first().map(|c| c.cluster.server.clone()))
            .unwrap_or_else(|| DEFAULT_SERVER.to_string()),
    }
}

/// `kubernate pki user NAME --group G`: a user's client certificate and
/// kubeconfig (`users/NAME.*`), signed by the existing cluster CA. What the
/// user may do is up to RBAC (bind a role to the name or a group).
pub fn add_user(dir: &Path, name: &str, groups: &[String], server: Option<&str>, force: bool) -> Result<Report, Error> {
    let planned = plan::user(name, groups)?;
    let cluster = Authority::load(dir, "ca")?;
    let server = server_for(dir, server);
    let mut report = Report::default();
    issue_all(dir, &planned, &cluster, None, &server, force, &mut report)?;
    Ok(report)
}

/// `kubernate pki node NAME`: a node's certificates and kubeconfig, signed
/// by the existing cluster CA. `server` defaults to the one in
/// `admin.kubeconfig`, else [`DEFAULT_SERVER`].
pub fn add_node(dir: &Path, name: &str, server: Option<&str>, force: bool) -> Result<Report, Error> {
    let planned = plan::node(name)?;
    for file in ["ca.crt", "ca.key"] {
        if !dir.join(file).exists() {
            return Err(Error::NoCa {
                dir: dir.to_path_buf(),
                missing: dir.join(file),
            });
        }
    }
    let cluster = Authority::load(dir, "ca")?;
    let server = server_for(dir, server);
    let mut report = Report::default();
    issue_all(dir, &planned, &cluster, None, &server, force, &mut report)?;
    Ok(report)
}

fn make_dir(dir: &Path) -> Result<(), Error> {
    if dir.exists() {
        return Ok(());
    }
    std::fs::create_dir_all(dir).map_err(files::io_err(dir, "creating the directory"))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .map_err(files::io_err(dir, "setting permissions"))?;
    }
    Ok(())
}

/// Loads or creates a CA. A CA is only created when none of the
/// certificates it would sign exist yet: otherwise those would silently stop
/// being trusted.
fn authority_for(
    dir: &Path,
    base: &str,
    common_name: &str,
    signer: Signer,
    planned: &[Planned],
    force: bool,
    report: &mut Report,
) -> Result<Authority, Error> {
    let (crt, key) = (dir.join(format!("{base}.crt")), dir.join(format!("{base}.key")));
    if !force && files::pair_state(&crt, &key)? == PairState::Absent {
        for p in planned.iter().filter(|p| p.signer == signer) {
            for ext in ["crt", "key"] {
                let path = dir.join(format!("{}.{ext}", p.base));
                if path.exists() {
                    return Err(Error::Orphaned { path, ca: crt });
                }
            }
        }
    }
    let ca = Authority::load_or_create(dir, base, common_name, force)?;
    let list = if ca.created {
        &mut report.created
    } else {
        &mut report.kept
    };
    list.extend([crt, key]);
    Ok(ca)
}

fn issue_all(
    dir: &Path,
    planned: &[Planned],
    cluster: &Authority,
    store: Option<&Authority>,
    server: &str,
    force: bool,
    report: &mut Report,
) -> Result<(), Error> {
    for p in planned {
        let ca = match (p.signer, store) {
            (Signer::Cluster, _) => cluster,
            (Signer::Store, Some(store)) => store,
            (Signer::Store, None) => continue,
        };
        let (crt, key) = (dir.join(format!("{}.crt", p.base)), dir.join(format!("{}.key", p.base)));
        let kept = !force && files::pair_state(&crt, &key)? == PairState::Present;
        if kept {
            report.kept.extend([crt.clone(), key.clone()]);
        } else {
            let issued = ca.issue(&p.spec)?;
            files::write(&key, issued.key_pem.as_bytes(), Mode::Secret)?;
            files::write(&crt, issued.cert_pem.as_bytes(), Mode::Public)?;
            report.created.extend([crt.clone(), key.clone()]);
        }
        if let Some(kubeconfig) = &p.kubeconfig {
            let path = dir.join(kubeconfig);
            if kept && path.exists() {
                report.kept.push(path);
                continue;
            }
            let config = common::kubeconfig::Kubeconfig::single(
                CLUSTER_NAME,
                server,
                &cluster.cert_pem,
                &p.spec.common_name,
                &files::read(&crt)?,
                &files::read(&key)?,
            );
            files::write(&path, config.to_yaml().as_bytes(), Mode::Secret)?;
            report.created.push(path);
        }
    }
    Ok(())
}

/// The key pair the API server signs ServiceAccount tokens with (ES256).
fn service_account_keys(dir: &Path, force: bool, report: &mut Report) -> Result<(), Error> {
    let (key, public) = (dir.join("service-account.key"), dir.join("service-account.pub"));
    if !force && files::pair_state(&public, &key)? == PairState::Present {
        report.kept.extend([key, public]);
        return Ok(());
    }
    let pair = authority::generate_key("ServiceAccount tokens")?;
    files::write(&key, pair.serialize_pem().as_bytes(), Mode::Secret)?;
    files::write(&public, pair.public_key_pem().as_bytes(), Mode::Public)?;
    report.created.extend([key, public]);
    Ok(())
}
