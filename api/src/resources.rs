//! The table of every built-in resource the API server serves.
//!
//! Several parts of Kubernate have to agree, exactly, on what each resource is:
//!
//! * **discovery** (`/api`, `/apis`, `/apis/<group>/<version>`) advertises each
//!   resource's kind, plural, singular, short names, scope, verbs, subresources
//!   and categories. kubectl and the client libraries build their mapping from
//!   what users type to URLs out of it: `kubectl get deploy` works only because
//!   "deploy" is listed as a short name of `deployments`.
//! * **routing** turns a URL such as
//!   `/apis/apps/v1/namespaces/default/deployments/web/scale` into a resource
//!   and a subresource, so it must know which ones exist and which resources
//!   live inside namespaces.
//! * **RBAC** rules name resources by their plural (`deployments`, `pods/log`)
//!   and grant verbs; the names and verbs here are the ones rules refer to.
//! * **storage** keeps the objects of each resource under their own key prefix
//!   ([`ResourceInfo::storage_prefix`]).
//!
//! If each of those kept its own list, the lists would drift apart: a resource
//! could be advertised but not routable, or stored under a key nothing reads.
//! So this one static table is the single source of truth: adding an entry here
//! makes a resource discoverable, routable, authorizable and storable at once.
//!
//! Every value matches what a real kube-apiserver v1.35 reports in discovery,
//! and so does the order: groups come in the order `/apis` lists them (the
//! core group first), and within one group/version the resources, and the
//! subresources of each resource, are sorted by name, as kube-apiserver sorts
//! them. The unit tests at the bottom check these rules.

/// One verb as it appears in discovery documents and RBAC rules.
pub type Verb = &'static str;

/// The verbs of an ordinary read-write resource.
pub const ALL_VERBS: &[Verb] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

/// Everything but `deletecollection`, which kube-apiserver does not offer for
/// namespaces (deleting a namespace is a slow, finalizer-driven process).
pub const ALL_BUT_DELETECOLLECTION: &[Verb] = &["create", "delete", "get", "list", "patch", "update", "watch"];

/// Requests that are only ever POSTed and never stored: bindings, evictions,
/// token requests, and the token and access reviews.
pub const CREATE_ONLY: &[Verb] = &["create"];

/// Read without watch; `componentstatuses` is computed on each request.
pub const GET_LIST: &[Verb] = &["get", "list"];

/// A view of part of an object that can be read and replaced: `status`,
/// `scale`, `approval`, `ephemeralcontainers`, `resize`.
pub const GET_PATCH_UPDATE: &[Verb] = &["get", "patch", "update"];

/// Read-only subresources such as `pods/log`.
pub const GET_ONLY: &[Verb] = &["get"];

/// `namespaces/finalize`, which only accepts a PUT of the whole namespace.
pub const UPDATE_ONLY: &[Verb] = &["update"];

/// Streaming subresources (`exec`, `attach`, `portforward`): a GET or a POST
/// is upgraded to a stream, which discovery and RBAC call `get` and `create`.
pub const CONNECT_VERBS: &[Verb] = &["create", "get"];

/// `proxy` subresources forward any HTTP method; the ones RBAC can name are
/// POST (`create`), DELETE, GET, PATCH and PUT (`update`).
pub const PROXY_VERBS: &[Verb] = &["create", "delete", "get", "patch", "update"];

/// The category `kubectl get all` expands to.
pub const ALL_CATEGORY: &[&str] = &["all"];

/// The category of resources that extend the API itself, such as CRDs.
pub const API_EXTENSIONS_CATEGORY: &[&str] = &["api-extensions"];

/// A subresource such as `pods/status` or `deployments/scale`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subresource {
    /// The part after the slash: "status", "scale", "binding", "eviction",
    /// "log", "token", "exec", "attach", "portforward", "proxy",
    /// "ephemeralcontainers", "resize", "approval", "finalize".
    pub name: &'static str,
    /// API group of the subresource's kind ("" for core), e.g. "autoscaling"
    /// for scale, "policy" for eviction, "authentication.k8s.io" for token.
    /// For a kind in the parent's own group/version (status, for instance)
    /// this is the parent's group; discovery omits it in that case.
    pub group: &'static str,
    /// Version of that kind, e.g. "v1".
    pub version: &'static str,
    /// Kind carried by the subresource, e.g. "Scale", "Binding", "Eviction",
    /// "TokenRequest"; the parent's kind for status.
    pub kind: &'static str,
    pub verbs: &'static [Verb],
}

