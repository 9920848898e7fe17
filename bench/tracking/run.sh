#!/usr/bin/env bash
# Tracking benchmark: `mlflow server` (SQLite, --workers 1) and `shipyard server` (SQLite)
# side by side, driven by the same mlflow Python client workload. See bench.py for the phases.
#
#   bench/tracking/run.sh [--quick]
#
# Builds Shipyard in release mode, installs the pinned MLflow server and client into
# bench/.venv (once), runs both servers on free loopback ports, prints the table and writes
# bench/results/tracking-<date>.json.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$(pwd)

venv=${SHIPYARD_BENCH_VENV:-$root/bench/.venv}
scripts/venv.sh "$venv" bench/tracking/requirements.txt

cargo build --release --locked --bin shipyard
mkdir -p bench/results
out="bench/results/tracking-$(date +%Y%m%d-%H%M%S).json"
# uvicorn and gunicorn must be on PATH for `mlflow server`.
PATH="$venv/bin:$PATH" "$venv/bin/python" bench/tracking/bench.py "$root/target/release/shipyard" "$out" "$@"
echo "results: $out"
