#!/usr/bin/env bash
# The fault bed's suites (root needed: network namespaces and iptables).
#   tests/faults/run.sh short        # what CI runs (also `cargo test -p anna-faults`)
#   tests/faults/run.sh long [N]     # every scenario with seeds 1..N (default 6: 54 runs),
#                                    # results table to tests/faults/results/long.md
# Extra arguments after the suite go to anna-faults (e.g. --seconds 20 --keep).
set -euo pipefail
cd "$(dirname "$0")/../.."
suite=${1:-short}
shift || true
for tool in ip iptables faketime; do
  command -v "$tool" >/dev/null || { echo "needs $tool: apt-get install -y iproute2 iptables faketime"; exit 2; }
done
# Release builds, without whole-program LTO (the bed measures behaviour, not peak speed).
export CARGO_PROFILE_RELEASE_LTO=false CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16
cargo build --release --quiet -p anna-kvs --bin anna-server
cargo build --release --quiet -p anna-faults --bin anna-faults
case "$suite" in
  short) exec target/release/anna-faults short "$@" ;;
  long)
    seeds=${1:-6}
    shift || true
    mkdir -p tests/faults/results
    target/release/anna-faults long --seeds "$seeds" --out target/faults-long \
      --table tests/faults/results/long.md "$@" | tee target/faults-long.log
    ;;
  *) echo "usage: $0 short|long [seeds] [anna-faults options]"; exit 2 ;;
esac