/// One served resource, at one group/version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResourceInfo {
    /// API group; "" is the legacy core group served under /api/v1.
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    /// Lower-case plural used in URLs and RBAC rules, e.g. "deployments".
    pub plural: &'static str,
    /// Lower-case singular, e.g. "deployment".
    pub singular: &'static str,
    pub short_names: &'static [&'static str],
    pub namespaced: bool,
    pub verbs: &'static [Verb],
    pub subresources: &'static [Subresource],
    /// Discovery categories; "all" makes `kubectl get all` include it.
    pub categories: &'static [&'static str],
}

impl ResourceInfo {
    /// "apps/v1", or "v1" for the core group.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// The group/version path prefix: "/api/v1" or "/apis/apps/v1".
    pub fn path_prefix(&self) -> String {
        if self.group.is_empty() {
            format!("/api/{}", self.version)
        } else {
            format!("/apis/{}/{}", self.group, self.version)
        }
    }

    /// Prefix under which objects are stored in the key-value store, laid out
    /// as kube-apiserver lays out etcd: `/registry/<plural>/` for most
    /// resources (`/registry/pods/`, `/registry/deployments/`), followed by
    /// `<namespace>/<name>` or just `<name>`.
    ///
    /// A few resources keep historic prefixes (kube-apiserver's
    /// `SpecialDefaultResourcePrefixes`): services live under
    /// `/registry/services/specs/`, endpoints under
    /// `/registry/services/endpoints/`, nodes under `/registry/minions/` and
    /// replication controllers under `/registry/controllers/`. CRDs are served
    /// by the apiextensions server, which puts the group in the key:
    /// `/registry/apiextensions.k8s.io/customresourcedefinitions/`.
    ///
    /// The prefix depends on the plural only, not on the group or version, so
    /// the two versions of `horizontalpodautoscalers` share their objects, and
    /// so do core `events` and `events.k8s.io` events, exactly as in
    /// Kubernetes. Create-only resources (reviews, bindings) are never stored;
    /// they still get a prefix, which is harmless.
    pub fn storage_prefix(&self) -> String {
        let path = match (self.group, self.plural) {
            ("", "services") => "services/specs",
            ("", "endpoints") => "services/endpoints",
            ("", "nodes") => "minions",
            ("", "replicationcontrollers") => "controllers",
            ("apiextensions.k8s.io", "customresourcedefinitions") => "apiextensions.k8s.io/customresourcedefinitions",
            // Custom resources (groups no built-in resource has) are keyed
            // by group too, as the apiextensions server keys them.
            (group, plural) if !RESOURCES.iter().any(|r| r.group == group) => {
                return format!("/registry/{group}/{plural}/");
            }
            (_, plural) => plural,
        };
        format!("/registry/{path}/")
    }

    /// The subresource with this name (the part after the slash), if served.
    pub fn subresource(&self, name: &str) -> Option<&'static Subresource> {
        let subresources: &'static [Subresource] = self.subresources;
        subresources.iter().find(|s| s.name == name)
    }

    /// Whether the resource itself (not a subresource) accepts this verb.
    pub fn has_verb(&self, verb: &str) -> bool {
        self.verbs.contains(&verb)
    }

    /// Whether a user may call this resource `name`: its plural, singular,
    /// a short name or its kind, ignoring case.
    fn answers_to(&self, name: &str) -> bool {
        self.plural.eq_ignore_ascii_case(name)
            || self.singular.eq_ignore_ascii_case(name)
            || self.short_names.iter().any(|s| s.eq_ignore_ascii_case(name))
            || self.kind.eq_ignore_ascii_case(name)
    }
}

/// Look up by group, version and plural.
pub fn find(group: &str, version: &str, plural: &str) -> Option<&'static ResourceInfo> {
    RESOURCES
        .iter()
        .find(|r| r.group == group && r.version == version && r.plural == plural)
}

/// Look up by group and kind (any served version, preferred first).
pub fn find_kind(group: &str, kind: &str) -> Option<&'static ResourceInfo> {
    RESOURCES.iter().find(|r| r.group == group && r.kind == kind)
}

/// Resolve what a user typed (plural, singular, short name or kind; case is
/// ignored for all of them), across all groups; first match in table order.
///
/// Like kubectl, it also accepts a name qualified with its group
/// (`deployments.apps`, `events.events.k8s.io`) or with version and group
/// (`hpa.v1.autoscaling`).
pub fn resolve(name: &str) -> Option<&'static ResourceInfo> {
    if let Some(found) = RESOURCES.iter().find(|r| r.answers_to(name)) {
        return Some(found);
    }
    let (resource, qualifier) = name.split_once('.')?;
    RESOURCES
        .iter()
        .find(|r| r.answers_to(resource) && r.group.eq_ignore_ascii_case(qualifier))
        .or_else(|| {
            let (version, group) = qualifier.split_once('.')?;
            RESOURCES
                .iter()
                .find(|r| r.answers_to(resource) && r.version == version && r.group.eq_ignore_ascii_case(group))
        })
}

