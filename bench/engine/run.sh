#!/usr/bin/env bash
# Engine benchmark: Shipyard's native ONNX engine (`shipyard models bench`) next to onnxruntime
# (Python, CPUExecutionProvider, 1 and 2 intra-op threads) on the same models and the same rows.
# See bench.py for the protocol.
#
#   bench/engine/run.sh [--models a,b,c] [--quick] [--skip-shipyard] [--shipyard-bin PATH] ...
#
# All options go to bench.py (bench/engine/.venv/bin/python bench/engine/bench.py --help).
# Builds nothing: it expects target/release/shipyard (or --shipyard-bin / $SHIPYARD_BIN).
# Steps: makes or reuses bench/engine/.venv with the pinned packages of requirements.txt
# (scripts/venv.sh); generates the bench-scale models (100-tree forests, 100 boosting rounds,
# 1,000 recorded rows each) into bench/engine/models/ with
# crates/runtime/tests/fixtures/onnx/make_onnx_fixtures.py --scale bench (once: they are
# regenerated only when that script or requirements.txt changes; with --models only the
# missing ones are made); runs bench.py, which prints a markdown table and writes
# bench/engine/results/engine-<date>.json. Run it on an otherwise idle machine.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$(pwd)
here=$root/bench/engine
gen=$root/crates/runtime/tests/fixtures/onnx/make_onnx_fixtures.py

models_arg="" skip_shipyard="" bin_arg=""
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
  case "${args[$i]}" in
    --models) models_arg=${args[$((i + 1))]:-} ;;
    --models=*) models_arg=${args[$i]#--models=} ;;
    --skip-shipyard) skip_shipyard=1 ;;
    --shipyard-bin) bin_arg=${args[$((i + 1))]:-} ;;
    --shipyard-bin=*) bin_arg=${args[$i]#--shipyard-bin=} ;;
  esac
done

bin=${bin_arg:-${SHIPYARD_BIN:-$root/target/release/shipyard}}
if [ -z "$skip_shipyard" ] && [ ! -x "$bin" ]; then
  echo "error: $bin not found. Build it first:  cargo build --release --locked --bin shipyard" >&2
  echo "       (or pass --shipyard-bin PATH, or --skip-shipyard to measure onnxruntime only)" >&2
  exit 1
fi

venv=$here/.venv
scripts/venv.sh "$venv" bench/engine/requirements.txt

# Bench-scale models, regenerated when the generator or the pins change.
models=$here/models
stamp=$(cat "$gen" bench/engine/requirements.txt | sha256sum | cut -d' ' -f1)
if [ "$(cat "$models/.stamp" 2>/dev/null)" != "$stamp" ]; then
  rm -rf "$models"
  mkdir -p "$models"
  echo "$stamp" > "$models/.stamp"
fi
if [ -n "$models_arg" ]; then
  missing=()
  IFS=',' read -ra wanted <<< "$models_arg"
  for m in "${wanted[@]}"; do
    [ -n "$m" ] && [ ! -f "$models/$m.onnx" ] && missing+=("$m")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "generating bench-scale models: ${missing[*]}" >&2
    "$venv/bin/python" "$gen" --scale bench --out "$models" --only "${missing[@]}" >&2 \
      || echo "warning: some models failed to generate (see above); going on with the rest" >&2
  fi
elif [ ! -f "$models/.complete" ]; then
  echo "generating all bench-scale models into $models (once; takes a few minutes)" >&2
  if "$venv/bin/python" "$gen" --scale bench --out "$models" >&2; then
    touch "$models/.complete"
  else
    echo "warning: some models failed to generate (see above); going on with the rest" >&2
  fi
fi

extra=()
[ -z "$bin_arg" ] && [ -z "$skip_shipyard" ] && extra+=(--shipyard-bin "$bin")
exec "$venv/bin/python" "$here/bench.py" --models-dir "$models" "${extra[@]}" "$@"
