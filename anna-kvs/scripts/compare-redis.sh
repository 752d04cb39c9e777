#!/usr/bin/env bash
# Side-by-side: redis-benchmark against anna-server and against Debian's redis-server (no
# persistence), on this machine, in one run. Each row runs REPEAT times, alternating which
# server goes first; it prints every run's requests/s and the median anna/redis ratio.
#
#   bash anna-kvs/scripts/compare-redis.sh [requests] [clients]
#   REPEAT=5 bash anna-kvs/scripts/compare-redis.sh                  # more runs per row
#   ANNA_ARGS="--threads 1" bash anna-kvs/scripts/compare-redis.sh   # extra anna-server flags
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

cargo build --release --quiet --bin anna-server
# shellcheck disable=SC2086 # ANNA_ARGS is a list of flags
./target/release/anna-server --port "$anna_port" --native-port 0 --log-level warn ${ANNA_ARGS:-} &
anna=$!
redis-server --port "$redis_port" --save '' --appendonly no --daemonize no --loglevel warning &
redis=$!
trap 'kill -INT $anna $redis 2>/dev/null || true; wait 2>/dev/null || true' EXIT
for port in "$anna_port" "$redis_port"; do
  for _ in $(seq 50); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.1; done
done

rps() { # port pipeline test requests -> requests per second
  redis-benchmark -p "$1" -t "$3" -c "$clients" -r 100000 -d 8 -P "$2" -n "$4" --csv 2>/dev/null \
    | awk -F'","' 'NR==2 {gsub(/"/, "", $2); print $2}'
}

median() { sort -g | awk '{v[NR] = $1} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }

printf '%-4s %-3s %-34s %-34s %s\n' test P "anna req/s (each run)" "redis req/s (each run)" "median anna/redis"
for pipeline in 16 1; do
  n=$requests
  [ "$pipeline" = 1 ] && n=$((requests / 5))
  for test in set get; do
    a_all="" r_all="" ratios=""
    for run in $(seq "$repeat"); do
      if [ $((run % 2)) = 1 ]; then
        a=$(rps "$anna_port" "$pipeline" "$test" "$n"); r=$(rps "$redis_port" "$pipeline" "$test" "$n")
      else
        r=$(rps "$redis_port" "$pipeline" "$test" "$n"); a=$(rps "$anna_port" "$pipeline" "$test" "$n")
      fi
      a_all="$a_all ${a%.*}" r_all="$r_all ${r%.*}"
      ratios="$ratios $(echo "$a / $r" | bc -l)"
    done
    ratio=$(echo "$ratios" | tr ' ' '\n' | grep . | median)
    printf '%-4s %-3s %-34s %-34s %.2f\n' "$test" "$pipeline" "$a_all" "$r_all" "$ratio"
  done
done
