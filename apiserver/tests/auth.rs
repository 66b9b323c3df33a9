//! Authentication and authorization end to end, through kubectl (client
//! certificates, tokens, `--as`) and the gRPC client: RBAC's allow/deny
//! matrix, reviews (`kubectl auth can-i`, `whoami`), impersonation,
//! escalation, ServiceAccount tokens (issued, verified, revoked, forged),
//! the static token file, anonymous requests and the Node authorizer.

#![allow(clippy::unwrap_used)] // a panic in a test is a failed test

use std::path::{Path, PathBuf};

use testkit::Cluster;

/// kubectl as the user of `kubeconfig`, which must succeed.
async fn ok(cluster: &Cluster, kubeconfig: &Path, args: &[&str]) -> String {
    let (ok, out, err) = cluster.kubectl_with(kubeconfig, args, None).await;
    assert!(ok, "kubectl {args:?} failed:\n{out}\n{err}");
    out
}

/// kubectl as the user of `kubeconfig`, which must fail; its stderr.
async fn refused(cluster: &Cluster, kubeconfig: &Path, args: &[&str]) -> String {
    let (ok, out, err) = cluster.kubectl_with(kubeconfig, args, None).await;
    assert!(!ok, "kubectl {args:?} should have been refused:\n{out}");
    err
}

/// `kubectl auth can-i …` as the user: yes or no.
async fn can_i(cluster: &Cluster, kubeconfig: &Path, args: &[&str]) -> bool {
    let mut full = vec!["auth", "can-i"];
    full.extend_from_slice(args);
    let (_, out, _) = cluster.kubectl_with(kubeconfig, &full, None).await;
    out.trim() == "yes"
}

/// A kubeconfig with no credentials, for `--token`.
fn anonymous_kubeconfig(cluster: &Cluster) -> PathBuf {
    let path = cluster.dir.path().join("token.kubeconfig");
    let ca = cluster.pki().join("ca.crt");
    std::fs::write(
        &path,
        format!(
            "apiVersion: v1\nkind: Config\nclusters: [{{name: c, cluster: {{server: \"{}\", certificate-authority: \"{}\"}}}}]\n\
             contexts: [{{name: c, context: {{cluster: c, user: u}}}}]\ncurrent-context: c\nusers: [{{name: u, user: {{}}}}]\n",
            cluster.server,
            ca.display()
        ),
    )
    .unwrap();
    path
}

