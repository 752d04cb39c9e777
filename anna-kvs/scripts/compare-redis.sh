#!/usr/bin/env bash
# Side-by-side: redis-benchmark against anna-server and against Debian's redis-server (no
# persistence), on this machine, in one run. Prints requests/s for each and the anna/redis ratio.
#
#   bash anna-kvs/scripts/compare-redis.sh [requests] [clients]
#
# Rows: SET and GET with 8-byte values, pipelined (-P 16) and unpipelined (-P 1).
set -euo pipefail
cd "$(dirname "$0")/../.."
requests=${1:-1000000}
clients=${2:-50}
anna_port=16380
redis_port=16381

cargo build --release --quiet --bin anna-server
./target/release/anna-server --port "$anna_port" --native-port 0 --log-level warn &
anna=$!
redis-server --port "$redis_port" --save '' --appendonly no --daemonize no --loglevel warning &
redis=$!
trap 'kill -INT $anna $redis 2>/dev/null || true; wait 2>/dev/null || true' EXIT
for port in "$anna_port" "$redis_port"; do
  for _ in $(seq 50); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.1; done
done

rps() { # port pipeline test -> requests per second
  redis-benchmark -p "$1" -t "$3" -c "$clients" -r 100000 -d 8 -P "$2" -n "$requests" --csv 2>/dev/null \
    | awk -F'","' 'NR==2 {gsub(/"/, "", $2); print $2}'
}

printf '%-6s %-4s %14s %14s %8s\n' test P anna_rps redis_rps ratio
for pipeline in 16 1; do
  n=$requests
  [ "$pipeline" = 1 ] && requests=$((n / 5))
  for test in set get; do
    a=$(rps "$anna_port" "$pipeline" "$test")
    r=$(rps "$redis_port" "$pipeline" "$test")
    printf '%-6s %-4s %14s %14s %8.2f\n' "$test" "$pipeline" "$a" "$r" "$(echo "$a / $r" | bc -l)"
  done
  requests=$n
done
