#!/usr/bin/env bash
# Serving benchmark: the same RandomForest (100 trees, 20 features) served by `shipyard serve`
# (the ONNX file), `mlflow models serve` (sklearn flavor) and MLServer (mlserver-sklearn, when it
# installs), next to two limits measured in the same run: a minimal axum route answering a fixed
# body (the HTTP ceiling) and the model's in-process batch-1 time in Shipyard and onnxruntime (the
# compute floor). Loads with wrk over 127.0.0.1 only; see bench.py for the protocol.
#
#   bench/serving/run.sh [--quick] [--duration S] [--skip-shipyard] [--skip-ceiling] [--skip-mlflow]
#                        [--skip-mlserver] [--shipyard-bin PATH] [--ceiling-bin PATH] ...
#
# All options go to bench.py (bench/serving/.venv/bin/python bench/serving/bench.py --help).
# Builds nothing: it expects both binaries (or --shipyard-bin / $SHIPYARD_BIN and --ceiling-bin /
# $CEILING_BIN):
#   cargo build --release --locked --bin shipyard                        # target/release/shipyard
#   cargo build --release --locked -p shipyard-serving --example fixed_body
#                                                        # target/release/examples/fixed_body
# Steps: installs wrk with apt-get when it is missing (as root); makes or reuses
# bench/serving/.venv with the pinned packages of requirements.txt and, unless --skip-mlserver,
# bench/serving/.venv-mlserver with requirements-mlserver.txt (scripts/venv.sh; when MLServer
# fails to install the bench goes on without it and says so); trains the forest into
# bench/serving/.work/model with make_model.py (the MLflow model directory and the joblib file the
# Python servers load, plus an ONNX file, the training rows and the request bodies, used when
# ../shared/anchors/{models,payloads} are not there; redone only when make_model.py or
# requirements.txt change); runs bench.py, which starts one server at a time, prints markdown
# tables with the ratios and goals, and writes bench/serving/results/serving-<date>.json.
# Servers are stopped by process group at the end, whatever happens. A full run takes about
# 7 minutes (20 loads of 15 s, MLflow's and MLServer's start-up), --quick about 2, plus the venvs
# and the training the first time. Run it on an otherwise idle machine: the "foreign CPU s"
# column (CPU time used by other processes during a load) shows when it was not.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$(pwd)
here=$root/bench/serving

skip_shipyard="" skip_ceiling="" skip_mlserver="" shipyard_arg="" ceiling_arg="" help=""
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
  case "${args[$i]}" in
    -h | --help) help=1 ;;
    --skip-shipyard) skip_shipyard=1 ;;
    --skip-ceiling) skip_ceiling=1 ;;
    --skip-mlserver) skip_mlserver=1 ;;
    --shipyard-bin) shipyard_arg=${args[$((i + 1))]:-} ;;
    --shipyard-bin=*) shipyard_arg=${args[$i]#--shipyard-bin=} ;;
    --ceiling-bin) ceiling_arg=${args[$((i + 1))]:-} ;;
    --ceiling-bin=*) ceiling_arg=${args[$i]#--ceiling-bin=} ;;
  esac
done

venv=$here/.venv
if [ -n "$help" ]; then
  scripts/venv.sh "$venv" bench/serving/requirements.txt
  exec "$venv/bin/python" "$here/bench.py" --help
fi

shipyard=${shipyard_arg:-${SHIPYARD_BIN:-$root/target/release/shipyard}}
ceiling=${ceiling_arg:-${CEILING_BIN:-$root/target/release/examples/fixed_body}}
missing=()
[ -z "$skip_shipyard" ] && [ ! -x "$shipyard" ] && missing+=("$shipyard  <- cargo build --release --locked --bin shipyard")
[ -z "$skip_ceiling" ] && [ ! -x "$ceiling" ] && missing+=("$ceiling  <- cargo build --release --locked -p shipyard-serving --example fixed_body")
if [ ${#missing[@]} -gt 0 ]; then
  echo "error: missing binaries; build both first:" >&2
  printf '         %s\n' "${missing[@]}" >&2
  echo "       (or pass --shipyard-bin PATH / --ceiling-bin PATH, or --skip-shipyard / --skip-ceiling)" >&2
  exit 1
fi

if ! command -v wrk > /dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get > /dev/null; then
    echo "installing wrk (apt-get)" >&2
    apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk > /dev/null
  else
    echo "error: wrk not found; install it: sudo apt-get install -y wrk" >&2
    exit 1
  fi
fi

scripts/venv.sh "$venv" bench/serving/requirements.txt
mkdir -p "$here/.work"

extra=()
if [ -z "$skip_mlserver" ]; then
  log=$here/.work/mlserver-install.log
  if ! scripts/venv.sh "$here/.venv-mlserver" bench/serving/requirements-mlserver.txt > "$log" 2>&1; then
    echo "warning: MLServer did not install (see $log); going on without it" >&2
    extra+=(--mlserver-unavailable "pip install of requirements-mlserver.txt failed (log: bench/serving/.work/mlserver-install.log)")
  fi
fi

# The forest for MLflow and MLServer (and the fallbacks for the shared files), made again when
# the recipe or the pins change.
model_dir=$here/.work/model
stamp=$(cat bench/serving/make_model.py bench/serving/requirements.txt | sha256sum | cut -d' ' -f1)
if [ "$(cat "$model_dir/.stamp" 2>/dev/null)" != "$stamp" ]; then
  rm -rf "$model_dir"
  mkdir -p "$model_dir"
  echo "training the forest into $model_dir (once; about a minute)" >&2
  MLFLOW_DISABLE_TELEMETRY=true DO_NOT_TRACK=true "$venv/bin/python" "$here/make_model.py" "$model_dir" >&2
  echo "$stamp" > "$model_dir/.stamp"
fi

[ -z "$shipyard_arg" ] && extra+=(--shipyard-bin "$shipyard")
[ -z "$ceiling_arg" ] && extra+=(--ceiling-bin "$ceiling")
exec "$venv/bin/python" "$here/bench.py" --model-dir "$model_dir" "${extra[@]}" "$@"
