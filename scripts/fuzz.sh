#!/usr/bin/env bash
# Coverage-guided fuzzing of what untrusted bytes reach (crates/fuzzing says what each target
# checks), with cargo-fuzz and libFuzzer on stable Rust (`-s none`: no sanitizer, which needs
# nightly; Rust's own bounds and overflow checks, debug assertions on, catch the rest).
#
#   scripts/fuzz.sh                 every target, SHIPYARD_FUZZ_SECONDS (default 150) in all
#   scripts/fuzz.sh 600 filter      one target for 600 s
#   scripts/fuzz.sh --build-only    only build the targets (scripts/test.sh does this in the
#                                   background while the interop suites run)
#
# The search starts from fuzz/seeds/<target> and keeps what it learns in fuzz/corpus/<target>
# (not committed). A crash stops the run: libFuzzer prints the input and saves it under
# fuzz/artifacts/<target>/; copy it into fuzz/regressions/<target>/ with the fix, and the replay
# test (crates/fuzzing/tests/replay.rs) runs it in every `cargo test` after.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "installing cargo-fuzz (crates.io)..."
  cargo install cargo-fuzz --locked --version 0.13.2
fi

if [ "${1:-}" = "--build-only" ]; then
  exec cargo fuzz build -s none
fi

budget=${1:-${SHIPYARD_FUZZ_SECONDS:-150}}
shift || true
if [ $# -gt 0 ]; then targets=("$@"); else mapfile -t targets < <(cargo fuzz list); fi
per_target=$(( budget / ${#targets[@]} ))
[ "$per_target" -ge 1 ] || per_target=1

cargo fuzz build -s none
for target in "${targets[@]}"; do
  mkdir -p "fuzz/corpus/$target"
  echo "fuzzing $target for ${per_target} s"
  # -timeout: one input over 10 s is a hang; -malloc_limit_mb: one allocation over 512 MiB is
  # a defect (every size a request or file gives must be bounded before it is allocated).
  log="fuzz/corpus/$target.log"
  if cargo fuzz run -s none "$target" "fuzz/corpus/$target" "fuzz/seeds/$target" -- \
      -max_total_time="$per_target" -timeout=10 -rss_limit_mb=2048 -malloc_limit_mb=512 \
      -max_len=65536 -print_final_stats=1 > "$log" 2>&1; then
    grep -E '^(Done [0-9]+ runs|stat::number_of_executed_units|stat::average_exec_per_sec|stat::peak_rss_mb)' "$log" || true
    grep -E 'cov: [0-9]+' "$log" | tail -n 1 || true
  else
    tail -n 80 "$log"
    echo "fuzz target $target failed: the input is in fuzz/artifacts/$target (see above)"
    exit 1
  fi
done
