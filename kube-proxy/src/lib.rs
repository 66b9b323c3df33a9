//! kube-proxy: turns Services and EndpointSlices into virtual IPs and load
//! balancing on each node (a userspace L4 proxy and kernel DNAT rules).
//! Nothing is here yet: the binary says so and exits non-zero.
