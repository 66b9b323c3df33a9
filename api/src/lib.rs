//! The shapes of the Kubernetes API as Kubernate serves it.
//!
//! The object types themselves are Kubernetes' own, from `k8s-openapi`
//! (pinned to Kubernetes 1.35), so the JSON Kubernate reads and writes is
//! exactly what kubectl and client-go expect. On top of them this crate
//! holds what every component needs to agree on: which resources exist and
//! how they are named ([`resources`]), and the internal gRPC protocol the
//! components use to reach the API server ([`proto`]).
//!
//! # Layout
//!
//! - [`quantity`]: resource quantities (`500m`, `128Mi`) as numbers.
//! - [`resources`]: the table of served resources (group, version, kind,
//!   plural, short names, scope, verbs, subresources) behind discovery,
//!   routing, RBAC names and storage keys.
//! - [`scheduling`]: taints and tolerations, node selectors and affinity.
//! - [`proto`]: the generic `Resources` gRPC service mirroring the REST verbs,
//!   generated from `proto/kubernate/resource/v1/resource.proto`.
//! - [`k8s`]: the Kubernetes types (a re-export of `k8s-openapi`).

pub mod quantity;
pub mod quota;
pub mod resources;
pub mod scheduling;

/// The Kubernetes API types, from `k8s-openapi` at Kubernetes 1.35.
pub use k8s_openapi as k8s;

/// The internal gRPC protocol: one generic service mirroring the REST verbs,
/// objects carried as Kubernetes JSON.
pub mod proto {
    #![allow(clippy::all, missing_docs, rust_2018_idioms)]
    tonic::include_proto!("kubernate.resource.v1");
}

/// Calls the macro `$callback!` with the k8s-openapi type of every kind in
/// [`resources::RESOURCES`], comma-separated, so that code needing one
/// generic call per served type (OpenAPI schemas, typed round trips, the
/// table's own test) lists them in one place.
#[macro_export]
macro_rules! with_every_type {
    ($callback:ident) => {
        $callback! {
            $crate::k8s::api::core::v1::Binding,
            $crate::k8s::api::core::v1::ComponentStatus,
            $crate::k8s::api::core::v1::ConfigMap,
            $crate::k8s::api::core::v1::Endpoints,
            $crate::k8s::api::core::v1::Event,
            $crate::k8s::api::core::v1::LimitRange,
            $crate::k8s::api::core::v1::Namespace,
            $crate::k8s::api::core::v1::Node,
            $crate::k8s::api::core::v1::PersistentVolumeClaim,
            $crate::k8s::api::core::v1::PersistentVolume,
            $crate::k8s::api::core::v1::Pod,
            $crate::k8s::api::core::v1::PodTemplate,
            $crate::k8s::api::core::v1::ReplicationController,
            $crate::k8s::api::core::v1::ResourceQuota,
            $crate::k8s::api::core::v1::Secret,
            $crate::k8s::api::core::v1::ServiceAccount,
            $crate::k8s::api::core::v1::Service,
            $crate::k8s::api::apps::v1::ControllerRevision,
            $crate::k8s::api::apps::v1::DaemonSet,
            $crate::k8s::api::apps::v1::Deployment,
            $crate::k8s::api::apps::v1::ReplicaSet,
            $crate::k8s::api::apps::v1::StatefulSet,
            $crate::k8s::api::events::v1::Event,
            $crate::k8s::api::authentication::v1::TokenReview,
            $crate::k8s::api::authentication::v1::SelfSubjectReview,
            $crate::k8s::api::authorization::v1::LocalSubjectAccessReview,
            $crate::k8s::api::authorization::v1::SelfSubjectAccessReview,
            $crate::k8s::api::authorization::v1::SelfSubjectRulesReview,
            $crate::k8s::api::authorization::v1::SubjectAccessReview,
            $crate::k8s::api::autoscaling::v2::HorizontalPodAutoscaler,
            $crate::k8s::api::autoscaling::v1::HorizontalPodAutoscaler,
            $crate::k8s::api::batch::v1::CronJob,
            $crate::k8s::api::batch::v1::Job,
            $crate::k8s::api::certificates::v1::CertificateSigningRequest,
            $crate::k8s::api::policy::v1::PodDisruptionBudget,
            $crate::k8s::api::rbac::v1::ClusterRoleBinding,
            $crate::k8s::api::rbac::v1::ClusterRole,
            $crate::k8s::api::rbac::v1::RoleBinding,
            $crate::k8s::api::rbac::v1::Role,
            $crate::k8s::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
            $crate::k8s::api::scheduling::v1::PriorityClass,
            $crate::k8s::api::coordination::v1::Lease,
            $crate::k8s::api::discovery::v1::EndpointSlice
        }
    };
}
