//! The token half of the ServiceAccount admission step: a new pod whose
//! ServiceAccount exists (and neither it nor the pod turns
//! `automountServiceAccountToken` off) gets upstream's `kube-api-access-*`
//! projected volume — a bound token from the TokenRequest API, the
//! cluster CA from the `kube-root-ca.crt` ConfigMap, and the namespace —
//! mounted read-only at /var/run/secrets/kubernetes.io/serviceaccount in
//! every container, so in-cluster clients find their credentials where
//! client-go looks.
//!
//! Unlike upstream, a pod whose ServiceAccount does not exist (yet) is
//! admitted without the volume rather than refused: clusters without the
//! service account controller (tests of single components) keep working.

use serde_json::{json, Value};

use crate::rest::App;

pub const MOUNT_PATH: &str = "/var/run/secrets/kubernetes.io/serviceaccount";
/// Upstream's lifetime for these tokens (an hour and a little).
const EXPIRATION_SECONDS: i64 = 3607;

fn suffix() -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    uuid::Uuid::new_v4()
        .as_bytes()
        .iter()
        .take(5)
        .map(|b| char::from(ALPHABET[usize::from(*b) % ALPHABET.len()]))
        .collect()
}

/// Adds the volume and its mounts to a new pod, when it should have them.
pub async fn admit(app: &App, pod: &mut Value) {
    let spec = &pod["spec"];
    if spec["automountServiceAccountToken"] == false {
        return;
    }
    let namespace = pod["metadata"]["namespace"].as_str().unwrap_or("default").to_string();
    let account = spec["serviceAccountName"].as_str().unwrap_or("default").to_string();
    let key = format!("/registry/serviceaccounts/{namespace}/{account}");
    let Ok(Some(value)) = crate::verbs::get_for_admission(app, &key).await else {
        return;
    };
    let Ok(sa) = serde_json::from_slice::<Value>(&value) else {
        return;
    };
    if sa["automountServiceAccountToken"] == false && spec["automountServiceAccountToken"] != true {
        return;
    }
    let containers = ["initContainers", "containers"];
    let mounted = containers
        .iter()
        .flat_map(|k| spec[*k].as_array().cloned().unwrap_or_default())
        .any(|c| {
            c["volumeMounts"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|m| m["mountPath"].as_str().map(|p| p.trim_end_matches('/')) == Some(MOUNT_PATH))
        });
    if mounted {
        return;
    }
    let name = format!("kube-api-access-{}", suffix());
    let volume = json!({
        "name": name,
        "projected": {
            "defaultMode": 420,
            "sources": [
                {"serviceAccountToken": {"expirationSeconds": EXPIRATION_SECONDS, "path": "token"}},
                {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}},
            ],
        },
    });
    let spec = &mut pod["spec"];
    match spec["volumes"].as_array_mut() {
        Some(volumes) => volumes.push(volume),
        None => spec["volumes"] = json!([volume]),
    }
    let mount = json!({"name": name, "mountPath": MOUNT_PATH, "readOnly": true});
    for kind in containers {
        for c in spec[kind].as_array_mut().into_iter().flatten() {
            match c["volumeMounts"].as_array_mut() {
                Some(mounts) => mounts.push(mount.clone()),
                None => c["volumeMounts"] = json!([mount.clone()]),
            }
        }
    }
}
