#!/usr/bin/env bash
# The thread sweep to 16 on the 16-core device machine, as one prepared script.
#
# Build here, carry the release binary, run there:
#   cargo build --release -p anna-bench
#   (device run, carrying target/release/anna-bench):
#     bash anna-bench/scripts/device-16core.sh "$OUT"
# then copy $OUT/16core-device/ to anna-bench/results/16core-device/ and commit it.
#
# The in-process sweep needs nothing but the binary. The over-the-wire part runs only if
# redis-server and redis-benchmark exist there (the device cannot reach package mirrors);
# otherwise the report says it was skipped. A full sweep is 5 thread counts x 2 Zipf x 9
# engine/replication runs of 2 s plus setup: about 4 minutes on 16 cores.
set -euo pipefail
cd "$(dirname "$0")/../.."
out="${1:-${OUT:-/tmp}}/16core-device"
bin=./target/release/anna-bench
test -x "$bin" || { echo "carry target/release/anna-bench (cargo build --release -p anna-bench)" >&2; exit 2; }
nproc
grep -m1 "model name" /proc/cpuinfo || true
extra=()
command -v redis-server >/dev/null && command -v redis-benchmark >/dev/null || extra+=(--no-redis)
"$bin" micro --threads 1,2,4,8,16 --seconds 2 --machine "16-core device" --out "$out" "${extra[@]}"
if [ ${#extra[@]} -eq 0 ]; then
  "$bin" full --no-micro --machine "16-core device" --out "$out-wire"
fi
ls -la "$out"
