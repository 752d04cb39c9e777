#!/usr/bin/env bash
# Runs an anna-bench suite from the repository root and writes its report:
#   bash anna-bench/run.sh quick    # ~3 minutes on 2 cores once built
#   bash anna-bench/run.sh full     # every thread count, longer runs, 3 repeats
#   bash anna-bench/run.sh elastic  # throughput while a cluster grows 1 → 3 and shrinks to 2 (~45 s)
# Extra arguments go to the runner (e.g. --threads 1,2,4,8,16 --machine "16-core device").
# Needs redis-server and redis-benchmark (Debian: apt-get install redis-server redis-tools)
# for the over-the-wire part; without them that part is skipped and the report says so.
set -euo pipefail
cd "$(dirname "$0")/.."
suite="${1:-quick}"
shift || true
case "$suite" in
  elastic)
    # Real anna-server processes: build them beside the runner.
    cargo build -q --release -p anna-kvs --bin anna-server --bin anna-cli
    exec cargo run -q --release -p anna-bench -- elastic "$@" ;;
  quick) criterion=(-- --quick --noplot) ;;
  full) criterion=(-- --noplot) ;;
  *) echo "usage: $0 quick|full|elastic [runner flags]" >&2; exit 2 ;;
esac
extra=()
if ! command -v redis-server >/dev/null || ! command -v redis-benchmark >/dev/null; then
  echo "redis-server/redis-benchmark not found: skipping the over-the-wire experiments" >&2
  extra+=(--no-redis)
fi
cargo bench -q -p anna-bench --bench lattice_merge "${criterion[@]}" >/dev/null
cargo run -q --release -p anna-bench -- "$suite" "${extra[@]}" "$@"
