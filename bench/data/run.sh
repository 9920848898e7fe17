#!/usr/bin/env bash
# Data benchmark: `shipyard data drift|validate|profile` next to Evidently and Great
# Expectations on the same generated files. See bench.py for the workloads.
#
#   bench/data/run.sh [--quick]
#
# Builds Shipyard in release mode, installs the pinned Evidently and Great Expectations into
# their own venvs (they need different pandas majors), generates the data once under
# bench/data/.work, prints the table and writes bench/results/data-<date>.json.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$(pwd)

ev=$root/bench/data/.venv-evidently
gx=$root/bench/data/.venv-gx
scripts/venv.sh "$ev" bench/data/requirements-evidently.txt
scripts/venv.sh "$gx" bench/data/requirements-gx.txt

cargo build --release --locked --bin shipyard
mkdir -p bench/results
out="bench/results/data-$(date +%Y%m%d-%H%M%S).json"
python3 bench/data/bench.py "$root/target/release/shipyard" "$ev/bin/python" "$gx/bin/python" \
  "$root/bench/data/.work" "$out" "$@"
echo "results: $out"
