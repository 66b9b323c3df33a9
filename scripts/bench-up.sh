#!/usr/bin/env bash
# Benchmarks `kubernate up` (release build): the time from the command to a
# ready cluster (API server /readyz and every node Ready), and the idle
# resident memory of the whole control plane plus one node (supervisor,
# store, API server, controller manager, scheduler, kubelet) after it has
# settled. Results go in docs/benchmarks.md beside k3s's published
# footprint.
#
#   scripts/bench-up.sh [--settle SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
settle=30
[[ "${1:-}" == "--settle" ]] && settle="$2"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/kubernate-target}"
cargo build --release -q -p apiserver -p store -p scheduler -p kubelet -p controller-manager -p kubernate --bins
bin="$CARGO_TARGET_DIR/release"
dir="$(mktemp -d)"
trap '"$bin/kubernate" down --dir "$dir" >/dev/null 2>&1 || true; rm -rf "$dir"' EXIT
offset=$(( (RANDOM % 20 + 20) * 500 ))

rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }

start=$(date +%s.%N)
"$bin/kubernate" up --dir "$dir" --detach --port-offset "$offset" --bin-dir "$bin" >/dev/null
ready=$(date +%s.%N)
first=$(echo "$ready - $start" | bc)

# Again, with the PKI, image and data already there (a restart).
"$bin/kubernate" down --dir "$dir" >/dev/null
start=$(date +%s.%N)
"$bin/kubernate" up --dir "$dir" --detach --port-offset "$offset" --bin-dir "$bin" >/dev/null
ready=$(date +%s.%N)
again=$(echo "$ready - $start" | bc)

sleep "$settle"
supervisor=$(cat "$dir/up.pid")
total=$(rss_kib "$supervisor")
echo "| process | RSS MiB |"
echo "|---|---:|"
printf "| kubernate up (supervisor) | %.1f |\n" "$(echo "$total / 1024" | bc -l)"
for pid in $(pgrep -P "$supervisor"); do
  name=$(tr '\0' ' ' < "/proc/$pid/cmdline" | awk '{print $1}' | xargs basename)
  kib=$(rss_kib "$pid")
  total=$((total + kib))
  printf "| %s | %.1f |\n" "$name" "$(echo "$kib / 1024" | bc -l)"
done
printf "| **total** | **%.1f** |\n\n" "$(echo "$total / 1024" | bc -l)"
printf "up → ready: first start (PKI, image) %.2f s, restart %.2f s\n" "$first" "$again"
