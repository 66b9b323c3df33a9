//! The controller manager: control loops that move actual state toward
//! desired state (ReplicaSet, Deployment, garbage collector, namespace,
//! endpoints, …), each built on shared informers and its own workqueue,
//! behind one leader election. Nothing is here yet: the binary says so and
//! exits non-zero.
