//! Protobuf request bodies: objects encoded with the k8s-pb types exactly
//! as client-go encodes them decode to the JSON Kubernetes would store;
//! and kubectl's imperative commands, which send protobuf, work.

#![allow(clippy::unwrap_used)]

use k8s_pb::api::apps::v1 as apps;
use k8s_pb::api::core::v1 as core;
use k8s_pb::apimachinery::pkg::api::resource::Quantity;
use k8s_pb::apimachinery::pkg::apis::meta::v1 as meta;
use k8s_pb::apimachinery::pkg::runtime::{TypeMeta, Unknown};
use k8s_pb::apimachinery::pkg::util::intstr::IntOrString;
use prost::Message;
use serde_json::json;
use testkit::Cluster;

/// `k8s\0` + runtime.Unknown, as client-go's protobuf serializer writes.
fn envelope(api_version: &str, kind: &str, object: &impl Message) -> Vec<u8> {
    let unknown = Unknown {
        type_meta: Some(TypeMeta {
            api_version: Some(api_version.into()),
            kind: Some(kind.into()),
        }),
        raw: Some(object.encode_to_vec()),
        content_encoding: Some(String::new()),
        content_type: Some(String::new()),
    };
    let mut body = b"k8s\x00".to_vec();
    body.extend(unknown.encode_to_vec());
    body
}

fn s(text: &str) -> Option<String> {
    Some(text.to_string())
}

#[test]
fn a_deployment_decodes_to_its_json() {
    let deployment = apps::Deployment {
        metadata: Some(meta::ObjectMeta {
            name: s("web"),
            namespace: s("shop"),
            generate_name: s(""),
            labels: [("app".to_string(), "web".to_string())].into(),
            creation_timestamp: Some(meta::Time {
                seconds: Some(0),
                nanos: Some(0),
            }),
            ..Default::default()
        }),
        spec: Some(apps::DeploymentSpec {
            replicas: Some(3),
            selector: Some(meta::LabelSelector {
                match_labels: [("app".to_string(), "web".to_string())].into(),
                ..Default::default()
            }),
            strategy: Some(apps::DeploymentStrategy {
                r#type: s("RollingUpdate"),
                rolling_update: Some(apps::RollingUpdateDeployment {
                    max_surge: Some(IntOrString {
                        r#type: Some(1),
                        int_val: Some(0),
                        str_val: s("50%"),
                    }),
                    max_unavailable: Some(IntOrString {
                        r#type: Some(0),
                        int_val: Some(1),
                        str_val: s(""),
                    }),
                }),
            }),
            template: Some(core::PodTemplateSpec {
                metadata: Some(meta::ObjectMeta {
                    labels: [("app".to_string(), "web".to_string())].into(),
                    ..Default::default()
                }),
                spec: Some(core::PodSpec {
                    host_network: Some(false),
                    containers: vec![core::Container {
                        name: s("app"),
                        image: s("busybox:1"),
                        args: vec!["sleep".into(), "3600".into()],
                        ports: vec![core::ContainerPort {
                            container_port: Some(8080),
                            ..Default::default()
                        }],
                        env: vec![core::EnvVar {
                            name: s("TOKEN"),
                            value_from: Some(core::EnvVarSource {
                                secret_key_ref: Some(core::SecretKeySelector {
                                    local_object_reference: Some(core::LocalObjectReference { name: s("creds") }),
                                    key: s("token"),
                                    optional: None,
                                }),
                                ..Default::default()
                            }),
                            ..Default::default()
                        }],
                        resources: Some(core::ResourceRequirements {
                            limits: [("memory".to_string(), Quantity { string: s("128Mi") })].into(),
                            ..Default::default()
                        }),
                        ..Default::default()
                    }],
                    volumes: vec![core::Volume {
                        name: s("data"),
                        volume_source: Some(core::VolumeSource {
                            empty_dir: Some(core::EmptyDirVolumeSource::default()),
                            ..Default::default()
                        }),
                    }],
                    ..Default::default()
                }),
            }),
            ..Default::default()
        }),
        status: None,
    };
    let decoded = apiserver::protobuf::decode_body(&envelope("apps/v1", "Deployment", &deployment)).unwrap();
    assert_eq!(decoded["apiVersion"], "apps/v1");
    assert_eq!(decoded["kind"], "Deployment");
    assert_eq!(
        decoded["metadata"],
        json!({"name": "web", "namespace": "shop", "labels": {"app": "web"}})
    );
    let spec = &decoded["spec"];
    assert_eq!(spec["replicas"], 3);
    assert_eq!(
        spec["strategy"]["rollingUpdate"],
        json!({"maxSurge": "50%", "maxUnavailable": 1})
    );
    let container = &spec["template"]["spec"]["containers"][0];
    assert_eq!(container["args"], json!(["sleep", "3600"]));
    assert_eq!(container["ports"], json!([{"containerPort": 8080}]));
    assert_eq!(container["resources"]["limits"]["memory"], "128Mi");
    // Embedded Go structs are flattened as Kubernetes' JSON has them.
    assert_eq!(
        container["env"][0]["valueFrom"]["secretKeyRef"],
        json!({"name": "creds", "key": "token"})
    );
    assert_eq!(
        spec["template"]["spec"]["volumes"],
        json!([{"name": "data", "emptyDir": {}}])
    );
    assert_eq!(spec["template"]["spec"]["hostNetwork"], false);
    // And the result is a valid Deployment for k8s-openapi.
    let typed: k8s_openapi::api::apps::v1::Deployment = serde_json::from_value(decoded).unwrap();
    assert_eq!(typed.spec.unwrap().replicas, Some(3));
}

