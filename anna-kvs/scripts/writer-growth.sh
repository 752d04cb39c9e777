#!/usr/bin/env bash
# How a key's state grows with the lives of the node that writes it: every start takes new
# writer ids (see the book's Durability chapter), so a counter counted in every life keeps one
# slot per life, and a set one clock entry per life that added to it, until the key is reset
# or deleted. Starts anna-server on a scratch directory LIVES times (stopping it with SIGTERM in
# between); each life does INCR c and SADD s member (the same member every time), then SAVE; the snapshot then holds just
# those two keys, and its size is printed. Then DEL c s and one more INCR/SADD/SAVE.
#
#   bash anna-kvs/scripts/writer-growth.sh [anna-server binary] [lives]
set -euo pipefail
cd "$(dirname "$0")/../.."
bin=${1:-target/release/anna-server}
lives=${2:-10}
port=16390
dir=$(mktemp -d)
trap 'kill $pid 2>/dev/null || true; rm -rf "$dir"' EXIT
start() {
  "$bin" --port $port --native-port 0 --threads 1 --log-level warn --dir "$dir" &
  pid=$!
  for _ in $(seq 100); do redis-cli -p $port ping >/dev/null 2>&1 && return; sleep 0.05; done
  echo "anna-server did not start" >&2; exit 1
}
stop() { kill -TERM "$pid"; wait "$pid" || true; }
snapshot_bytes() { redis-cli -p $port save >/dev/null; stat -c %s "$dir"/actor-0.*.snap | tail -1; }
echo "life  c     SCARD s  snapshot bytes (c and s)"
for life in $(seq "$lives"); do
  start
  c=$(redis-cli -p $port incr c)
  redis-cli -p $port sadd s member >/dev/null
  printf '%-5s %-5s %-8s %s\n' "$life" "$c" "$(redis-cli -p $port scard s)" "$(snapshot_bytes)"
  stop
done
start
redis-cli -p $port del c s >/dev/null
sleep "${FREE_WAIT:-12}" # a restarted actor frees deletes only after 100 epochs (10 s)
redis-cli -p $port incr c >/dev/null
redis-cli -p $port sadd s again >/dev/null
printf 'after DEL and one more INCR/SADD: snapshot bytes %s\n' "$(snapshot_bytes)"
stop
