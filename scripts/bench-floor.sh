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
. scripts/bench-setup.sh
start_servers
set -- "$@" --vs 127.0.0.1:50100 --vs-pid "$FLOOR_PID"
if [ -n "${OTHER:-}" ]; then
    set -- "$@" --vs "$OTHER"
    [ -n "${OTHER_PID:-}" ] && set -- "$@" --vs-pid "$OTHER_PID"
fi
$RAIDA bench 127.0.0.1:50000 --raida-id 0 --duration "$SECS" --server-pid "$SERVE_PID" "$@"