#[test]
fn secrets_times_and_delete_options_decode() {
    let secret = core::Secret {
        metadata: Some(meta::ObjectMeta {
            name: s("creds"),
            creation_timestamp: Some(meta::Time {
                seconds: Some(1_700_000_000),
                nanos: Some(0),
            }),
            ..Default::default()
        }),
        data: [("token".to_string(), b"s3cret".to_vec())].into(),
        r#type: s("Opaque"),
        ..Default::default()
    };
    let decoded = apiserver::protobuf::decode_body(&envelope("v1", "Secret", &secret)).unwrap();
    assert_eq!(decoded["data"]["token"], "czNjcmV0");
    assert_eq!(decoded["metadata"]["creationTimestamp"], "2023-11-14T22:13:20Z");

    let options = meta::DeleteOptions {
        grace_period_seconds: Some(0),
        propagation_policy: s("Foreground"),
        preconditions: Some(meta::Preconditions {
            uid: s("u-1"),
            resource_version: None,
        }),
        ..Default::default()
    };
    let decoded = apiserver::protobuf::decode_body(&envelope("meta.k8s.io/v1", "DeleteOptions", &options)).unwrap();
    assert_eq!(decoded["gracePeriodSeconds"], 0);
    assert_eq!(decoded["propagationPolicy"], "Foreground");
    assert_eq!(decoded["preconditions"]["uid"], "u-1");

    for bad in [&b"not protobuf"[..], b"k8s\x00\x0a\xff"] {
        assert!(apiserver::protobuf::decode_body(bad).is_err());
    }
}

