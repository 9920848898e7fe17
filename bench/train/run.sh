#!/usr/bin/env bash
# Training benchmark: `shipyard train` and `shipyard predict` next to scikit-learn and LightGBM,
# on exactly the same training and test rows. See bench.py for the data sets and measurements.
#
#   bench/train/run.sh [--quick] [--repeat N]
#
# Builds Shipyard in release mode, installs the pinned scikit-learn, LightGBM and pyarrow into
# bench/train/.venv (once), writes the tables under bench/train/.work, prints the table and
# writes bench/results/train-<date>.json. Run it on an otherwise idle machine: the OpenMP
# thread pools of scikit-learn and LightGBM slow down by 10x and more when another process
# holds the cores.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$(pwd)

venv=$root/bench/train/.venv
scripts/venv.sh "$venv" bench/train/requirements.txt

cargo build --release --locked --bin shipyard
mkdir -p bench/results
out="bench/results/train-$(date +%Y%m%d-%H%M%S).json"
"$venv/bin/python" bench/train/bench.py "$root/target/release/shipyard" "$out" "$@"
echo "results: $out"
