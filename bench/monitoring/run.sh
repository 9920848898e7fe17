#!/usr/bin/env bash
# Monitoring benchmark (see bench.py for the protocol):
#   (a) serving throughput with the prediction log on (every request) against off, same load;
#   (b) window drift over 1,000,000 logged predictions x 20 features: Shipyard's time and memory,
#       next to Evidently's DataDriftPreset on the same rows;
#   (c) false alarms on calm windows of 100 to 5,000 rows and detection of a 0.3-SD shift and a
#       10-point accuracy drop: the calibrated monitors next to Evidently's defaults.
#
#   bench/monitoring/run.sh [--quick] [--duration S] [--rounds N] [--repeats N] [--rows N]
#                           [--skip-a] [--skip-b] [--skip-c] [--windows N] [--pin]
#
# Builds the release binary; installs wrk with apt-get when missing (as root); makes or reuses the
# Evidently venv of bench/data (scripts/venv.sh, pinned requirements-evidently.txt). Results go
# to bench/results/monitoring-<date>.json and a markdown table on stdout. A full run takes about
# 8 minutes on 2 cores (ten 10 s loads, a million rows logged, three window reads, Evidently);
# --quick about 2.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$(pwd)

if ! command -v wrk > /dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get > /dev/null; then
    apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk > /dev/null
  else
    echo "error: wrk not found; install it: sudo apt-get install -y wrk" >&2
    exit 1
  fi
fi
ev=$root/bench/data/.venv-evidently
scripts/venv.sh "$ev" bench/data/requirements-evidently.txt
cargo build --release --locked --bin shipyard
mkdir -p bench/results
out="bench/results/monitoring-$(date +%Y%m%d-%H%M%S).json"
"$ev/bin/python" bench/monitoring/bench.py "$root/target/release/shipyard" "$out" --evidently-python "$ev/bin/python" "$@"