/// The distinct (group, version) pairs served, in table order: the core group first.
pub fn group_versions() -> Vec<(&'static str, &'static str)> {
    let mut pairs = Vec::new();
    for r in RESOURCES {
        let pair = (r.group, r.version);
        if !pairs.contains(&pair) {
            pairs.push(pair);
        }
    }
    pairs
}

/// The resources of one group/version, in discovery order: what
/// `/api/v1` or `/apis/<group>/<version>` lists.
pub fn resources_in(group: &str, version: &str) -> Vec<&'static ResourceInfo> {
    RESOURCES
        .iter()
        .filter(|r| r.group == group && r.version == version)
        .collect()
}

/// The preferred version of a group: the first one listed, e.g. "v2" for
/// "autoscaling". `None` if the group is not served.
pub fn preferred_version(group: &str) -> Option<&'static str> {
    RESOURCES.iter().find(|r| r.group == group).map(|r| r.version)
}

// ---------------------------------------------------------------------------
// Helpers that keep the table below short. They only run at compile time.
// ---------------------------------------------------------------------------

/// A group/version pair, used to write table entries and subresources tersely.
#[derive(Clone, Copy)]
struct GroupVersion {
    group: &'static str,
    version: &'static str,
}

const CORE_V1: GroupVersion = GroupVersion::new("", "v1");
const APPS_V1: GroupVersion = GroupVersion::new("apps", "v1");
const EVENTS_V1: GroupVersion = GroupVersion::new("events.k8s.io", "v1");
const AUTHENTICATION_V1: GroupVersion = GroupVersion::new("authentication.k8s.io", "v1");
const AUTHORIZATION_V1: GroupVersion = GroupVersion::new("authorization.k8s.io", "v1");
const AUTOSCALING_V2: GroupVersion = GroupVersion::new("autoscaling", "v2");
const AUTOSCALING_V1: GroupVersion = GroupVersion::new("autoscaling", "v1");
const BATCH_V1: GroupVersion = GroupVersion::new("batch", "v1");
const CERTIFICATES_V1: GroupVersion = GroupVersion::new("certificates.k8s.io", "v1");
const POLICY_V1: GroupVersion = GroupVersion::new("policy", "v1");
const RBAC_V1: GroupVersion = GroupVersion::new("rbac.authorization.k8s.io", "v1");
const APIEXTENSIONS_V1: GroupVersion = GroupVersion::new("apiextensions.k8s.io", "v1");
const SCHEDULING_V1: GroupVersion = GroupVersion::new("scheduling.k8s.io", "v1");
const COORDINATION_V1: GroupVersion = GroupVersion::new("coordination.k8s.io", "v1");
const DISCOVERY_V1: GroupVersion = GroupVersion::new("discovery.k8s.io", "v1");

impl GroupVersion {
    const fn new(group: &'static str, version: &'static str) -> Self {
        GroupVersion { group, version }
    }

    /// A namespaced resource of this group/version with the defaults most
    /// resources share: all verbs, no short names, subresources or categories.
    /// The `with_*` builders below change what differs.
    const fn resource(self, kind: &'static str, plural: &'static str, singular: &'static str) -> ResourceInfo {
        ResourceInfo {
            group: self.group,
            version: self.version,
            kind,
            plural,
            singular,
            short_names: &[],
            namespaced: true,
            verbs: ALL_VERBS,
            subresources: &[],
            categories: &[],
        }
    }

    /// A subresource whose kind belongs to this group/version.
    const fn subresource(self, name: &'static str, kind: &'static str, verbs: &'static [Verb]) -> Subresource {
        Subresource {
            name,
            group: self.group,
            version: self.version,
            kind,
            verbs,
        }
    }

    /// The `status` subresource of `kind`, a kind of this group/version.
    const fn status(self, kind: &'static str) -> Subresource {
        self.subresource("status", kind, GET_PATCH_UPDATE)
    }
}

/// Builders used only by the table: each returns a copy with one field changed.
impl ResourceInfo {
    const fn cluster_scoped(mut self) -> Self {
        self.namespaced = false;
        self
    }

