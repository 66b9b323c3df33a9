#!/usr/bin/env bash
# Benchmarks the scheduler (release build): 10,000 pods onto 5,000 nodes,
# through the framework alone and end to end through the real API server,
# store and scheduler binary. Prints a Markdown table; results go in
# docs/benchmarks.md beside kube-scheduler's published throughput.
#
#   scripts/bench-scheduler.sh [--nodes 5000] [--pods 10000]
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/kubernate-target}"
cargo build --release -q -p apiserver -p store -p scheduler --bins
cargo build --release -q -p scheduler --example scheduler-bench
ulimit -n 65536 2>/dev/null || true
"$CARGO_TARGET_DIR/release/examples/scheduler-bench" "$@"
