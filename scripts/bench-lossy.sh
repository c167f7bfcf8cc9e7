#!/usr/bin/env bash
# Issue 22's table: key exchanges per second and latency (p50, p99, max) on 25 local RAIDAs,
# every RAIDA behind a simulated link with 50 ms round trips (25 ms each way) and 0, 1, 5
# and 20 % loss each way (seed 22), in one run, side by side.
#   scripts/bench-lossy.sh [SECONDS_EACH] [CONCURRENCY]      (defaults 20 s, 4 in parallel)
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-20}
conc=${2:-4}
cargo bench -p raida --bench rke --no-run >/dev/null 2>&1
printf '| loss each way | exchanges/s | p50 ms | p99 ms | max ms | failed |\n|---|---|---|---|---|---|\n'
for loss in 0 1 5 20; do
  line=$(cargo bench -q -p raida --bench rke -- "$secs" "$conc" 16 "$loss" 25 2>/dev/null | grep 'exchanges/s')
  rate=$(sed -n 's/.*: \([0-9.]*\) exchanges\/s.*/\1/p' <<<"$line")
  p50=$(sed -n 's/.*p50 \([0-9.]*\) ms.*/\1/p' <<<"$line")
  p99=$(sed -n 's/.*p99 \([0-9.]*\) ms.*/\1/p' <<<"$line")
  max=$(sed -n 's/.*max \([0-9.]*\) ms.*/\1/p' <<<"$line")
  failed=$(sed -n 's/.*; \([0-9]*\) failed.*/\1/p' <<<"$line")
  printf '| %s %% | %s | %s | %s | %s | %s |\n' "$loss" "$rate" "$p50" "$p99" "$max" "$failed"
done
