#!/usr/bin/env bash
# Three-node gossip throughput, two anna-server builds side by side: each build runs as a
# three-node cluster on loopback (one actor per node, 100 ms epochs, a cluster secret), and
# redis-benchmark writes random keys through node 0, so every epoch gossips thousands of keys
# to the two other nodes. Rounds alternate between the builds; it prints every run's
# requests/s and the median new/baseline ratio.
#
#   BASELINE=/tmp/anna-server-old bash anna-kvs/scripts/cluster-gossip-bench.sh [requests]
#   REPEAT=10 BASELINE=... bash anna-kvs/scripts/cluster-gossip-bench.sh   (even: fair order)
#   NEW=/path/a BASELINE=/path/a ...     # an A/A run shows the noise floor
#
# The baseline may be a build from before gossip was authenticated: it is given the same
# flags, less --cluster-secret if it does not know the flag.
set -euo pipefail
cd "$(dirname "$0")/../.."
requests=${1:-400000}
repeat=${REPEAT:-8}
[ $((repeat % 2)) = 0 ] || { echo "REPEAT must be even: each build goes first equally often"; exit 2; }
baseline=${BASELINE:?set BASELINE to another anna-server binary}
cargo build --release --quiet --bin anna-server
new=${NEW:-./target/release/anna-server}

pids=""
cleanup() {
  for p in $pids; do kill -INT "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  pids=""
  sleep 0.5 # let the machine settle before the next cluster
}
trap cleanup EXIT

start_cluster() { # binary base-port -> starts 3 nodes: redis on base+0..2, gossip on base+10,20,30
  local bin=$1 base=$2 secret=() memory=()
  if "$bin" --help | grep -q -- --cluster-secret; then secret=(--cluster-secret bench-secret); fi
  # Memory only (builds that keep a data directory would otherwise share ./anna-data).
  if "$bin" --help | grep -q -- '--dir '; then memory=(--dir ""); fi
  for i in 0 1 2; do
    local peers=""
    for j in 0 1 2; do
      [ "$i" = "$j" ] && continue
      peers="$peers${peers:+,}127.0.0.1:$((base + 10 * (j + 1)))/1"
    done
    "$bin" --port $((base + i)) --native-port 0 --threads 1 --gossip-port $((base + 10 * (i + 1))) \
      --peers "$peers" --log-level error "${secret[@]}" "${memory[@]}" &
    pids="$pids $!"
  done
  for i in 0 1 2; do
    for _ in $(seq 100); do redis-cli -p $((base + i)) ping >/dev/null 2>&1 && break; sleep 0.05; done
  done
}

rps() { # port test -> requests per second (after a warm-up of a tenth as many requests)
  redis-benchmark -p "$1" -t "$2" -c 50 -r 100000 -d 8 -P 16 -n $((requests / 10)) -q >/dev/null 2>&1
  redis-benchmark -p "$1" -t "$2" -c 50 -r 100000 -d 8 -P 16 -n "$requests" --csv 2>/dev/null \
    | awk -F'","' 'NR==2 {gsub(/"/, "", $2); print $2}'
}

# shellcheck source=bench-lib.sh
source anna-kvs/scripts/bench-lib.sh

printf '%-4s %-44s %-44s %s\n' test "new req/s (each run)" "baseline req/s (each run)" "median new/baseline"
for test in ${TESTS:-set get}; do
  n_all="" b_all="" ratios=""
  for run in $(seq "$repeat"); do
    order="new base"
    [ $((run % 2)) = 0 ] && order="base new"
    n="" b=""
    for who in $order; do
      if [ "$who" = new ]; then
        start_cluster "$new" 17100; n=$(rps 17100 "$test"); cleanup
      else
        start_cluster "$baseline" 17200; b=$(rps 17200 "$test"); cleanup
      fi
    done
    n_all="$n_all ${n%.*}" b_all="$b_all ${b%.*}"
    ratios="$ratios $(echo "$n / $b" | bc -l)"
  done
  printf '%-4s %-44s %-44s %.2f\n' "$test" "$n_all" "$b_all" "$(echo "$ratios" | tr ' ' '\n' | grep . | median)"
done
