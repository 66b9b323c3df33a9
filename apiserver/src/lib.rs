//! The API server: the Kubernetes REST API and the internal gRPC API.
//!
//! It will be the only component that talks to the store, with the layers
//! Kubernetes documents: API layer → access control (authentication,
//! authorization, admission) → registry → storage. Nothing is here yet: the
//! binary says so and exits non-zero.
