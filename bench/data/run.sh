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

venv_for() { # NAME REQUIREMENTS -> path of a venv with exactly those requirements
  local venv="$root/bench/data/.venv-$1" req=$2 stamp
  stamp=$(sha256sum "$req" | cut -d' ' -f1)
  if [ ! -x "$venv/bin/python" ] || [ "$(cat "$venv/.requirements.sha256" 2>/dev/null)" != "$stamp" ]; then
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$req"
    echo "$stamp" > "$venv/.requirements.sha256"
  fi
  echo "$venv"
}
ev=$(venv_for evidently bench/data/requirements-evidently.txt)
gx=$(venv_for gx bench/data/requirements-gx.txt)

cargo build --release --locked --bin shipyard
mkdir -p bench/results
out="bench/results/data-$(date +%Y%m%d-%H%M%S).json"
python3 bench/data/bench.py "$root/target/release/shipyard" "$ev/bin/python" "$gx/bin/python" \
  "$root/bench/data/.work" "$out" "$@"
echo "results: $out"
