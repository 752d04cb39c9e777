#!/usr/bin/env bash
# How long three anna-server processes with two copies of each key (--replication 2:1) take,
# after `kill -9` of one, to declare it down, take it out of the ring (after the grace period)
# and hold every key at two copies again: both survivors' DBSIZE back at KEYS.
# Usage: rereplication-time.sh ANNA_SERVER [KEYS] [GRACE_SECS] [extra anna-server flags...]
set -euo pipefail
server=${1:?path to anna-server}
keys=${2:-100000}
grace=${3:-5}
shift 3 || true
base=$((20000 + RANDOM % 20000))
field() { redis-cli -p "$1" INFO "$2" 2>/dev/null | tr -d '\r' | sed -n "s/^$3://p"; }
dbsize() { redis-cli -p "$1" DBSIZE 2>/dev/null || echo 0; }
now_ms() { echo $(( $(date +%s%N) / 1000000 )); }
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; }
trap cleanup EXIT
for i in 0 1 2; do
  peers=$(for j in 0 1 2; do [ "$j" != "$i" ] && printf "127.0.0.1:%s," $((base + 10 * j)) || true; done)
  "$server" --dir "" --threads 1 --no-pin --log-level error --port $((base + 10 * i + 5)) \
    --gossip-port $((base + 10 * i)) --native-port 0 --peers "${peers%,}" \
    --replication 2:1 --remove-down-after-secs "$grace" "$@" &
  pids+=($!)
done
for i in 0 1 2; do
  until [ "$(field $((base + 10 * i + 5)) cluster anna_members_alive)" = 3 ]; do sleep 0.05; done
done
seq 1 "$keys" | awk '{printf "SET key:%d v%d\n", $1, $1}' | redis-cli -p $((base + 5)) --pipe >/dev/null
until [ $(( $(dbsize $((base + 5))) + $(dbsize $((base + 15))) + $(dbsize $((base + 25))) )) -ge $((2 * keys)) ]; do
  sleep 0.2
done
echo "loaded: $(dbsize $((base + 5))) + $(dbsize $((base + 15))) + $(dbsize $((base + 25))) keys (two copies of $keys)"
start=$(now_ms)
kill -9 "${pids[2]}"
detected=""; removed=""
while :; do
  t=$(( $(now_ms) - start ))
  if [ -z "$detected" ] && [ "$(field $((base + 5)) cluster anna_members_down)" = 1 ] \
    && [ "$(field $((base + 15)) cluster anna_members_down)" = 1 ]; then detected=$t; fi
  if [ -z "$removed" ] && [ "$(field $((base + 5)) replication anna_nodes)" = 2 ] \
    && [ "$(field $((base + 15)) replication anna_nodes)" = 2 ]; then removed=$t; fi
  if [ -n "$removed" ] && [ "$(dbsize $((base + 5)))" -ge "$keys" ] && [ "$(dbsize $((base + 15)))" -ge "$keys" ]; then
    echo "kill -9 at 0 ms: declared down by both survivors at ${detected} ms, out of the ring at ${removed} ms (grace ${grace} s), every key at two copies again at ${t} ms ($(( t - removed )) ms after the ring change)"
    break
  fi
  if [ "$t" -gt 300000 ]; then echo "not re-replicated within 300 s: $(dbsize $((base + 5))) and $(dbsize $((base + 15))) keys"; exit 1; fi
  sleep 0.05
done