async fn kubectls_imperative_commands_send_protobuf_and_work_on(kind: &str) {
    let c = Cluster::start(kind).await;
    c.must(&["create", "namespace", "shop"]).await;
    c.must(&[
        "create",
        "configmap",
        "settings",
        "-n",
        "shop",
        "--from-literal=color=blue",
    ])
    .await;
    c.must(&[
        "create",
        "secret",
        "generic",
        "creds",
        "-n",
        "shop",
        "--from-literal=token=s3cret",
    ])
    .await;
    c.must(&[
        "create",
        "deployment",
        "web",
        "-n",
        "shop",
        "--image=busybox:1",
        "--replicas=2",
        "--port=8080",
        "--",
        "sleep",
        "3600",
    ])
    .await;
    c.must(&[
        "run",
        "one",
        "-n",
        "shop",
        "--image=busybox",
        "--labels=app=one",
        "--",
        "sleep",
        "10",
    ])
    .await;
    c.must(&["create", "service", "clusterip", "web", "-n", "shop", "--tcp=80:8080"])
        .await;
    c.must(&["create", "serviceaccount", "robot", "-n", "shop"]).await;

    let cm = c
        .json(&["get", "configmap", "settings", "-n", "shop", "-o", "json"])
        .await;
    assert_eq!(cm["data"]["color"], "blue");
    let secret = c.json(&["get", "secret", "creds", "-n", "shop", "-o", "json"]).await;
    assert_eq!(secret["data"]["token"], "czNjcmV0");
    let web = c.json(&["get", "deployment", "web", "-n", "shop", "-o", "json"]).await;
    assert_eq!(web["spec"]["replicas"], 2);
    let container = &web["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(container["image"], "busybox:1");
    assert_eq!(container["command"], serde_json::json!(["sleep", "3600"]));
    assert_eq!(container["ports"][0]["containerPort"], 8080);
    let pod = c.json(&["get", "pod", "one", "-n", "shop", "-o", "json"]).await;
    assert_eq!(pod["spec"]["containers"][0]["args"], serde_json::json!(["sleep", "10"]));
    assert_eq!(pod["metadata"]["labels"]["app"], "one");
    let svc = c.json(&["get", "service", "web", "-n", "shop", "-o", "json"]).await;
    assert_eq!(svc["spec"]["ports"][0]["targetPort"], 8080);
    assert!(svc["spec"]["clusterIP"].as_str().unwrap().starts_with("10."));
    c.stop().await;
}

/// A GET as admin asking for protobuf; the response body.
async fn get_protobuf(c: &Cluster, path: &str) -> Vec<u8> {
    c.curl(&["-f", "-H", "Accept: application/vnd.kubernetes.protobuf, */*"], path)
        .await
}

/// The object inside `k8s\0` + runtime.Unknown, checked to be `kind`.
fn unwrap_envelope(body: &[u8], kind: &str) -> Vec<u8> {
    let unknown = Unknown::decode(body.strip_prefix(b"k8s\x00").expect("the protobuf magic")).unwrap();
    assert_eq!(unknown.type_meta.unwrap().kind.as_deref(), Some(kind));
    unknown.raw.unwrap()
}

/// client-go's typed clients ask for protobuf: objects, lists and watch
/// streams come back in it, readable by the k8s-pb types, and kubectl
/// (which reads the answer of a protobuf create) prints what a JSON get
/// shows.
async fn responses_are_protobuf_when_the_client_prefers_it_on(kind: &str) {
    let c = Cluster::start(kind).await;
    let created = c
        .json(&[
            "create",
            "configmap",
            "settings",
            "--from-literal=color=blue",
            "-o",
            "json",
        ])
        .await;
    let fetched = c.json(&["get", "configmap", "settings", "-o", "json"]).await;
    assert_eq!(created, fetched);
    let pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "web", "labels": {"app": "web"}},
        "spec": {"containers": [{
            "name": "c", "image": "busybox", "command": ["sleep", "3600"],
            "ports": [{"containerPort": 8080}],
            "resources": {"limits": {"cpu": "500m", "memory": "64Mi"}},
            "readinessProbe": {"httpGet": {"port": "http", "path": "/"}},
        }]},
    });
    let (ok, out, err) = c.kubectl(&["apply", "-f", "-"], Some(&pod.to_string())).await;
    assert!(ok, "{out}{err}");

    let body = get_protobuf(&c, "/api/v1/namespaces/default/pods/web").await;
    let got = core::Pod::decode(unwrap_envelope(&body, "Pod").as_slice()).unwrap();
    let meta = got.metadata.unwrap();
    assert_eq!(meta.name.as_deref(), Some("web"));
    assert_eq!(meta.labels.get("app").map(String::as_str), Some("web"));
    assert!(meta.creation_timestamp.unwrap().seconds.unwrap() > 1_700_000_000);
    assert!(meta.resource_version.unwrap().parse::<i64>().unwrap() > 0);
    let spec = got.spec.unwrap();
    let container = &spec.containers[0];
    assert_eq!(container.command, ["sleep", "3600"]);
    assert_eq!(container.ports[0].container_port, Some(8080));
    let limits = &container.resources.as_ref().unwrap().limits;
    assert_eq!(limits["cpu"].string.as_deref(), Some("500m"));
    let probe_port = container.readiness_probe.as_ref().unwrap().handler.as_ref().unwrap();
    let port = probe_port.http_get.as_ref().unwrap().port.as_ref().unwrap();
    assert_eq!((port.r#type, port.str_val.as_deref()), (Some(1), Some("http")));
    // Defaults the server applied arrive too.
    assert_eq!(spec.restart_policy.as_deref(), Some("Always"));

    let body = get_protobuf(&c, "/api/v1/namespaces/default/pods").await;
    let list = core::PodList::decode(unwrap_envelope(&body, "PodList").as_slice()).unwrap();
    assert_eq!(list.items.len(), 1);
    assert_eq!(list.items[0].metadata.as_ref().unwrap().name.as_deref(), Some("web"));
    assert!(list.metadata.unwrap().resource_version.is_some());

    // A watch: length-prefixed WatchEvents, each object enveloped.
    let stream = get_protobuf(&c, "/api/v1/namespaces/default/configmaps?watch=true&timeoutSeconds=1").await;
    let mut rest = stream.as_slice();
    let mut names = Vec::new();
    while rest.len() >= 4 {
        let length = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        let event = meta::WatchEvent::decode(&rest[4..4 + length]).unwrap();
        assert_eq!(event.r#type.as_deref(), Some("ADDED"));
        let raw = event.object.unwrap().raw.unwrap();
        let cm = core::ConfigMap::decode(unwrap_envelope(&raw, "ConfigMap").as_slice()).unwrap();
        names.push(cm.metadata.unwrap().name.unwrap());
        rest = &rest[4 + length..];
    }
    assert!(rest.is_empty());
    assert!(
        names.contains(&"settings".to_string()),
        "{names:?} {}",
        String::from_utf8_lossy(&stream)
    );
    c.stop().await;
}

#[test]
fn the_message_table_matches_the_k8s_pb_in_use() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let out = std::process::Command::new("python3")
        .arg(root.join("scripts/gen-protobuf-schema.py"))
        .arg("--check")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectls_imperative_commands_send_protobuf_and_work() {
    kubectls_imperative_commands_send_protobuf_and_work_on("kubernate").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectls_imperative_commands_send_protobuf_and_work_on_etcd() {
    kubectls_imperative_commands_send_protobuf_and_work_on("etcd").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn responses_are_protobuf_when_the_client_prefers_it() {
    responses_are_protobuf_when_the_client_prefers_it_on("kubernate").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn responses_are_protobuf_when_the_client_prefers_it_on_etcd() {
    responses_are_protobuf_when_the_client_prefers_it_on("etcd").await;
}
