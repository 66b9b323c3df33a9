//! The kubelet: the node agent. It will register its Node, heartbeat through
//! a Lease, watch the pods bound to it and run them through a container
//! runtime behind a CRI-shaped trait. Nothing is here yet: the binary says so
//! and exits non-zero.
