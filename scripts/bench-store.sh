#!/usr/bin/env bash
# Benchmarks Kubernate's store against etcd 3.4 in one run, same load, same
# machine: a 1-member and a 3-member cluster of each, on loopback, both
# with fsync on every commit (etcd's default; ours always). Prints one line
# per system and phase (for 3 members through the leader and through a
# follower), then each system's resident memory after the load.
#
#   scripts/bench-store.sh [--clients N] [--ops N] [--value-size N]
#
# Needs etcd 3.4 (Debian: apt-get install etcd-server). Results go in
# docs/benchmarks.md by hand, with this command.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/kubernate-target}"
cargo build --release -q -p store --bins
bin="$CARGO_TARGET_DIR/release"
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

# start_cluster KIND SIZE BASEPORT → sets ENDPOINTS and CLUSTER_PIDS
start_cluster() {
  local kind=$1 size=$2 base=$3 initial="" i
  CLUSTER_PIDS=()
  ENDPOINTS=""
  for ((i = 0; i < size; i++)); do initial+="m$i=http://127.0.0.1:$((base + 10 * i + 1)),"; done
  initial=${initial%,}
  for ((i = 0; i < size; i++)); do
    local c=$((base + 10 * i)) p=$((base + 10 * i + 1)) m=$((base + 10 * i + 2))
    local args=(--name "m$i" --data-dir "$work/$kind-$size-m$i" --initial-cluster "$initial"
      --listen-client-urls "http://127.0.0.1:$c" --advertise-client-urls "http://127.0.0.1:$c"
      --listen-peer-urls "http://127.0.0.1:$p" --initial-advertise-peer-urls "http://127.0.0.1:$p"
      --listen-metrics-urls "http://127.0.0.1:$m" --initial-cluster-state new)
    if [ "$kind" = etcd ]; then
      etcd "${args[@]}" --log-level error >"$work/$kind-$size-m$i.log" 2>&1 &
    else
      RUST_LOG=warn "$bin/kubernate-store" "${args[@]}" >"$work/$kind-$size-m$i.log" 2>&1 &
    fi
    CLUSTER_PIDS+=($!)
    pids+=($!)
    ENDPOINTS+="http://127.0.0.1:$c,"
  done
  ENDPOINTS=${ENDPOINTS%,}
  for _ in $(seq 1 100); do
    if ETCDCTL_API=3 etcdctl --endpoints="${ENDPOINTS%%,*}" put bench/ready 1 >/dev/null 2>&1; then return 0; fi
    sleep 0.1
  done
  echo "cluster $kind-$size did not become ready" >&2
  return 1
}

rss_mib() {
  local total=0 p
  for p in "$@"; do total=$((total + $(awk '/VmRSS/ {print $2}' "/proc/$p/status"))); done
  echo "$((total / 1024))"
}

echo "# $(date -u +%F) $(nproc) cores; bench args: ${*:-defaults}"
declare -A memory
port=30000
for size in 1 3; do
  for kind in kubernate etcd; do
    start_cluster "$kind" "$size" "$port"
    if [ "$size" -gt 1 ]; then
      # Through the leader and through a follower, each said: a follower
      # forwards every write, so only like with like compares.
      # (host:port, not a URL: etcdctl sends the endpoint as the HTTP/2
      # authority for maintenance calls, the store's known gap.)
      leader="" follower=""
      for e in ${ENDPOINTS//,/ }; do
        role=$(ETCDCTL_API=3 etcdctl --endpoints="${e#http://}" endpoint status -w json 2>/dev/null |
          python3 -c 'import json,sys; s=json.load(sys.stdin)[0]["Status"]; print("leader" if s["header"]["member_id"] == s["leader"] else "follower")' 2>/dev/null || echo unknown)
        if [ "$role" = leader ]; then leader=$e; elif [ -z "$follower" ]; then follower=$e; fi
      done
      for target in leader follower; do
        endpoint=${!target}
        [ -n "$endpoint" ] || { echo "# $kind-$size: no $target found" >&2; continue; }
        "$bin/kubernate-store-bench" --endpoints "$endpoint" --label "$kind-$size-via-$target" "$@"
      done
    else
      "$bin/kubernate-store-bench" --endpoints "${ENDPOINTS%%,*}" --label "$kind-$size" "$@"
    fi
    memory["$kind-$size"]=$(rss_mib "${CLUSTER_PIDS[@]}")
    for p in "${CLUSTER_PIDS[@]}"; do kill "$p"; done
    wait "${CLUSTER_PIDS[@]}" 2>/dev/null || true
    port=$((port + 100))
  done
done
for k in kubernate-1 etcd-1 kubernate-3 etcd-3; do echo "RSS $k: ${memory[$k]} MiB (all members)"; done
