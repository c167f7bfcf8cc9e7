# Sourced by bench-floor.sh and bench-all.sh (POSIX sh): builds the release binaries,
# makes a data directory with one coin (1, 5) under $DIR, and defines `start_servers`,
# which starts `raida serve` on 127.0.0.1:50000 (SERVE_PID) and the floor on
# 127.0.0.1:50100 (FLOOR_PID). Both are stopped and $DIR removed when the script exits.
# Expects to run from the repository's root.
cargo build --release -q -p raida -p raida-server --bin raida --example udp_floor
RAIDA=target/release/raida
AN=000102030405060708090a0b0c0d0e0f
DIR=$(mktemp -d)
cleanup() {
    [ -n "${SERVE_PID:-}" ] && kill "$SERVE_PID" 2>/dev/null
    [ -n "${FLOOR_PID:-}" ] && kill "$FLOOR_PID" 2>/dev/null
    wait 2>/dev/null
    rm -rf "$DIR"
}
trap cleanup EXIT INT TERM
$RAIDA init "$DIR/data" --raida-id 0 --pages 4 --listen 127.0.0.1:50000 >/dev/null
$RAIDA coin set "$DIR/data" 1 5 $AN --mfs 40
start_servers() {
    $RAIDA serve "$DIR/data" 2>"$DIR/serve.log" &
    SERVE_PID=$!
    target/release/examples/udp_floor 127.0.0.1:50100 2>"$DIR/floor.log" &
    FLOOR_PID=$!
    sleep 1
}
