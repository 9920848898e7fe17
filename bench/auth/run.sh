#!/usr/bin/env bash
# Authentication benchmark: `mlflow server --app-name basic-auth` and `shipyard server --auth`
# side by side: what a logged-in request costs on top of an anonymous one, with a password and
# with a token, and what a wrong password costs. See bench.py.
#
#   bench/auth/run.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$(pwd)
venv=${SHIPYARD_BENCH_AUTH_VENV:-$root/bench/auth/.venv}
scripts/venv.sh "$venv" bench/auth/requirements.txt
cargo build --release --locked --bin shipyard
mkdir -p bench/results
out="bench/results/auth-$(date +%Y%m%d-%H%M%S).json"
PATH="$venv/bin:$PATH" "$venv/bin/python" bench/auth/bench.py "$root/target/release/shipyard" "$out" "$@"
echo "results: $out"
