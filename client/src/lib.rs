//! The component-side client library that the scheduler, controller manager,
//! kubelet and kube-proxy are built on.
//!
//! It will hold the List-Watch machinery under the names Kubernetes uses:
//! `reflector`, `informer`, `indexer`, `workqueue`, `leader_election`, and
//! typed access to the API server over mutual-TLS gRPC. Nothing is here yet;
//! the transport it will use (`common::grpc`, `common::kubeconfig`) is.
