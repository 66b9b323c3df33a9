#!/usr/bin/env bash
# Benchmarks pod start-up (release build): 100 pods created through the API
# server, scheduled, and started by one kubelet with the process runtime
# (isolated when run as root: busybox image, namespaces, cgroups);
# create → Running latency. Results go in docs/benchmarks.md beside the
# Kubernetes pod start-up SLO.
#
#   scripts/bench-kubelet.sh [--pods 100]
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/kubernate-target}"
cargo build --release -q -p apiserver -p store -p scheduler -p kubelet -p kubernate --bins
cargo build --release -q -p kubelet --example kubelet-bench
"$CARGO_TARGET_DIR/release/examples/kubelet-bench" "$@"
