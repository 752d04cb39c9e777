#!/usr/bin/env bash
# A set grown to MEMBERS (default 2,000,000) members on three anna-server nodes (loopback,
# default persistence: appendfsync everysec) and in redis-server, side by side: load time,
# time until every node counts every member, peak RSS per node against redis-server's, peer
# bytes per SADD, and what SMEMBERS of the whole set costs other clients.
#   bash anna-kvs/scripts/bigset.sh
# Needs redis-server and python3. ANNA_BIN: the anna-server binary (default: build release).
set -euo pipefail
cd "$(dirname "$0")/../.."
if [[ -z "${ANNA_BIN:-}" ]]; then
  cargo build --release --quiet --bin anna-server
  ANNA_BIN=target/release/anna-server
fi
members=${MEMBERS:-2000000}
work=$(mktemp -d)
pids=()
cleanup() {
  kill "${pids[@]}" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

redis_ports=(7421 7422 7423)
gossip_ports=(7431 7433 7435)
for i in 0 1 2; do
  peers=()
  for j in 0 1 2; do
    [[ $i == "$j" ]] || peers+=("127.0.0.1:${gossip_ports[$j]}")
  done
  "$ANNA_BIN" --port "${redis_ports[$i]}" --gossip-port "${gossip_ports[$i]}" --native-port 0 \
    --threads 2 --no-pin --log-level warn --dir "$work/node$i" \
    --peers "$(IFS=,; echo "${peers[*]}")" 2>"$work/node$i.log" &
  pids+=($!)
done
anna_pids=$(IFS=,; echo "${pids[*]}")
redis-server --port 7424 --save "" --appendonly no --dir "$work" --logfile "$work/redis.log" &
redis_pid=$!
pids+=("$redis_pid")
for port in "${redis_ports[@]}" 7424; do
  for _ in $(seq 100); do redis-cli -p "$port" PING >/dev/null 2>&1 && break; sleep 0.1; done
done

python3 anna-kvs/scripts/bigset.py "$members" "$(IFS=,; echo "${redis_ports[*]}")" \
  "$anna_pids" 7424 "$redis_pid"
for i in 0 1 2; do
  if grep -q "refused\|ERROR" "$work/node$i.log"; then
    echo "node $i logged:"; grep "refused\|ERROR" "$work/node$i.log" | head -5
  fi
done
