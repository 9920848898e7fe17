#!/usr/bin/env bash
# Web UI benchmark: Shipyard's pages and MLflow's UI on the same data, server side and in
# headless Chromium. See bench.py for what is measured.
#
#   bench/ui/run.sh [--quick]
#
# Builds Shipyard in release mode, installs the pinned MLflow server (with its UI) and Selenium
# into bench/ui/.venv (once), uses Debian's chromium and chromium-driver (installed if
# missing), prints the table and writes bench/results/ui-<date>.json.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$(pwd)

if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium chromium-driver
fi
venv=${SHIPYARD_BENCH_VENV:-$root/bench/ui/.venv}
scripts/venv.sh "$venv" bench/ui/requirements.txt

cargo build --release --locked --bin shipyard
mkdir -p bench/results
out="bench/results/ui-$(date +%Y%m%d-%H%M%S).json"
# mlflow's server (and its uvicorn) must be on PATH.
PATH="$venv/bin:$PATH" "$venv/bin/python" bench/ui/bench.py "$root/target/release/shipyard" "$out" "$@"
echo "results: $out"
