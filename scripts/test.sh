#!/usr/bin/env bash
# The whole test suite, as CI runs it (`.ci/run` calls exactly this):
#   1. formatting and lints (cargo fmt --check, cargo clippy -D warnings);
#   2. Rust unit and store-contract tests, on SQLite and on a real PostgreSQL, and the ONNX
#      fixtures on the native engine and on onnxruntime (its library from the pinned wheel);
#   3. the README's main command, `shipyard quickstart --no-wait`, in an empty folder, its
#      summary.json checked;
#   4. the interop suite: the real `mlflow` client (pinned, in a venv made here) against a
#      `shipyard server` on SQLite, then on PostgreSQL, then with artifacts in S3 (a local
#      S3 endpoint, moto's server, started by the suite);
#   5. the web UI's browser tests: Debian's chromium and chromium-driver (installed if missing;
#      a missing browser fails the run) driven by Selenium against a seeded `shipyard server`;
#   6. the seed article's pipeline, its code unchanged, with the mlflow client of its era (2.19,
#      in a second venv) against `shipyard server`, which serves the pickled model with Python
#      workers; and the tracking part of the interop suite with that client;
#   7. coverage-guided fuzzing of every fuzz target (scripts/fuzz.sh: cargo-fuzz, installed from
#      crates.io if missing), 150 s in all; the seeds and saved crash inputs also run in step 2.
# It installs what it needs: Debian's postgresql, chromium and chromium-driver if missing, the Python packages into ./.venv.
# Everything runs on loopback; the PostgreSQL cluster is temporary and removed at exit.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

step() { printf '\n==> %s\n' "$*"; }
started=$(date +%s)

step "formatting and lints"
cargo fmt --all -- --check
cargo clippy --release --workspace --all-targets --locked -- -D warnings

step "throwaway PostgreSQL cluster"
eval "$(scripts/pg-cluster.sh start)"
trap 'scripts/pg-cluster.sh stop "$SHIPYARD_PG_DIR"' EXIT
echo "PostgreSQL at $SHIPYARD_TEST_PG_URI"

step "Python venv for the interop suite (and onnxruntime's library for the second engine)"
venv=${SHIPYARD_VENV:-$root/.venv}
scripts/venv.sh "$venv" tests/interop/requirements.txt
# The pinned onnxruntime wheel ships the C library the optional engine loads at run time.
ORT_DYLIB_PATH=$("$venv/bin/python" -c 'import glob, os, onnxruntime; print(sorted(glob.glob(os.path.join(os.path.dirname(onnxruntime.__file__), "capi", "libonnxruntime.so*")))[0])')
export ORT_DYLIB_PATH
# The ONNX fixture tests fail, rather than skip, the onnxruntime engine without its library.
export SHIPYARD_REQUIRE_ORT=1
# The Python worker pool's tests run real workers with this interpreter, and fail without it.
export SHIPYARD_TEST_PYTHON="$venv/bin/python" SHIPYARD_REQUIRE_PYTHON=1
echo "onnxruntime library: $ORT_DYLIB_PATH"

step "Rust tests (SQLite and PostgreSQL; ONNX fixtures on both engines)"
cargo test --release --workspace --locked

step "building the shipyard binary"
cargo build --release --locked --bin shipyard
export SHIPYARD_BIN="$root/target/release/shipyard"

# The fuzz targets' instrumented build takes about 8 minutes of both cores; the suites below
# mostly wait on their servers and browsers, so it runs beside them at the lowest priority.
step "building the fuzz targets in the background (nice 19; fuzzed at the end)"
fuzz_build_log=$(mktemp)
nice -n 19 scripts/fuzz.sh --build-only > "$fuzz_build_log" 2>&1 &
fuzz_build=$!
trap 'kill "$fuzz_build" 2>/dev/null || true; scripts/pg-cluster.sh stop "$SHIPYARD_PG_DIR"' EXIT

step "the README's main command: shipyard quickstart --no-wait in an empty folder"
quickstart_dir=$(mktemp -d)
(cd "$quickstart_dir" && "$SHIPYARD_BIN" quickstart --no-wait --port 0 > narration.txt) || {
  cat "$quickstart_dir/narration.txt"; exit 1; }
"$venv/bin/python" - "$quickstart_dir/shipyard-quickstart/summary.json" <<'EOF_PY'
import json, sys
s = json.load(open(sys.argv[1]))
assert s["gates_passed"] and s["drift_alert_fired"] and s["rolled_back"], s
assert s["served_predictions"] == 5000, s
# The canary took its configured 20% of 1,000 single-row requests (binomial tolerance).
assert s["canary_share"] is not None and 0.15 <= s["canary_share"] <= 0.25, s["canary_share"]
assert s["steps"] and all(x["status"] == "FINISHED" and x["run_id"] for x in s["steps"]), s["steps"]
assert s["ui_url"].startswith(s["server_url"] + "/experiments/"), s["ui_url"]
print(f"quickstart: {len(s['steps'])} steps recorded, {s['served_predictions']} predictions, canary share {s['canary_share']:.3f}, told in {s['seconds']:.1f} s")
EOF_PY
rm -rf "$quickstart_dir"

for backend in sqlite postgres; do
  step "interop suite: mlflow client against shipyard server on $backend"
  if [ "$backend" = postgres ]; then
    SHIPYARD_TEST_PG_URI=$(scripts/pg-cluster.sh createdb "$SHIPYARD_PG_PORT" "interop_$$")
    export SHIPYARD_TEST_PG_URI
  fi
  SHIPYARD_TEST_TARGET=shipyard SHIPYARD_TEST_BACKEND=$backend \
    "$venv/bin/python" -m pytest tests/interop -q -p no:cacheprovider
done

step "interop suite: artifacts, models and datasets with artifacts in S3 (local endpoint)"
SHIPYARD_TEST_TARGET=shipyard SHIPYARD_TEST_BACKEND=sqlite SHIPYARD_TEST_ARTIFACTS=s3 \
  "$venv/bin/python" -m pytest tests/interop/test_artifacts.py tests/interop/test_models.py tests/interop/test_datasets.py \
    -q -p no:cacheprovider

step "the web UI in a real browser: Debian's chromium driven through chromium-driver"
if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then
  echo "installing chromium and chromium-driver (Debian packages)..."
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends chromium chromium-driver
fi
"$venv/bin/python" -m pytest tests/browser -q -p no:cacheprovider

step "the seed's era of the mlflow client (2.19): its pipeline unchanged, and the tracking interop suite"
seed_venv=${SHIPYARD_SEED_VENV:-$root/.venv-seed}
scripts/venv.sh "$seed_venv" tests/seed/requirements.txt
"$seed_venv/bin/python" -m pytest tests/seed -q -p no:cacheprovider
SHIPYARD_TEST_TARGET=shipyard SHIPYARD_TEST_BACKEND=sqlite \
  "$seed_venv/bin/python" -m pytest tests/interop/test_experiments.py tests/interop/test_runs.py \
    tests/interop/test_search.py tests/interop/test_artifacts.py tests/interop/test_models.py \
    tests/interop/test_http_edge.py -q -p no:cacheprovider

step "fuzzing: every target, 150 s in all (cargo-fuzz, libFuzzer)"
wait "$fuzz_build" || { cat "$fuzz_build_log"; echo "building the fuzz targets failed"; exit 1; }
SHIPYARD_FUZZ_SECONDS=150 scripts/fuzz.sh

step "all tests passed in $(( $(date +%s) - started )) s"
