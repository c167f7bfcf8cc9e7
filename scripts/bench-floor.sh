#!/bin/sh
# UDP Echo: `raida serve` against the floor (crates/raida-server/examples/udp_floor.rs,
# a responder that does nothing but answer) with the same `raida bench`, in one run:
# both rates, both servers' CPU per request (from /proc) and the ratios.
#
#   scripts/bench-floor.sh [SECONDS] [-- EXTRA raida bench ARGS]
#   OTHER=127.0.0.1:50510 OTHER_PID=1234 scripts/bench-floor.sh 5   # also another server
#
# Builds the release binaries first. Ports 50000 (raida) and 50100 (floor) on 127.0.0.1.
set -eu
cd "$(dirname "$0")/.."
SECS=${1:-5}
[ $# -gt 0 ] && shift
[ "${1:-}" = "--" ] && shift
cargo build --release -q -p raida -p raida-server --bin raida --example udp_floor
RAIDA=target/release/raida
DIR=$(mktemp -d)
cleanup() {
    [ -n "${SERVE_PID:-}" ] && kill "$SERVE_PID" 2>/dev/null
    [ -n "${FLOOR_PID:-}" ] && kill "$FLOOR_PID" 2>/dev/null
    wait 2>/dev/null
    rm -rf "$DIR"
}
trap cleanup EXIT INT TERM
$RAIDA init "$DIR/data" --raida-id 0 --pages 4 --listen 127.0.0.1:50000 >/dev/null
$RAIDA coin set "$DIR/data" 1 5 000102030405060708090a0b0c0d0e0f --mfs 40
$RAIDA serve "$DIR/data" 2>"$DIR/serve.log" &
SERVE_PID=$!
target/release/examples/udp_floor 127.0.0.1:50100 2>"$DIR/floor.log" &
FLOOR_PID=$!
sleep 1
set -- "$@" --vs 127.0.0.1:50100 --vs-pid "$FLOOR_PID"
if [ -n "${OTHER:-}" ]; then
    set -- "$@" --vs "$OTHER"
    [ -n "${OTHER_PID:-}" ] && set -- "$@" --vs-pid "$OTHER_PID"
fi
$RAIDA bench 127.0.0.1:50000 --raida-id 0 --duration "$SECS" --server-pid "$SERVE_PID" "$@"
