#!/bin/sh
# Every performance figure of issue 14 from one run on this machine, with the commands
# that make them (docs/performance.md, "The server"):
#   1. UDP Echo EN 0: `raida serve` vs the floor (examples/udp_floor.rs) [vs another server]
#   2. EN 1 and EN 4 Echo on the same server, against EN 0 right before
#   3. TCP Echo, 4 connections x 16 pipelined
#   4. Post Key + Get Key pairs, 64 in flight, every answer after its data is durable
#      (after a 2 s warm-up run that creates the key files later posts reuse)
#   5. AES-256-GCM at 16 KiB: `openssl speed` vs the channel's seal/open (criterion)
#   6. 16-part key exchanges on 25 in-process RAIDAs, 16 in parallel
# Each `raida bench` line gives requests/s, latency percentiles and the server's CPU per
# request (from /proc); the summary at the end puts the ratios together.
#
#   scripts/bench-all.sh [SECONDS]
#   OTHER="127.0.0.1:50510 127.0.0.1:50500" OTHER_PID="1234 1235" scripts/bench-all.sh 5
#       # also other servers (e.g. the C server built two ways) in the Echo run
#
# Builds the release binaries first. Ports 50000 (raida) and 50100 (floor) on 127.0.0.1.
# The data directory lives under $TMPDIR (default /tmp): the Post+Get figure is that
# file system's.
set -eu
cd "$(dirname "$0")/.."
SECS=${1:-5}
. scripts/bench-setup.sh
# the load generator is one address: lift the per-address shares it would otherwise hit
# (replay memory per key for EN 4, anonymous posts and durable commands per address)
sed -i -e 's/^replay_capacity = .*/replay_capacity = 20000000/' \
    -e 's/^replay_share_per_key = .*/replay_share_per_key = 20000000/' \
    -e 's/^anonymous_posts_per_addr = .*/anonymous_posts_per_addr = 100000/' \
    -e 's/^max_durable_commands = .*/max_durable_commands = 1024/' "$DIR/data/config.toml"
start_servers
OUT="$DIR/out"
mkdir "$OUT"
bench() { # NAME ARGS...: one raida bench run against raida serve, kept for the summary
    name=$1
    shift
    echo "== $name: raida bench 127.0.0.1:50000 $*"
    $RAIDA bench 127.0.0.1:50000 --raida-id 0 --duration "$SECS" --server-pid "$SERVE_PID" "$@" | tee "$OUT/$name"
}
rate() { # the first requests/s figure of a run
    awk '/requests\/s:/ { print $2; exit }' "$OUT/$1"
}
cpu() { # the first server CPU per request of a run
    awk '/cpu per request: server/ { print $5; exit }' "$OUT/$1"
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.3f", a / b; else print "-" }'; }

set -- --vs 127.0.0.1:50100 --vs-pid "$FLOOR_PID"
for o in ${OTHER:-}; do set -- "$@" --vs "$o"; done
for p in ${OTHER_PID:-}; do set -- "$@" --vs-pid "$p"; done
bench udp-en0-vs "$@"
bench udp-en0 --encryption 0
bench udp-en1 --encryption 1 --coin "1:5:$AN"
bench udp-en4 --encryption 4 --coin "1:5:$AN"
bench tcp-pipelined --tcp --concurrency 4 --pipeline 16
# Post+Get from its steady state: a first run creates the key files that later posts reuse
$RAIDA bench 127.0.0.1:50000 --raida-id 0 --duration 2 --command post-get-key >/dev/null
bench post-get --command post-get-key

echo "== AES-256-GCM, 16 KiB, one core: openssl speed -seconds 2 -bytes 16384 -evp aes-256-gcm"
openssl speed -seconds 2 -bytes 16384 -evp aes-256-gcm 2>/dev/null | tee "$OUT/openssl" | tail -2 || true
echo "== channel seal/open at 16 KiB: cargo bench -p raida-channel --bench channel"
cargo bench -q -p raida-channel --bench channel -- --warm-up-time 1 --measurement-time 2 "channel_(seal|open)/16384" \
    2>/dev/null | tee "$OUT/channel" | grep -E "records/|thrpt" || true
echo "== 16-part key exchanges, 25 RAIDAs, 16 in parallel: cargo bench -p raida --bench rke -- $SECS 16 16"
cargo bench -q -p raida --bench rke -- "$SECS" 16 16 2>/dev/null | tee "$OUT/rke" | tail -3 || true

floor=$(awk '/127.0.0.1:50100/ { f = 1 } f && /requests\/s:/ { print $2; exit }' "$OUT/udp-en0-vs")
floor_cpu=$(awk '/127.0.0.1:50100/ { f = 1 } f && /cpu per request: server/ { print $5; exit }' "$OUT/udp-en0-vs")
echo
echo "== summary (one run; ratios of raida serve)"
echo "UDP Echo EN 0 / floor: rate $(ratio "$(rate udp-en0-vs)" "$floor"), CPU per request $(ratio "$(cpu udp-en0-vs)" "$floor_cpu") (targets >= 0.9, <= 1.2)"
grep -E "^ratio" "$OUT/udp-en0-vs" || true
echo "EN 1 / EN 0: $(ratio "$(rate udp-en1)" "$(rate udp-en0)"); EN 4 / EN 0: $(ratio "$(rate udp-en4)" "$(rate udp-en0)") (target >= 0.8)"
echo "TCP 4 x 16 pipelined / UDP floor: $(ratio "$(rate tcp-pipelined)" "$floor")"
echo "Post+Get: $(awk -v r="$(rate post-get)" 'BEGIN { printf "%d", r / 2 }') pairs/s (target >= 10,000)"
