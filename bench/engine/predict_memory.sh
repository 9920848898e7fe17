#!/usr/bin/env bash
# Peak memory of `shipyard predict` as the input grows: a bounded-memory scorer keeps the same
# peak whatever the file's size. Writes CSVs of 20 float columns with 250k and 2M rows (about
# 40 MB and 330 MB) into bench/engine/models/memory/, scores each with a bench-scale model
# (default: the 100-tree random forest), and prints peak RSS (GNU time's "Maximum resident set
# size") and wall time per size.
#
#   bench/engine/predict_memory.sh [MODEL.onnx]   (after bench/engine/run.sh made the models)
set -euo pipefail
cd "$(dirname "$0")/../.."
bin=${SHIPYARD_BIN:-target/release/shipyard}
model=${1:-bench/engine/models/rf_classifier_binary.onnx}
dir=bench/engine/models/memory
mkdir -p "$dir"
[ -x "$bin" ] || { echo "build first: cargo build --release --locked --bin shipyard" >&2; exit 1; }
[ -f "$model" ] || { echo "no $model: run bench/engine/run.sh first" >&2; exit 1; }
command -v /usr/bin/time >/dev/null || { echo "needs GNU time (Debian package 'time')" >&2; exit 1; }

echo "| rows | input MB | peak RSS MB | wall s | rows/s |"
echo "|---:|---:|---:|---:|---:|"
for rows in 250000 2000000; do
  csv=$dir/rows-$rows.csv
  if [ ! -f "$csv" ]; then
    python3 - "$csv" "$rows" <<'EOF'
import random, sys
path, rows = sys.argv[1], int(sys.argv[2])
rng = random.Random(0)
with open(path, "w") as f:
    f.write(",".join(f"f{j}" for j in range(20)) + "\n")
    for _ in range(rows):
        f.write(",".join(f"{rng.gauss(0, 1.5):.4f}" for _ in range(20)) + "\n")
EOF
  fi
  out=$dir/scored-$rows.parquet
  /usr/bin/time -o "$dir/time.txt" -f "%M %e" "$bin" predict --model "$model" --input "$csv" --output "$out" \
    --batch-size 10000 >/dev/null 2>&1
  stats=$(tail -1 "$dir/time.txt")
  rss_kb=${stats% *}
  wall=${stats#* }
  mb=$(( $(stat -c %s "$csv") / 1000000 ))
  python3 -c "print(f'| {$rows:,} | $mb | {$rss_kb/1024:.0f} | {$wall} | {$rows/$wall:,.0f} |')"
done