    const fn with_short_names(mut self, short_names: &'static [&'static str]) -> Self {
        self.short_names = short_names;
        self
    }

    const fn with_verbs(mut self, verbs: &'static [Verb]) -> Self {
        self.verbs = verbs;
        self
    }

    const fn with_subresources(mut self, subresources: &'static [Subresource]) -> Self {
        self.subresources = subresources;
        self
    }

    const fn with_categories(mut self, categories: &'static [&'static str]) -> Self {
        self.categories = categories;
        self
    }
}

/// `<resource>/scale` always carries an autoscaling/v1 `Scale`, whatever the
/// parent's group: a small object holding just the replica count and selector.
const SCALE: Subresource = AUTOSCALING_V1.subresource("scale", "Scale", GET_PATCH_UPDATE);

// The subresource lists, each sorted by name as discovery lists them.

const NAMESPACE_SUBRESOURCES: &[Subresource] = &[
    CORE_V1.subresource("finalize", "Namespace", UPDATE_ONLY),
    CORE_V1.status("Namespace"),
];
const NODE_SUBRESOURCES: &[Subresource] = &[
    CORE_V1.subresource("proxy", "NodeProxyOptions", PROXY_VERBS),
    CORE_V1.status("Node"),
];
const PVC_SUBRESOURCES: &[Subresource] = &[CORE_V1.status("PersistentVolumeClaim")];
const PV_SUBRESOURCES: &[Subresource] = &[CORE_V1.status("PersistentVolume")];
const POD_SUBRESOURCES: &[Subresource] = &[
    CORE_V1.subresource("attach", "PodAttachOptions", CONNECT_VERBS),
    CORE_V1.subresource("binding", "Binding", CREATE_ONLY),
    CORE_V1.subresource("ephemeralcontainers", "Pod", GET_PATCH_UPDATE),
    POLICY_V1.subresource("eviction", "Eviction", CREATE_ONLY),
    CORE_V1.subresource("exec", "PodExecOptions", CONNECT_VERBS),
    CORE_V1.subresource("log", "Pod", GET_ONLY),
    CORE_V1.subresource("portforward", "PodPortForwardOptions", CONNECT_VERBS),
    CORE_V1.subresource("proxy", "PodProxyOptions", PROXY_VERBS),
    CORE_V1.subresource("resize", "Pod", GET_PATCH_UPDATE),
    CORE_V1.status("Pod"),
];
const RC_SUBRESOURCES: &[Subresource] = &[SCALE, CORE_V1.status("ReplicationController")];
const QUOTA_SUBRESOURCES: &[Subresource] = &[CORE_V1.status("ResourceQuota")];
const SERVICE_ACCOUNT_SUBRESOURCES: &[Subresource] =
    &[AUTHENTICATION_V1.subresource("token", "TokenRequest", CREATE_ONLY)];
const SERVICE_SUBRESOURCES: &[Subresource] = &[
    CORE_V1.subresource("proxy", "ServiceProxyOptions", PROXY_VERBS),
    CORE_V1.status("Service"),
];
const DAEMON_SET_SUBRESOURCES: &[Subresource] = &[APPS_V1.status("DaemonSet")];
const DEPLOYMENT_SUBRESOURCES: &[Subresource] = &[SCALE, APPS_V1.status("Deployment")];
const REPLICA_SET_SUBRESOURCES: &[Subresource] = &[SCALE, APPS_V1.status("ReplicaSet")];
const STATEFUL_SET_SUBRESOURCES: &[Subresource] = &[SCALE, APPS_V1.status("StatefulSet")];
const HPA_V2_SUBRESOURCES: &[Subresource] = &[AUTOSCALING_V2.status("HorizontalPodAutoscaler")];
const HPA_V1_SUBRESOURCES: &[Subresource] = &[AUTOSCALING_V1.status("HorizontalPodAutoscaler")];
const CRON_JOB_SUBRESOURCES: &[Subresource] = &[BATCH_V1.status("CronJob")];
const JOB_SUBRESOURCES: &[Subresource] = &[BATCH_V1.status("Job")];
const CSR_SUBRESOURCES: &[Subresource] = &[
    CERTIFICATES_V1.subresource("approval", "CertificateSigningRequest", GET_PATCH_UPDATE),
    CERTIFICATES_V1.status("CertificateSigningRequest"),
];
const PDB_SUBRESOURCES: &[Subresource] = &[POLICY_V1.status("PodDisruptionBudget")];
const CRD_SUBRESOURCES: &[Subresource] = &[APIEXTENSIONS_V1.status("CustomResourceDefinition")];

