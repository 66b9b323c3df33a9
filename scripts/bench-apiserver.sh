#!/usr/bin/env bash
# Benchmarks the API server (release build) through its REST API on
# Kubernate's store and on etcd 3.4 in the same run: CREATE, GET, LIST of
# every pod, watch fan-out, and the API server's memory with every pod
# stored. Prints a Markdown table; results go in docs/benchmarks.md.
#
#   scripts/bench-apiserver.sh [--pods 10000] [--watchers 1000] [--clients 16]
#
# Needs etcd 3.4 (Debian: apt-get install etcd-server).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/kubernate-target}"
cargo build --release -q -p apiserver -p store --bins
cargo build --release -q -p apiserver --example bench
ulimit -n 65536 2>/dev/null || true
"$CARGO_TARGET_DIR/release/examples/bench" "$@"
