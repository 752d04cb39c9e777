#!/usr/bin/env bash
# What a snapshot costs the clients while it is written: unpipelined GET latency on a store of
# about 860k keys, first with nothing else going on, then while BGSAVE runs. The same for
# redis-server (which forks for BGSAVE) side by side.
#   bash anna-kvs/scripts/snapshot-stall.sh
# Needs redis-server and redis-benchmark (apt-get install redis-server redis-tools).
# ANNA_BIN: the anna-server binary to measure (default: build target/release/anna-server).
set -euo pipefail
cd "$(dirname "$0")/../.."
if [[ -z "${ANNA_BIN:-}" ]]; then
  cargo build --release --quiet --bin anna-server
  ANNA_BIN=target/release/anna-server
fi
work=$(mktemp -d)
anna_port=7411
redis_port=7412
cleanup() {
  kill "${pids[@]}" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$work"
}
pids=()
trap cleanup EXIT

"$ANNA_BIN" --port "$anna_port" --native-port 0 --threads 2 --log-level warn \
  --dir "$work/anna" &
pids+=($!)
redis-server --port "$redis_port" --save "" --appendonly no --dir "$work" \
  --logfile "$work/redis.log" &
pids+=($!)
for port in $anna_port $redis_port; do
  for _ in $(seq 100); do redis-cli -p "$port" PING >/dev/null 2>&1 && break; sleep 0.1; done
done

field() { redis-cli -p "$1" INFO persistence | tr -d '\r' | awk -F: -v f="$2" '$1 == f {print $2}'; }

# p50, p99 and max latency (ms) and requests/s of GETS (default 100k) unpipelined GETs from 20
# clients.
gets() {
  redis-benchmark -p "$1" -t get -r 1000000 -n "${GETS:-100000}" -c 20 -P 1 --csv |
    awk -F, '{gsub(/"/, "")} NR == 2 {print "rps " $2 ", p50 " $5 " ms, p99 " $7 " ms, max " $8 " ms"}'
}

for port in $anna_port $redis_port; do
  name=$([[ $port == "$anna_port" ]] && echo anna || echo redis)
  redis-benchmark -p "$port" -t set -r 1000000 -n 2000000 -P 16 -q >/dev/null
  echo "$name: $(redis-cli -p "$port" DBSIZE) keys"
  echo "$name idle:        $(gets "$port")"
  start=$(date +%s%N)
  redis-cli -p "$port" BGSAVE >/dev/null
  during=$(gets "$port")
  still=$(field "$port" rdb_bgsave_in_progress)
  echo "$name during save: $during (the GETs took $(( ($(date +%s%N) - start) / 1000000 )) ms; save still running at their end: $still)"
  while [[ "$(field "$port" rdb_bgsave_in_progress)" != 0 ]]; do sleep 0.05; done
  echo "$name: BGSAVE finished $(( ($(date +%s%N) - start) / 1000000 )) ms after it was asked for"
done