fn curl(cluster: &Cluster, path: &str, extra: &[&str]) -> (u16, String) {
    let out = std::process::Command::new("curl")
        .args(["-s", "-w", "\n%{http_code}", "--cacert"])
        .arg(cluster.pki().join("ca.crt"))
        .args(extra)
        .arg(format!("{}{path}", cluster.server))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, code) = text.rsplit_once('\n').unwrap();
    (code.trim().parse().unwrap(), body.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rbac_grants_what_bindings_say_and_nothing_more() {
    let cluster = Cluster::start("kubernate").await;
    let alice = cluster.add_user("alice", &["devs"]);
    let err = refused(&cluster, &alice, &["get", "pods"]).await;
    assert!(
        err.contains(
            r#"pods is forbidden: User "alice" cannot list resource "pods" in API group "" in the namespace "default""#
        ),
        "{err}"
    );
    cluster
        .kubectl(
            &["apply", "-f", "-"],
            Some(
                r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: pod-reader, namespace: default}
rules: [{apiGroups: [""], resources: [pods], verbs: [get, list, watch]}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: devs-read-pods, namespace: default}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: pod-reader}
subjects: [{kind: Group, name: devs, apiGroup: rbac.authorization.k8s.io}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: one-configmap}
rules: [{apiGroups: [""], resources: [configmaps], resourceNames: [allowed], verbs: [get]}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: alice-one-configmap, namespace: default}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: one-configmap}
subjects: [{kind: User, name: alice, apiGroup: rbac.authorization.k8s.io}]
"#,
            ),
        )
        .await;
    cluster.must(&["create", "configmap", "allowed"]).await;
    cluster.must(&["create", "configmap", "other"]).await;
    // The authorizer follows the store: the new binding applies shortly.
    testkit::wait_for("the binding to apply", std::time::Duration::from_secs(10), || async {
        cluster
            .kubectl_with(&alice, &["get", "pods"], None)
            .await
            .0
            .then_some(())
    })
    .await;
    let matrix: &[(&[&str], bool)] = &[
        (&["list", "pods"], true),
        (&["watch", "pods"], true),
        (&["get", "pods/x"], true),
        (&["delete", "pods"], false),
        (&["create", "pods"], false),
        (&["get", "pods", "--subresource=log"], false),
        (&["list", "pods", "-n", "kube-system"], false),
        (&["list", "pods", "--all-namespaces"], false),
        (&["get", "configmaps/allowed"], true),
        (&["get", "configmaps/other"], false),
        (&["list", "configmaps"], false),
        (&["list", "secrets"], false),
        (&["list", "nodes"], false),
    ];
    for (args, expected) in matrix {
        assert_eq!(can_i(&cluster, &alice, args).await, *expected, "can-i {args:?}");
    }
    ok(&cluster, &alice, &["get", "configmap", "allowed"]).await;
    let err = refused(&cluster, &alice, &["get", "configmap", "other"]).await;
    assert!(
        err.contains(r#"configmaps "other" is forbidden: User "alice" cannot get resource "configmaps""#),
        "{err}"
    );
    let err = refused(&cluster, &alice, &["delete", "pod", "anything"]).await;
    assert!(err.contains(r#"cannot delete resource "pods""#), "{err}");

    // Who am I, and what may I do here?
    let whoami = ok(&cluster, &alice, &["auth", "whoami", "-o", "json"]).await;
    let whoami: serde_json::Value = serde_json::from_str(&whoami).unwrap();
    assert_eq!(whoami["status"]["userInfo"]["username"], "alice");
    assert_eq!(
        whoami["status"]["userInfo"]["groups"],
        serde_json::json!(["devs", "system:authenticated"])
    );
    let list = ok(&cluster, &alice, &["auth", "can-i", "--list"]).await;
    assert!(
        list.lines()
            .any(|l| l.starts_with("pods ") && l.contains("[get list watch]")),
        "{list}"
    );

    // Impersonation needs the impersonate verb.
    let err = refused(&cluster, &alice, &["get", "pods", "--as", "bob"]).await;
    assert!(err.contains(r#"cannot impersonate resource "users""#), "{err}");
    let admin = cluster.kubeconfig();
    let err = refused(&cluster, &admin, &["get", "pods", "-n", "kube-system", "--as", "alice"]).await;
    assert!(err.contains(r#"User "alice" cannot list"#), "{err}");
    ok(
        &cluster,
        &admin,
        &["get", "pods", "--as", "alice", "--as-group", "devs"],
    )
    .await;
    refused(&cluster, &admin, &["get", "pods", "--as", "alice"]).await;

    // Escalation: alice administers the namespace (the aggregated admin
    // role) but cannot grant what she does not hold.
    cluster
        .must(&[
            "create",
            "rolebinding",
            "alice-admin",
            "--clusterrole=admin",
            "--user=alice",
        ])
        .await;
    testkit::wait_for("admin to apply", std::time::Duration::from_secs(10), || async {
        can_i(&cluster, &alice, &["create", "roles"]).await.then_some(())
    })
    .await;
    ok(
        &cluster,
        &alice,
        &["create", "role", "reader2", "--verb=get", "--resource=pods"],
    )
    .await;
    let err = refused(
        &cluster,
        &alice,
        &["create", "role", "node-reader", "--verb=get", "--resource=nodes"],
    )
    .await;
    assert!(
        err.contains("is attempting to grant RBAC permissions not currently held"),
        "{err}"
    );
    let err = refused(
        &cluster,
        &alice,
        &[
            "create",
            "rolebinding",
            "alice-root",
            "--clusterrole=cluster-admin",
            "--user=alice",
        ],
    )
    .await;
    assert!(err.contains("not currently held"), "{err}");
    // A ClusterRoleBinding grants ClusterRoles only (kind Role is invalid).
    let (created, _, err) = cluster
        .kubectl(
            &["create", "-f", "-"],
            Some(
                r#"{"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
                    "metadata": {"name": "sneaky"},
                    "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "cluster-admin"},
                    "subjects": [{"kind": "User", "name": "alice", "apiGroup": "rbac.authorization.k8s.io"}]}"#,
            ),
        )
        .await;
    assert!(!created && err.contains("roleRef.kind"), "{err}");
    // The aggregated roles hold the rules of the roles they select.
    assert!(can_i(&cluster, &alice, &["delete", "deployments.apps"]).await);
    assert!(!can_i(&cluster, &alice, &["delete", "deployments.apps", "-n", "kube-system"]).await);

    // Without credentials: 401 with a Status, except health and version.
    let (code, body) = curl(&cluster, "/api/v1/namespaces/default/pods", &[]);
    assert_eq!(code, 401, "{body}");
    assert!(
        body.contains(r#""kind":"Status""#) && body.contains("Unauthorized"),
        "{body}"
    );
    for path in ["/healthz", "/livez", "/readyz", "/version"] {
        assert_eq!(curl(&cluster, path, &[]).0, 200, "{path}");
    }
    cluster.stop().await;
}

/// Signs claims with the cluster's ServiceAccount key, for forged tokens.
fn forge(cluster: &Cluster, claims: serde_json::Value) -> String {
    let key = std::fs::read(cluster.pki().join("service-account.key")).unwrap();
    let key = jsonwebtoken::EncodingKey::from_ec_pem(&key).unwrap();
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256),
        &claims,
        &key,
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_account_tokens_are_issued_checked_and_revoked() {
    let cluster = Cluster::start("kubernate").await;
    let none = anonymous_kubeconfig(&cluster);
    cluster.must(&["create", "serviceaccount", "robot"]).await;
    let token = cluster.must(&["create", "token", "robot"]).await.trim().to_string();
    let with = |t: &str| format!("--token={t}");
    let t = with(&token);
    let who = ok(&cluster, &none, &[&t, "auth", "whoami", "-o", "json"]).await;
    let who: serde_json::Value = serde_json::from_str(&who).unwrap();
    assert_eq!(
        who["status"]["userInfo"]["username"],
        "system:serviceaccount:default:robot"
    );
    let groups = who["status"]["userInfo"]["groups"].to_string();
    assert!(groups.contains("system:serviceaccounts:default") && groups.contains("system:authenticated"));
    let err = refused(&cluster, &none, &[&t, "get", "pods"]).await;
    assert!(
        err.contains(r#"User "system:serviceaccount:default:robot" cannot list"#),
        "{err}"
    );
    cluster
        .must(&[
            "create",
            "rolebinding",
            "robot-view",
            "--clusterrole=view",
            "--serviceaccount=default:robot",
        ])
        .await;
    testkit::wait_for("the binding to apply", std::time::Duration::from_secs(10), || async {
        cluster
            .kubectl_with(&none, &[&t, "get", "pods"], None)
            .await
            .0
            .then_some(())
    })
    .await;

    // TokenReview, as a webhook or a kubelet would ask.
    let review = cluster
        .kubectl(
            &["create", "-o", "json", "-f", "-"],
            Some(&format!(
                r#"{{"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": {{"token": "{token}"}}}}"#
            )),
        )
        .await;
    assert!(review.0, "TokenReview: {}{}", review.1, review.2);
    let review: serde_json::Value = serde_json::from_str(&review.1).unwrap();
    assert_eq!(review["status"]["authenticated"], true, "{review}");
    assert_eq!(
        review["status"]["user"]["username"],
        "system:serviceaccount:default:robot"
    );
    assert_eq!(review["spec"]["token"], "", "the token is not echoed");

    // Another audience is not ours; a token bound to a pod dies with it.
    let other = cluster.must(&["create", "token", "robot", "--audience=vault"]).await;
    refused(&cluster, &none, &[&with(other.trim()), "get", "pods"]).await;
    cluster
        .must(&[
            "run",
            "holder",
            "--image=busybox",
            "--overrides",
            r#"{"spec": {"serviceAccountName": "robot"}}"#,
        ])
        .await;
    let bound = cluster
        .must(&[
            "create",
            "token",
            "robot",
            "--bound-object-kind=Pod",
            "--bound-object-name=holder",
        ])
        .await;
    let b = with(bound.trim());
    ok(&cluster, &none, &[&b, "get", "pods"]).await;
    let who = ok(&cluster, &none, &[&b, "auth", "whoami", "-o", "json"]).await;
    assert!(
        who.contains("authentication.kubernetes.io/pod-name") && who.contains("holder"),
        "{who}"
    );
    cluster
        .must(&["delete", "pod", "holder", "--grace-period=0", "--force"])
        .await;
    refused(&cluster, &none, &[&b, "get", "pods"]).await;
    let err = cluster
        .kubectl(
            &[
                "create",
                "token",
                "robot",
                "--bound-object-kind=Pod",
                "--bound-object-name=gone",
            ],
            None,
        )
        .await;
    assert!(!err.0 && err.2.contains(r#"pods "gone" not found"#), "{}", err.2);
    let err = cluster
        .kubectl(&["create", "token", "robot", "--duration=5m"], None)
        .await;
    assert!(!err.0 && err.2.contains("less than 10 minutes"), "{}", err.2);

    // Forged tokens: right key, wrong claims.
    let sa = cluster.json(&["get", "serviceaccount", "robot", "-o", "json"]).await;
    let uid = sa["metadata"]["uid"].as_str().unwrap().to_string();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let claims = |iss: &str, aud: &str, nbf: i64, exp: i64, uid: &str| {
        serde_json::json!({
            "iss": iss, "sub": "system:serviceaccount:default:robot", "aud": [aud],
            "nbf": nbf, "iat": nbf, "exp": exp, "jti": "x",
            "kubernetes.io": {"namespace": "default", "serviceaccount": {"name": "robot", "uid": uid}}
        })
    };
    let issuer = "https://kubernetes.default.svc.cluster.local";
    let good = forge(&cluster, claims(issuer, issuer, now - 5, now + 600, &uid));
    ok(&cluster, &none, &[&with(&good), "get", "pods"]).await;
    for (what, bad) in [
        ("expired", claims(issuer, issuer, now - 1200, now - 600, &uid)),
        ("not yet valid", claims(issuer, issuer, now + 600, now + 1200, &uid)),
        (
            "wrong issuer",
            claims("https://evil.example", issuer, now - 5, now + 600, &uid),
        ),
        (
            "wrong audience",
            claims(issuer, "somebody-else", now - 5, now + 600, &uid),
        ),
        (
            "old ServiceAccount",
            claims(issuer, issuer, now - 5, now + 600, "not-the-uid"),
        ),
    ] {
        let (accepted, _, err) = cluster
            .kubectl_with(&none, &[&with(&forge(&cluster, bad)), "get", "pods"], None)
            .await;
        assert!(!accepted && err.contains("Unauthorized"), "{what}: {err}");
    }
    // A recreated ServiceAccount does not revive the old one's tokens.
    cluster.must(&["delete", "serviceaccount", "robot"]).await;
    cluster.must(&["create", "serviceaccount", "robot"]).await;
    refused(&cluster, &none, &[&t, "get", "pods"]).await;

    // Others can verify our tokens: OIDC discovery and the key set.
    let (code, config) = curl(&cluster, "/.well-known/openid-configuration", &[]);
    assert_eq!(code, 200);
    let config: serde_json::Value = serde_json::from_str(&config).unwrap();
    assert_eq!(config["issuer"], issuer);
    let (_, jwks) = curl(&cluster, "/openid/v1/jwks", &[]);
    let jwks: serde_json::Value = serde_json::from_str(&jwks).unwrap();
    let kid = jsonwebtoken::decode_header(&token).unwrap().kid.unwrap();
    assert_eq!(jwks["keys"][0]["kid"], kid.as_str());
    assert_eq!(jwks["keys"][0]["alg"], "ES256");

    // No token in any log line.
    let log = cluster.apiserver_log();
    for secret in [&token, bound.trim(), &good] {
        assert!(!log.contains(secret), "a token leaked into the log");
    }
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_tokens_and_anonymous_requests() {
    let files = tempfile::tempdir().unwrap();
    let tokens = files.path().join("tokens.csv");
    std::fs::write(&tokens, "# bootstrap\nc4r0l-s3cret,carol,1001,\"ops,devs\"\n").unwrap();
    let audit = files.path().join("audit/audit.log");
    let cluster = Cluster::start_with(
        "kubernate",
        &[
            "--token-auth-file",
            tokens.to_str().unwrap(),
            "--anonymous-auth=true",
            "--audit-log-path",
            audit.to_str().unwrap(),
        ],
    )
    .await;
    let none = anonymous_kubeconfig(&cluster);
    let who = ok(
        &cluster,
        &none,
        &["--token=c4r0l-s3cret", "auth", "whoami", "-o", "json"],
    )
    .await;
    let who: serde_json::Value = serde_json::from_str(&who).unwrap();
    assert_eq!(who["status"]["userInfo"]["username"], "carol");
    assert_eq!(who["status"]["userInfo"]["uid"], "1001");
    assert_eq!(
        who["status"]["userInfo"]["groups"],
        serde_json::json!(["ops", "devs", "system:authenticated"])
    );
    refused(&cluster, &none, &["--token=wrong", "get", "pods"]).await;
    // Anonymous is on: a request without credentials is system:anonymous,
    // authorized like anyone (public info yes, the API no).
    let (code, body) = curl(&cluster, "/api/v1/namespaces/default/pods", &[]);
    assert_eq!(code, 403, "{body}");
    assert!(body.contains(r#"User \"system:anonymous\" cannot list"#), "{body}");
    assert_eq!(curl(&cluster, "/version", &[]).0, 200);
    assert!(!cluster.apiserver_log().contains("c4r0l-s3cret"));

    // The audit log: a line per request, who, what and how it ended, and
    // never a secret's data or a token.
    cluster
        .must(&[
            "create",
            "secret",
            "generic",
            "vault",
            "--from-literal=password=hunter2-xyzzy",
        ])
        .await;
    refused(&cluster, &none, &["--token=c4r0l-s3cret", "get", "secret", "vault"]).await;
    let log = std::fs::read_to_string(&audit).unwrap();
    let events: Vec<serde_json::Value> = log.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let created = events
        .iter()
        .find(|e| e["verb"] == "create" && e["objectRef"]["resource"] == "secrets")
        .expect("the secret's creation is audited");
    assert_eq!(created["user"]["username"], "admin");
    assert_eq!(created["responseStatus"]["code"], 201);
    assert_eq!(created["objectRef"]["namespace"], "default");
    let denied = events
        .iter()
        .find(|e| e["user"]["username"] == "carol" && e["objectRef"]["name"] == "vault")
        .expect("carol's refused read is audited");
    assert_eq!(denied["verb"], "get");
    assert_eq!(denied["responseStatus"]["code"], 403);
    assert_eq!(
        denied["user"]["groups"],
        serde_json::json!(["ops", "devs", "system:authenticated"])
    );
    assert!(denied["annotations"]["kubernate.io/latency-seconds"].is_string());
    assert!(events
        .iter()
        .any(|e| e["responseStatus"]["code"] == 401 || e["user"]["username"] == "system:anonymous"));
    assert!(
        !log.contains("hunter2-xyzzy") && !log.contains("aHVudGVyMi14eXp6eQ"),
        "a secret's data leaked"
    );
    assert!(!log.contains("c4r0l-s3cret"), "a token leaked");
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kubelet_reaches_only_its_own_node_and_what_its_pods_use() {
    let cluster = Cluster::start("kubernate").await;
    cluster.add_node("n1");
    cluster.add_node("n2");
    let n1 = cluster.pki().join("nodes/n1.kubeconfig");
    cluster
        .kubectl(
            &["apply", "-f", "-"],
            Some(
                r#"
apiVersion: v1
kind: Node
metadata: {name: n1}
---
apiVersion: v1
kind: Node
metadata: {name: n2}
---
apiVersion: v1
kind: Secret
metadata: {name: s1, namespace: default}
stringData: {k: v}
---
apiVersion: v1
kind: Secret
metadata: {name: s2, namespace: default}
stringData: {k: v}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: c1, namespace: default}
data: {k: v}
---
apiVersion: v1
kind: Pod
metadata: {name: p1, namespace: default}
spec:
  nodeName: n1
  volumes: [{name: s, secret: {secretName: s1}}]
  containers: [{name: c, image: busybox, envFrom: [{configMapRef: {name: c1}}]}]
---
apiVersion: v1
kind: Pod
metadata: {name: p2, namespace: default}
spec:
  nodeName: n2
  containers: [{name: c, image: busybox, env: [{name: X, valueFrom: {secretKeyRef: {name: s2, key: k}}}]}]
"#,
            ),
        )
        .await;
    ok(&cluster, &n1, &["get", "secret", "s1"]).await;
    ok(&cluster, &n1, &["get", "configmap", "c1"]).await;
    let err = refused(&cluster, &n1, &["get", "secret", "s2"]).await;
    assert!(
        err.contains("no relationship found between node 'n1' and this object"),
        "{err}"
    );
    refused(&cluster, &n1, &["get", "pod", "p2"]).await;
    ok(&cluster, &n1, &["get", "pod", "p1"]).await;
    refused(&cluster, &n1, &["get", "pods"]).await;
    let mine = ok(
        &cluster,
        &n1,
        &["get", "pods", "--field-selector", "spec.nodeName=n1", "-o", "name"],
    )
    .await;
    assert_eq!(mine.trim(), "pod/p1");
    refused(&cluster, &n1, &["get", "pods", "--field-selector", "spec.nodeName=n2"]).await;
    // A selector the list reads as `!=` does not pass for `spec.nodeName=n1`.
    refused(
        &cluster,
        &n1,
        &[
            "get",
            "pods",
            "-A",
            "--field-selector",
            "spec.nodeName!=(,spec.nodeName=n1,)",
        ],
    )
    .await;
    refused(&cluster, &n1, &["label", "node", "n2", "x=y"]).await;
    // NodeRestriction looks inside what a kubelet writes.
    let (made, _, err) = cluster
        .kubectl_with(
            &n1,
            &["create", "-f", "-"],
            Some(r#"{"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n3"}}"#),
        )
        .await;
    assert!(!made && err.contains("is not allowed to modify node 'n3'"), "{err}");
    let (made, _, err) = cluster
        .kubectl_with(
            &n1,
            &["create", "-f", "-"],
            Some(
                r#"{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "sneaky", "namespace": "default"},
                     "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "busybox"}]}}"#,
            ),
        )
        .await;
    assert!(!made && err.contains("can only create mirror pods"), "{err}");
    ok(&cluster, &n1, &["label", "node", "n1", "mine=yes"]).await;
    let err = refused(
        &cluster,
        &n1,
        &["label", "node", "n1", "node-restriction.kubernetes.io/pool=a"],
    )
    .await;
    assert!(err.contains("node-restriction.kubernetes.io"), "{err}");
    refused(&cluster, &n1, &["get", "deployments"]).await;

    // The same through the components' gRPC client.
    let mut config = common::kubeconfig::Kubeconfig::load_resolved(&n1).unwrap();
    config.server = cluster.server.clone();
    let client = client::Client::from_resolved(&config).unwrap();
    let secrets: client::Api<k8s_openapi::api::core::v1::Secret> = client::Api::namespaced(client.clone(), "default");
    assert!(secrets.get("s1").await.is_ok());
    let denied = secrets.get("s2").await.unwrap_err();
    assert!(denied.to_string().contains("no relationship found"), "{denied}");
    let pods: client::Api<k8s_openapi::api::core::v1::Pod> = client::Api::namespaced(client, "default");
    let listed = pods
        .list(&client::ListParams::default().fields("spec.nodeName=n1"))
        .await
        .unwrap();
    assert_eq!(listed.items.len(), 1);
    assert!(pods.list(&client::ListParams::default()).await.is_err());
    // A reference smuggling the namespace into the name is refused.
    let everywhere: client::Api<k8s_openapi::api::core::v1::Pod> = client::Api::all(pods.client().clone());
    let smuggled = everywhere.get("default/p2").await.unwrap_err();
    assert!(
        smuggled.to_string().contains("'/'") || smuggled.to_string().contains("namespace"),
        "{smuggled}"
    );
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_of_an_existing_service_account_get_the_token_volume() {
    let cluster = Cluster::start("kubernate").await;
    cluster.must(&["create", "serviceaccount", "robot"]).await;
    let pod = |name: &str, extra: &str| {
        format!(
            r#"{{"apiVersion": "v1", "kind": "Pod", "metadata": {{"name": "{name}", "namespace": "default"}},
                "spec": {{"serviceAccountName": "robot", {extra} "initContainers": [{{"name": "i", "image": "busybox"}}],
                         "containers": [{{"name": "c", "image": "busybox"}}]}}}}"#
        )
    };
    let (ok, _, err) = cluster.kubectl(&["create", "-f", "-"], Some(&pod("with", ""))).await;
    assert!(ok, "{err}");
    let with = cluster.json(&["get", "pod", "with", "-o", "json"]).await;
    let volume = &with["spec"]["volumes"][0];
    let name = volume["name"].as_str().unwrap();
    assert!(name.starts_with("kube-api-access-"), "{volume}");
    let sources = volume["projected"]["sources"].to_string();
    assert!(
        sources.contains("serviceAccountToken") && sources.contains("kube-root-ca.crt"),
        "{sources}"
    );
    for kind in ["initContainers", "containers"] {
        let mount = &with["spec"][kind][0]["volumeMounts"][0];
        assert_eq!(mount["mountPath"], "/var/run/secrets/kubernetes.io/serviceaccount");
        assert_eq!(mount["readOnly"], true);
        assert_eq!(mount["name"], name);
    }
    let (ok, _, err) = cluster
        .kubectl(
            &["create", "-f", "-"],
            Some(&pod("without", r#""automountServiceAccountToken": false,"#)),
        )
        .await;
    assert!(ok, "{err}");
    let without = cluster.json(&["get", "pod", "without", "-o", "json"]).await;
    assert!(without["spec"]["volumes"].is_null(), "{without}");
    // A ServiceAccount that does not exist (yet): admitted, without the volume.
    let (ok, _, err) = cluster
        .kubectl(
            &["create", "-f", "-"],
            Some(&pod("orphan", "").replace("robot", "nobody")),
        )
        .await;
    assert!(ok, "{err}");
    let orphan = cluster.json(&["get", "pod", "orphan", "-o", "json"]).await;
    assert!(orphan["spec"]["volumes"].is_null(), "{orphan}");
    cluster.stop().await;
}