/// Every built-in resource served, in discovery order.
#[rustfmt::skip] // hand-made line breaks keep each entry together
pub static RESOURCES: &[ResourceInfo] = &[
    // ---- core (""), v1: the legacy group, served under /api/v1 ----
    CORE_V1.resource("Binding", "bindings", "binding").with_verbs(CREATE_ONLY),
    CORE_V1.resource("ComponentStatus", "componentstatuses", "componentstatus").cluster_scoped()
        .with_short_names(&["cs"]).with_verbs(GET_LIST),
    CORE_V1.resource("ConfigMap", "configmaps", "configmap").with_short_names(&["cm"]),
    // The kind is plural too, so the singular is "endpoints".
    CORE_V1.resource("Endpoints", "endpoints", "endpoints").with_short_names(&["ep"]),
    CORE_V1.resource("Event", "events", "event").with_short_names(&["ev"]),
    CORE_V1.resource("LimitRange", "limitranges", "limitrange").with_short_names(&["limits"]),
    CORE_V1.resource("Namespace", "namespaces", "namespace").cluster_scoped()
        .with_short_names(&["ns"]).with_verbs(ALL_BUT_DELETECOLLECTION)
        .with_subresources(NAMESPACE_SUBRESOURCES),
    CORE_V1.resource("Node", "nodes", "node").cluster_scoped()
        .with_short_names(&["no"]).with_subresources(NODE_SUBRESOURCES),
    CORE_V1.resource("PersistentVolumeClaim", "persistentvolumeclaims", "persistentvolumeclaim")
        .with_short_names(&["pvc"]).with_subresources(PVC_SUBRESOURCES),
    CORE_V1.resource("PersistentVolume", "persistentvolumes", "persistentvolume").cluster_scoped()
        .with_short_names(&["pv"]).with_subresources(PV_SUBRESOURCES),
    CORE_V1.resource("Pod", "pods", "pod")
        .with_short_names(&["po"]).with_subresources(POD_SUBRESOURCES)
        .with_categories(ALL_CATEGORY),
    CORE_V1.resource("PodTemplate", "podtemplates", "podtemplate"),
    CORE_V1.resource("ReplicationController", "replicationcontrollers", "replicationcontroller")
        .with_short_names(&["rc"]).with_subresources(RC_SUBRESOURCES)
        .with_categories(ALL_CATEGORY),
    CORE_V1.resource("ResourceQuota", "resourcequotas", "resourcequota")
        .with_short_names(&["quota"]).with_subresources(QUOTA_SUBRESOURCES),
    CORE_V1.resource("Secret", "secrets", "secret"),
    CORE_V1.resource("ServiceAccount", "serviceaccounts", "serviceaccount")
        .with_short_names(&["sa"]).with_subresources(SERVICE_ACCOUNT_SUBRESOURCES),
    CORE_V1.resource("Service", "services", "service")
        .with_short_names(&["svc"]).with_subresources(SERVICE_SUBRESOURCES)
        .with_categories(ALL_CATEGORY),
    // ---- apps/v1 ----
    APPS_V1.resource("ControllerRevision", "controllerrevisions", "controllerrevision"),
    APPS_V1.resource("DaemonSet", "daemonsets", "daemonset")
        .with_short_names(&["ds"]).with_subresources(DAEMON_SET_SUBRESOURCES)
        .with_categories(ALL_CATEGORY),
    APPS_V1.resource("Deployment", "deployments", "deployment")
        .with_short_names(&["deploy"]).with_subresources(DEPLOYMENT_SUBRESOURCES)
        .with_categories(ALL_CATEGORY),
    APPS_V1.resource("ReplicaSet", "replicasets", "replicaset")
        .with_short_names(&["rs"]).with_subresources(REPLICA_SET_SUBRESOURCES)
        .with_categories(ALL_CATEGORY),
    APPS_V1.resource("StatefulSet", "statefulsets", "statefulset")
        .with_short_names(&["sts"]).with_subresources(STATEFUL_SET_SUBRESOURCES)
        .with_categories(ALL_CATEGORY),
    // ---- events.k8s.io/v1: the same Event objects as core events, newer schema ----
    EVENTS_V1.resource("Event", "events", "event").with_short_names(&["ev"]),
    // ---- authentication.k8s.io/v1 ----
    AUTHENTICATION_V1.resource("SelfSubjectReview", "selfsubjectreviews", "selfsubjectreview")
        .cluster_scoped().with_verbs(CREATE_ONLY),
    AUTHENTICATION_V1.resource("TokenReview", "tokenreviews", "tokenreview")
        .cluster_scoped().with_verbs(CREATE_ONLY),
    // ---- authorization.k8s.io/v1 ----
    AUTHORIZATION_V1.resource("LocalSubjectAccessReview", "localsubjectaccessreviews",
        "localsubjectaccessreview").with_verbs(CREATE_ONLY),
    AUTHORIZATION_V1.resource("SelfSubjectAccessReview", "selfsubjectaccessreviews",
        "selfsubjectaccessreview").cluster_scoped().with_verbs(CREATE_ONLY),
    AUTHORIZATION_V1.resource("SelfSubjectRulesReview", "selfsubjectrulesreviews",
        "selfsubjectrulesreview").cluster_scoped().with_verbs(CREATE_ONLY),
    AUTHORIZATION_V1.resource("SubjectAccessReview", "subjectaccessreviews",
        "subjectaccessreview").cluster_scoped().with_verbs(CREATE_ONLY),
    // ---- autoscaling/v2 (the preferred version), then autoscaling/v1 ----
    AUTOSCALING_V2.resource("HorizontalPodAutoscaler", "horizontalpodautoscalers",
        "horizontalpodautoscaler").with_short_names(&["hpa"])
        .with_subresources(HPA_V2_SUBRESOURCES).with_categories(ALL_CATEGORY),
    AUTOSCALING_V1.resource("HorizontalPodAutoscaler", "horizontalpodautoscalers",
        "horizontalpodautoscaler").with_short_names(&["hpa"])
        .with_subresources(HPA_V1_SUBRESOURCES).with_categories(ALL_CATEGORY),
    // ---- batch/v1 ----
    BATCH_V1.resource("CronJob", "cronjobs", "cronjob")
        .with_short_names(&["cj"]).with_subresources(CRON_JOB_SUBRESOURCES)
        .with_categories(ALL_CATEGORY),
    BATCH_V1.resource("Job", "jobs", "job")
        .with_subresources(JOB_SUBRESOURCES).with_categories(ALL_CATEGORY),
    // ---- certificates.k8s.io/v1 ----
    CERTIFICATES_V1.resource("CertificateSigningRequest", "certificatesigningrequests",
        "certificatesigningrequest").cluster_scoped()
        .with_short_names(&["csr"]).with_subresources(CSR_SUBRESOURCES),
    // ---- policy/v1 ----
    POLICY_V1.resource("PodDisruptionBudget", "poddisruptionbudgets", "poddisruptionbudget")
        .with_short_names(&["pdb"]).with_subresources(PDB_SUBRESOURCES),
    // ---- rbac.authorization.k8s.io/v1 ----
    RBAC_V1.resource("ClusterRoleBinding", "clusterrolebindings", "clusterrolebinding")
        .cluster_scoped(),
    RBAC_V1.resource("ClusterRole", "clusterroles", "clusterrole").cluster_scoped(),
    RBAC_V1.resource("RoleBinding", "rolebindings", "rolebinding"),
    RBAC_V1.resource("Role", "roles", "role"),
    // ---- apiextensions.k8s.io/v1 ----
    APIEXTENSIONS_V1.resource("CustomResourceDefinition", "customresourcedefinitions",
        "customresourcedefinition").cluster_scoped()
        .with_short_names(&["crd", "crds"]).with_subresources(CRD_SUBRESOURCES)
        .with_categories(API_EXTENSIONS_CATEGORY),
    // ---- scheduling.k8s.io/v1 ----
    SCHEDULING_V1.resource("PriorityClass", "priorityclasses", "priorityclass").cluster_scoped()
        .with_short_names(&["pc"]),
    // ---- coordination.k8s.io/v1 ----
    COORDINATION_V1.resource("Lease", "leases", "lease"),
    // ---- discovery.k8s.io/v1 ----
    DISCOVERY_V1.resource("EndpointSlice", "endpointslices", "endpointslice"),
];

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    /// The entry for group, version and plural; panics if it is missing.
    fn get(group: &str, version: &str, plural: &str) -> &'static ResourceInfo {
        find(group, version, plural).unwrap_or_else(|| panic!("{plural} missing"))
    }

    /// The kind a subresource carries, as "group/version/Kind".
    fn sub_kind(r: &ResourceInfo, name: &str) -> String {
        let s = r.subresource(name).expect("subresource listed");
        format!("{}/{}/{}", s.group, s.version, s.kind)
    }

    /// Whether `plural` is one of the space-separated words in `list`.
    fn listed(list: &str, plural: &str) -> bool {
        list.split_whitespace().any(|p| p == plural)
    }

    #[test]
    fn no_duplicate_group_version_plural() {
        let mut seen = HashSet::new();
        for r in RESOURCES {
            let key = (r.group, r.version, r.plural);
            assert!(seen.insert(key), "{key:?} listed twice");
        }
    }

    #[test]
    fn names_are_lower_case() {
        let lower = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_lowercase());
        for r in RESOURCES {
            let short = r.short_names.iter().copied();
            let sub = r.subresources.iter().map(|s| s.name);
            for name in [r.plural, r.singular].into_iter().chain(short).chain(sub) {
                assert!(lower(name), "{name:?}");
            }
            // Every built-in singular is its kind in lower case.
            assert_eq!(r.singular, r.kind.to_ascii_lowercase());
        }
    }

    #[test]
    fn verbs_are_known_sorted_and_unique() {
        let check = |what: &str, verbs: &[Verb]| {
            assert!(!verbs.is_empty(), "{what}");
            assert!(verbs.windows(2).all(|w| w[0] < w[1]), "{what}");
            assert!(verbs.iter().all(|v| ALL_VERBS.contains(v)), "{what}");
        };
        for r in RESOURCES {
            check(r.plural, r.verbs);
            for s in r.subresources {
                check(&format!("{}/{}", r.plural, s.name), s.verbs);
            }
        }
    }

    #[test]
    fn order_matches_discovery() {
        // Each group/version is one contiguous block of the table...
        let mut blocks: Vec<(&str, &str)> = Vec::new();
        for r in RESOURCES {
            if blocks.last() != Some(&(r.group, r.version)) {
                blocks.push((r.group, r.version));
            }
        }
        assert_eq!(blocks, group_versions());
        // ...sorted by plural; and each resource's subresources by name.
        for (group, version) in blocks {
            let rs = resources_in(group, version);
            assert!(rs.windows(2).all(|w| w[0].plural < w[1].plural), "{group}");
        }
        for r in RESOURCES {
            let (p, subs) = (r.plural, r.subresources);
            assert!(subs.windows(2).all(|w| w[0].name < w[1].name), "{p}");
        }
    }

    #[test]
    fn status_subresources_carry_the_parent_kind() {
        for r in RESOURCES {
            if let Some(s) = r.subresource("status") {
                let parent = (r.group, r.version, r.kind);
                assert_eq!((s.group, s.version, s.kind), parent);
                assert_eq!(s.verbs, GET_PATCH_UPDATE);
            }
        }
    }

    #[test]
    fn deployments_have_a_short_name_and_scale() {
        let d = get("apps", "v1", "deployments");
        assert_eq!((d.kind, d.singular), ("Deployment", "deployment"));
        assert_eq!(d.short_names, ["deploy"]);
        assert_eq!(sub_kind(d, "scale"), "autoscaling/v1/Scale");
        assert_eq!(d.subresource("scale").unwrap().verbs, GET_PATCH_UPDATE);
        assert_eq!(sub_kind(d, "status"), "apps/v1/Deployment");
    }

    #[test]
    fn pod_and_service_account_subresources() {
        let pods = get("", "v1", "pods");
        let names: Vec<_> = pods.subresources.iter().map(|s| s.name).collect();
        let expected = "attach binding ephemeralcontainers eviction exec log portforward proxy \
                        resize status";
        assert_eq!(names.join(" "), expected);
        assert_eq!(sub_kind(pods, "eviction"), "policy/v1/Eviction");
        assert_eq!(sub_kind(pods, "binding"), "/v1/Binding");
        assert_eq!(sub_kind(pods, "log"), "/v1/Pod");
        assert_eq!(pods.subresource("exec").unwrap().verbs, CONNECT_VERBS);
        assert_eq!(pods.subresource("log").unwrap().verbs, GET_ONLY);
        let token = sub_kind(get("", "v1", "serviceaccounts"), "token");
        assert_eq!(token, "authentication.k8s.io/v1/TokenRequest");
    }

    #[test]
    fn special_verb_sets() {
        let namespaces = get("", "v1", "namespaces");
        assert!(namespaces.has_verb("delete"));
        assert!(!namespaces.has_verb("deletecollection"));
        let finalize = namespaces.subresource("finalize").unwrap();
        assert_eq!(finalize.verbs, UPDATE_ONLY);
        assert_eq!(get("", "v1", "componentstatuses").verbs, GET_LIST);
        for r in RESOURCES {
            let create_only = r.plural == "bindings" || r.plural.ends_with("reviews");
            assert_eq!(r.verbs == CREATE_ONLY, create_only, "{}", r.plural);
        }
    }

    #[test]
    fn resolve_what_users_type() {
        let resolved = |name: &str| resolve(name).map(|r| format!("{} {}", r.api_version(), r.plural));
        for name in ["po", "Pod", "pods", "pod", "PODS"] {
            assert_eq!(resolved(name).as_deref(), Some("v1 pods"), "{name}");
        }
        let cases = [
            ("deploy", "apps/v1 deployments"),
            ("ev", "v1 events"), // core events come first
            ("events.events.k8s.io", "events.k8s.io/v1 events"),
            ("deployments.apps", "apps/v1 deployments"),
            ("hpa", "autoscaling/v2 horizontalpodautoscalers"),
            ("hpa.v1.autoscaling", "autoscaling/v1 horizontalpodautoscalers"),
            ("crds", "apiextensions.k8s.io/v1 customresourcedefinitions"),
        ];
        for (name, expected) in cases {
            assert_eq!(resolved(name).as_deref(), Some(expected), "{name}");
        }
        for name in ["nonsense", "pods.nonsense", ""] {
            assert_eq!(resolve(name), None, "{name:?}");
        }
    }

    #[test]
    fn find_kind_and_preferred_version() {
        let hpa = find_kind("autoscaling", "HorizontalPodAutoscaler").unwrap();
        assert_eq!(hpa.version, "v2");
        assert_eq!(find_kind("", "Event").unwrap().api_version(), "v1");
        let events = find_kind("events.k8s.io", "Event").unwrap();
        assert_eq!(events.api_version(), "events.k8s.io/v1");
        assert_eq!(find_kind("apps", "Pod"), None);
        assert_eq!(preferred_version("autoscaling"), Some("v2"));
        assert_eq!(preferred_version(""), Some("v1"));
        assert_eq!(preferred_version("example.com"), None);
    }

    #[test]
    fn paths_and_api_versions() {
        let pods = get("", "v1", "pods");
        assert_eq!(pods.api_version(), "v1");
        assert_eq!(pods.path_prefix(), "/api/v1");
        let deploy = get("apps", "v1", "deployments");
        assert_eq!(deploy.api_version(), "apps/v1");
        assert_eq!(deploy.path_prefix(), "/apis/apps/v1");
    }

    #[test]
    fn storage_prefixes() {
        let prefix = |group: &str, plural: &str| get(group, "v1", plural).storage_prefix();
        assert_eq!(prefix("", "pods"), "/registry/pods/");
        assert_eq!(prefix("", "services"), "/registry/services/specs/");
        assert_eq!(prefix("", "endpoints"), "/registry/services/endpoints/");
        assert_eq!(prefix("", "nodes"), "/registry/minions/");
        let rcs = prefix("", "replicationcontrollers");
        assert_eq!(rcs, "/registry/controllers/");
        assert_eq!(prefix("apps", "deployments"), "/registry/deployments/");
        let crds = prefix("apiextensions.k8s.io", "customresourcedefinitions");
        assert!(crds == "/registry/apiextensions.k8s.io/customresourcedefinitions/");
        // One set of Event objects, served by two APIs.
        assert_eq!(prefix("events.k8s.io", "events"), "/registry/events/");
    }

    #[test]
    fn group_versions_in_order() {
        let gvs = group_versions();
        assert_eq!(gvs[..2], [("", "v1"), ("apps", "v1")]);
        let position = |gv: (&str, &str)| gvs.iter().position(|x| *x == gv).unwrap();
        assert!(position(("autoscaling", "v2")) < position(("autoscaling", "v1")));
        assert_eq!(gvs.len(), 15);
    }

    #[test]
    fn the_all_category() {
        let all = "pods services replicationcontrollers deployments replicasets statefulsets \
                   daemonsets jobs cronjobs horizontalpodautoscalers";
        for r in RESOURCES {
            let (p, in_all) = (r.plural, r.categories.contains(&"all"));
            assert_eq!(in_all, listed(all, p), "{p}");
        }
        assert!(!get("", "v1", "configmaps").categories.contains(&"all"));
        assert!(!get("", "v1", "secrets").categories.contains(&"all"));
    }

    #[test]
    fn cluster_scoped_resources() {
        let cluster_scoped = "componentstatuses namespaces nodes persistentvolumes \
                              selfsubjectreviews tokenreviews selfsubjectaccessreviews \
                              selfsubjectrulesreviews subjectaccessreviews \
                              certificatesigningrequests clusterrolebindings clusterroles \
                              customresourcedefinitions priorityclasses";
        for r in RESOURCES {
            let p = r.plural;
            assert_eq!(r.namespaced, !listed(cluster_scoped, p), "{p}");
        }
    }
}
