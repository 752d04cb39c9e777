#!/usr/bin/env bash
# Sets N keys with random deadlines 1-5 s away through redis-cli --pipe, waits them out, and
# reports how late after its deadline each key was deleted (INFO's anna_expire_lateness_*),
# DBSIZE, and used memory before, with the keys, and after.
# Usage: expiry-lateness.sh [anna-server binary] [keys]
set -euo pipefail
bin=${1:-target/release/anna-server}
keys=${2:-100000}
port=$(( 20000 + RANDOM % 20000 ))
"$bin" --port "$port" --native-port 0 --dir "" --log-level warn &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT
for _ in $(seq 50); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.1; done
field() { redis-cli -p "$port" info all | tr -d '\r' | awk -F: -v f="$1" '$1 == f { print $2 }'; }
baseline=$(field used_memory)
python3 - "$keys" <<'PY' | redis-cli -p "$port" --pipe >/dev/null
import random, sys
out = sys.stdout
for n in range(int(sys.argv[1])):
    key, ttl = f"key:{n}", str(random.randint(1000, 5000))
    out.write(f"*5\r\n$3\r\nSET\r\n${len(key)}\r\n{key}\r\n$1\r\nv\r\n$2\r\nPX\r\n${len(ttl)}\r\n{ttl}\r\n")
PY
loaded=$(field used_memory)
echo "keys set: $(redis-cli -p "$port" dbsize), with a deadline: $(redis-cli -p "$port" info keyspace | tr -d '\r' | grep -o 'expires=[0-9]*')"
sleep 6
redis-cli -p "$port" dbsize >/dev/null
sleep 1
echo "after the deadlines: dbsize $(redis-cli -p "$port" dbsize), expired_keys $(field expired_keys)"
for bucket in le_1ms le_10ms le_100ms le_1s over_1s; do
  echo "  deleted $bucket after its deadline: $(field anna_expire_lateness_$bucket)"
done
after=$(field used_memory)
# Tombstones are freed once acknowledged, and freed keys are remembered for a while (late
# echoes); then the memory is back.
sleep 20
echo "used_memory: baseline $baseline, with the keys $loaded, just after $after, 20 s later $(field used_memory)"
