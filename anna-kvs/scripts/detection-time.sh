#!/usr/bin/env bash
# How long three anna-server processes on loopback take to declare a node killed with
# `kill -9` down (both survivors' `INFO cluster` read anna_members_down:1), RUNS times.
# Usage: detection-time.sh ANNA_SERVER [RUNS] [extra anna-server flags...]
set -euo pipefail
server=${1:?path to anna-server}
runs=${2:-5}
shift 2 || true
base=$((20000 + RANDOM % 20000))
field() { redis-cli -p "$1" INFO cluster 2>/dev/null | tr -d '\r' | sed -n "s/^$2://p"; }
for run in $(seq 1 "$runs"); do
  pids=()
  for i in 0 1 2; do
    peers=$(for j in 0 1 2; do [ "$j" != "$i" ] && printf "127.0.0.1:%s," $((base + 10 * j)) || true; done)
    "$server" --dir "" --threads 1 --no-pin --log-level error --port $((base + 10 * i + 5)) \
      --gossip-port $((base + 10 * i)) --native-port 0 --peers "${peers%,}" "$@" &
    pids+=($!)
  done
  for i in 0 1 2; do
    until [ "$(field $((base + 10 * i + 5)) anna_members_alive)" = 3 ]; do sleep 0.05; done
  done
  sleep 2
  start=$(date +%s%N)
  kill -9 "${pids[2]}"
  until [ "$(field $((base + 5)) anna_members_down)" = 1 ] && [ "$(field $((base + 15)) anna_members_down)" = 1 ]; do
    sleep 0.02
  done
  end=$(date +%s%N)
  echo "run $run: declared down after $(( (end - start) / 1000000 )) ms"
  kill "${pids[0]}" "${pids[1]}" 2>/dev/null || true
  wait 2>/dev/null || true
  base=$((base + 100))
done
