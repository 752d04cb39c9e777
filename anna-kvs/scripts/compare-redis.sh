#!/usr/bin/env bash
# Side-by-side: redis-benchmark against anna-server and against Debian's redis-server (no
# persistence), on this machine, in one run. Each row runs REPEAT times, rotating which server
# goes first; it prints every run's requests/s and the median anna/redis ratio.
#
#   bash anna-kvs/scripts/compare-redis.sh [requests] [clients]
#   REPEAT=5 bash anna-kvs/scripts/compare-redis.sh                  # more runs per row
#   ANNA_ARGS="--threads 1" bash anna-kvs/scripts/compare-redis.sh   # extra anna-server flags
#   TLS=1 bash anna-kvs/scripts/compare-redis.sh   # both servers over TLS (certificates made
#       # now with openssl in a temporary directory; no client certificates)
#   AOF=everysec bash anna-kvs/scripts/compare-redis.sh   # both with an append-only file
#       # synced with that policy (everysec or always) in a temporary directory; without AOF
#       # both run from memory only
#   BASELINE=/tmp/anna-server-old bash anna-kvs/scripts/compare-redis.sh
#       # also runs another anna-server build (an older commit's, say) in the same rounds and
#       # prints its median ratio to redis and the median new/baseline ratio
#
# Rows: SET and GET with 8-byte values, pipelined (-P 16) and unpipelined (-P 1, a fifth of the
# requests): redis-benchmark -t set,get -c 50 -r 100000 -d 8 -P {16,1} -n N.
set -euo pipefail
cd "$(dirname "$0")/../.."
requests=${1:-1000000}
clients=${2:-50}
repeat=${REPEAT:-3}
anna_port=16380
redis_port=16381
base_port=16382
baseline=${BASELINE:-}

cargo build --release --quiet --bin anna-server
anna_tls=() redis_tls=() bench_tls=()
anna_bench_port=$anna_port redis_bench_port=$redis_port
if [ -n "${TLS:-}" ]; then
  pki=$(mktemp -d)
  openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=bench-ca -keyout "$pki/ca.key" \
    -out "$pki/ca.pem" 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -subj /CN=localhost -keyout "$pki/server.key" \
    -out "$pki/server.csr" 2>/dev/null
  printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' >"$pki/san.ext"
  openssl x509 -req -in "$pki/server.csr" -CA "$pki/ca.pem" -CAkey "$pki/ca.key" -CAcreateserial \
    -days 1 -extfile "$pki/san.ext" -out "$pki/server.pem" 2>/dev/null
  tls_files=(--tls-cert-file "$pki/server.pem" --tls-key-file "$pki/server.key" --tls-auth-clients no)
  anna_tls=(--tls-port $((anna_port + 10)) "${tls_files[@]}")
  redis_tls=(--tls-port $((redis_port + 10)) "${tls_files[@]}")
  bench_tls=(--tls --cacert "$pki/ca.pem")
  anna_bench_port=$((anna_port + 10)) redis_bench_port=$((redis_port + 10))
fi
data=$(mktemp -d)
if [ -n "${AOF:-}" ]; then
  mkdir -p "$data/anna" "$data/redis" "$data/base"
  anna_aof=(--dir "$data/anna" --appendonly yes --appendfsync "$AOF")
  base_aof=(--dir "$data/base" --appendonly yes --appendfsync "$AOF")
  redis_aof=(--dir "$data/redis" --appendonly yes --appendfsync "$AOF")
else
  anna_aof=(--dir "") base_aof=() redis_aof=(--appendonly no) # base: an older build may not know --dir
fi
# shellcheck disable=SC2086 # ANNA_ARGS is a list of flags
./target/release/anna-server --port "$anna_port" --native-port 0 --log-level warn "${anna_aof[@]}" "${anna_tls[@]}" ${ANNA_ARGS:-} &
pids=$!
redis-server --port "$redis_port" --save '' "${redis_aof[@]}" --daemonize no --loglevel warning "${redis_tls[@]}" &
pids="$pids $!"
ports="$anna_port $redis_port"
if [ -n "$baseline" ]; then
  # shellcheck disable=SC2086
  "$baseline" --port "$base_port" --native-port 0 --log-level warn "${base_aof[@]}" ${ANNA_ARGS:-} &
  pids="$pids $!"
  ports="$ports $base_port"
fi
# shellcheck disable=SC2086
trap 'kill -INT $pids 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$data"' EXIT
for port in $ports; do
  for _ in $(seq 50); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.1; done
done

rps() { # port pipeline test requests -> requests per second
  redis-benchmark "${bench_tls[@]}" -p "$1" -t "$3" -c "$clients" -r 100000 -d 8 -P "$2" -n "$4" --csv 2>/dev/null \
    | awk -F'","' 'NR==2 {gsub(/"/, "", $2); print $2}'
}

# shellcheck source=bench-lib.sh
source anna-kvs/scripts/bench-lib.sh

if [ -n "$baseline" ]; then
  printf '%-4s %-3s %-28s %-28s %-28s %-11s %-11s %s\n' test P "anna req/s (each run)" \
    "redis req/s (each run)" "baseline req/s (each run)" "anna/redis" "base/redis" "anna/base"
else
  printf '%-4s %-3s %-34s %-34s %s\n' test P "anna req/s (each run)" "redis req/s (each run)" \
    "median anna/redis"
fi
for pipeline in 16 1; do
  n=$requests
  [ "$pipeline" = 1 ] && n=$((requests / 5))
  for test in set get; do
    a_all="" r_all="" b_all="" ratios="" base_ratios="" new_vs_base=""
    for run in $(seq "$repeat"); do
      # Rotate who goes first, so no server always runs on a freshly quiet machine.
      order="anna redis base"
      case $((run % 3)) in
        2) order="redis base anna" ;;
        0) order="base anna redis" ;;
      esac
      a="" r="" b=""
      for who in $order; do
        case $who in
          anna) a=$(rps "$anna_bench_port" "$pipeline" "$test" "$n") ;;
          redis) r=$(rps "$redis_bench_port" "$pipeline" "$test" "$n") ;;
          base) [ -n "$baseline" ] && b=$(rps "$base_port" "$pipeline" "$test" "$n") ;;
        esac
      done
      a_all="$a_all ${a%.*}" r_all="$r_all ${r%.*}"
      ratios="$ratios $(echo "$a / $r" | bc -l)"
      if [ -n "$baseline" ]; then
        b_all="$b_all ${b%.*}"
        base_ratios="$base_ratios $(echo "$b / $r" | bc -l)"
        new_vs_base="$new_vs_base $(echo "$a / $b" | bc -l)"
      fi
    done
    ratio=$(echo "$ratios" | tr ' ' '\n' | grep . | median)
    if [ -n "$baseline" ]; then
      base_ratio=$(echo "$base_ratios" | tr ' ' '\n' | grep . | median)
      vs=$(echo "$new_vs_base" | tr ' ' '\n' | grep . | median)
      printf '%-4s %-3s %-28s %-28s %-28s %-11.2f %-11.2f %.2f\n' "$test" "$pipeline" "$a_all" \
        "$r_all" "$b_all" "$ratio" "$base_ratio" "$vs"
    else
      printf '%-4s %-3s %-34s %-34s %.2f\n' "$test" "$pipeline" "$a_all" "$r_all" "$ratio"
    fi
  done
done
