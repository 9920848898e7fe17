#!/usr/bin/env bash
# Times pipelines and the quickstart with the release binary (docs/benchmarks.md § Pipelines):
#   - examples/churn/pipeline.yaml against a `shipyard server` on a fresh store: the first run,
#     three unchanged reruns (every step but the smoke test reused), one --force run;
#   - `shipyard quickstart --no-wait` in an empty folder, three times.
# No anchor runs here: there is no pipeline speed goal, only the quickstart's 60 s budget.
# Usage: bench/pipeline/run.sh   (prints one line per measurement, then the medians)
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$(pwd)
# SHIPYARD_BIN: a release binary already built (default: build one here).
bin=${SHIPYARD_BIN:-}
if [ -z "$bin" ]; then
  cargo build --release --locked --bin shipyard >/dev/null
  bin="$root/target/release/shipyard"
fi
work=$(mktemp -d)
trap 'pkill -f "$bin server --home $work/home" || true; rm -rf "$work"' EXIT

"$bin" server --home "$work/home" --port 0 >"$work/server.log" 2>&1 &
for _ in $(seq 50); do grep -q "listening on" "$work/server.log" && break; sleep 0.1; done
url=$(grep -o "http://127.0.0.1:[0-9]*" "$work/server.log" | head -1)
sed "s|http://127.0.0.1:5000|$url|" examples/churn/pipeline.yaml >"$work/pipeline.yaml"
cp examples/churn/*.csv examples/churn/suite.yaml "$work/"

seconds() { python3 -c "import json,sys; print(round(json.load(sys.stdin)['duration_s'], 3))"; }
first=$("$bin" pipeline run "$work/pipeline.yaml" --home "$work/home" --format json 2>/dev/null | seconds)
echo "pipeline first run: $first s"
cached=()
for _ in 1 2 3; do
  cached+=("$("$bin" pipeline run "$work/pipeline.yaml" --home "$work/home" --format json 2>/dev/null | seconds)")
done
echo "pipeline unchanged reruns: ${cached[*]} s"
forced=$("$bin" pipeline run "$work/pipeline.yaml" --home "$work/home" --force --format json 2>/dev/null | seconds)
echo "pipeline --force: $forced s"

told=()
for _ in 1 2 3; do
  dir=$(mktemp -d -p "$work")
  (cd "$dir" && "$bin" quickstart --no-wait --port 0 >/dev/null)
  told+=("$(python3 -c "import json; print(round(json.load(open('$dir/shipyard-quickstart/summary.json'))['seconds'], 2))")")
done
echo "quickstart --no-wait: ${told[*]} s"
python3 - "${cached[@]}" -- "${told[@]}" <<'PY'
import statistics, sys
args = sys.argv[1:]
cut = args.index("--")
print(f"median unchanged rerun {statistics.median(map(float, args[:cut])):.3f} s; "
      f"median quickstart {statistics.median(map(float, args[cut + 1:])):.2f} s")
PY
