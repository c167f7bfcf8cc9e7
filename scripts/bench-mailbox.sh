#!/usr/bin/env bash
# Issue 21's figures on the local network, side by side in one run (interleaved rounds):
#  * time from `raida send` start to the file at the receiver (a 1-byte file: the key
#    exchange, the alert and the data path dominate), through the mailbox path (--to DN:SN,
#    the receiver has no open port, the data goes through the relay) vs the direct path
#    (--to DN:SN@HOST:PORT to a receiver listening there);
#  * a relayed transfer's throughput vs a direct one (SIZE bytes, default 200 MB).
# Prints each run, then p50 of each and the ratios. Needs a release build:
#   cargo build --release && scripts/bench-mailbox.sh [ROUNDS] [SIZE_MB]
set -euo pipefail
cd "$(dirname "$0")/.."
R=${RAIDA:-target/release/raida}
rounds=${1:-10}
size_mb=${2:-200}
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
base=$(( 40000 + RANDOM % 2000 ))
"$R" network init "$work/net" --base-port "$base" >/dev/null 2>&1
"$R" network up "$work/net" >/dev/null 2>"$work/up.log" &
for _ in $(seq 50); do grep -q listening "$work/up.log" 2>/dev/null && break; sleep 0.2; done
net="$work/net/network.toml"
alice="$work/net/wallets/alice/01.1.bin"
bob="$work/net/wallets/bob/01.2.bin"
printf x > "$work/one"
head -c $(( size_mb * 1000000 )) /dev/urandom > "$work/big"
now() { date +%s%N; }
# one transfer: $1 = mailbox|direct, $2 = file; prints seconds from send start to done
once() {
  local mode=$1 file=$2 out port t0 t1
  out=$(mktemp -d -p "$work")
  port=$(( base + 100 + RANDOM % 500 ))
  if [ "$mode" = direct ]; then
    "$R" receive --network "$net" --wallet "$bob" --listen "127.0.0.1:$port" --from 1:1 -o "$out" -q 2>/dev/null &
    to="1:2@127.0.0.1:$port"
  else
    "$R" receive --network "$net" --wallet "$bob" --from 1:1 -o "$out" -q 2>/dev/null &
    to="1:2"
  fi
  local rx=$!
  sleep 1 # the receiver's polls (and port) are up: not part of the figure
  t0=$(now)
  "$R" send "$file" --network "$net" --wallet "$alice" --to "$to" -q
  wait "$rx"
  t1=$(now)
  cmp -s "$file" "$out/$(basename "$file")" || { echo "MISMATCH ($mode)" >&2; exit 1; }
  rm -rf "$out"
  echo "scale=4; ($t1 - $t0) / 1000000000" | bc
}
p50() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
: > "$work/fb_mailbox"; : > "$work/fb_direct"; : > "$work/tp_relay"; : > "$work/tp_direct"
for i in $(seq "$rounds"); do
  m=$(once mailbox "$work/one"); d=$(once direct "$work/one")
  echo "$m" >> "$work/fb_mailbox"; echo "$d" >> "$work/fb_direct"
  echo "round $i first byte: mailbox ${m}s direct ${d}s"
done
for i in $(seq $(( (rounds + 1) / 2 ))); do
  r=$(once mailbox "$work/big"); d=$(once direct "$work/big")
  echo "$r" >> "$work/tp_relay"; echo "$d" >> "$work/tp_direct"
  echo "round $i ${size_mb} MB: relay ${r}s direct ${d}s"
done
fm=$(p50 < "$work/fb_mailbox"); fd=$(p50 < "$work/fb_direct")
tr=$(p50 < "$work/tp_relay"); td=$(p50 < "$work/tp_direct")
echo "first byte p50: mailbox ${fm}s, direct ${fd}s, ratio mailbox/direct $(echo "scale=2; $fm / $fd" | bc) (target <= 1.5)"
echo "throughput p50 (${size_mb} MB, file to file): relay $(echo "scale=1; $size_mb / $tr" | bc) MB/s, direct $(echo "scale=1; $size_mb / $td" | bc) MB/s, ratio relay/direct $(echo "scale=2; $td / $tr" | bc) (target >= 0.8)"
