#!/usr/bin/env bash
# Run every cargo-fuzz target (or the ones named) for up to RUNS executions or SECONDS each,
# JOBS at a time, and print one line per target: executions, seconds, and whether it crashed.
# New corpus entries go to a scratch folder (the committed seeds in fuzz/corpus/ are only read);
# a crashing input is left in fuzz/artifacts/<target>/ by libFuzzer: commit it as a seed once fixed.
#   RUNS=10000000 SECONDS_EACH=3600 JOBS=1 scripts/fuzz-all.sh [target...]
# Needs the nightly toolchain and `cargo install cargo-fuzz`. Built without a sanitizer
# (`-s none`: the code under test is safe Rust; panics and aborts are what we look for).
set -uo pipefail
cd "$(dirname "$0")/../fuzz"
runs=${RUNS:-10000000}
secs=${SECONDS_EACH:-3600}
jobs=${JOBS:-1}
scratch=${SCRATCH:-$(mktemp -d)}
targets=("$@")
[ ${#targets[@]} -gt 0 ] || mapfile -t targets < <(cargo +nightly fuzz list)
cargo +nightly fuzz build -s none >/dev/null 2>&1 || { echo "cargo +nightly fuzz build failed" >&2; exit 1; }
one() {
  local t=$1 log="$scratch/$1.log"
  mkdir -p "$scratch/corpus/$t"
  cargo +nightly fuzz run -s none "$t" "$scratch/corpus/$t" "corpus/$t" -- \
    -runs="$runs" -max_total_time="$secs" -print_final_stats=1 >"$log" 2>&1
  local rc=$?
  local n s
  n=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
  s=$(grep -o 'Done [0-9]* runs in [0-9]* second' "$log" | grep -o 'in [0-9]*' | grep -o '[0-9]*' | tail -1)
  printf '%-20s execs %-10s seconds %-6s %s\n' "$t" "${n:-?}" "${s:-?}" "$([ $rc -eq 0 ] && echo 'no crash' || echo "EXIT $rc: see $log")"
}
export -f one; export runs secs scratch
printf '%s\n' "${targets[@]}" | xargs -P "$jobs" -I{} bash -c 'one {}'
