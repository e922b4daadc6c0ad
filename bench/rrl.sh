#!/usr/bin/env bash
# bench/rrl.sh — amplification factor (response bytes / request bytes) of a flood from one
# source, with `ratelimit` off and on.
#
# oxidns serves a zone whose TXT answer is about 1.2 KB; dnsperf sends the same EDNS query from
# 127.0.0.1 at a fixed rate for DUR seconds (a bounded flood: QPS × DUR queries), once against
# a block without `ratelimit` and once with `ratelimit $RATE { slip $SLIP }` (window 15).
# dnsperf reports queries sent and completed and the average request and response sizes; the
# factor is (completed × response size) / (sent × request size). Dropped responses count as
# zero bytes; slipped ones (TC=1, no records) at their size.
#
# Usage:  bench/rrl.sh
# Environment (defaults):
#   DUR=10 QPS=2000 RATE=20      flood length, queries a second, ratelimit's responses a second
#   SLIP=2                       ratelimit's slip (0: drop every limited response)
#   PORT=5390                    oxidns's port (both blocks, one after the other)
#   BUILD=1                      builds target/release/oxidns first; BUILD=0 uses what is there
#   OXIDNS=<repo>/target/release/oxidns   the binary (the factor does not depend on the build)
#   KEEP=1                       keeps the scratch dir (zone, Corefile, dnsperf output)
# Stops only the oxidns it started, by PID; every wait is bounded.
set -uo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
DUR=${DUR:-10}
QPS=${QPS:-2000}
RATE=${RATE:-20}
SLIP=${SLIP:-2}
PORT=${PORT:-5390}
OXIDNS=${OXIDNS:-$REPO/target/release/oxidns}
if [ "${BUILD:-1}" = 1 ]; then
  (cd "$REPO" && cargo build --release -p oxidns) || exit 1
fi
for tool in dnsperf dig "$OXIDNS"; do
  command -v "$tool" >/dev/null || { echo "rrl.sh: $tool not found" >&2; exit 1; }
done

WORK=$(mktemp -d /tmp/oxidns-rrl.XXXXXX)
trap '[ -n "${KEEP:-}" ] || rm -rf "$WORK"' EXIT

# The zone: one name with 10 TXT strings of 100 octets (about 1.2 KB of answer).
{
  echo '$ORIGIN rrl.test.'
  echo '$TTL 3600'
  echo '@ SOA ns.rrl.test. admin.rrl.test. 1 3600 600 86400 60'
  echo '@ NS ns.rrl.test.'
  echo 'ns A 127.0.0.1'
  for i in 0 1 2 3 4 5 6 7 8 9; do
    printf 'big TXT "%s%s"\n' "$i" "$(head -c 99 /dev/zero | tr '\0' 'x')"
  done
} >"$WORK/db.rrl.test"
echo "big.rrl.test TXT" >"$WORK/queries"

# run NAME RATELIMIT_LINE: starts oxidns, floods it, prints one result row.
run() {
  local name=$1 line=$2
  printf 'rrl.test:%s {\n  %s\n  file %s\n}\n' "$PORT" "$line" "$WORK/db.rrl.test" >"$WORK/Corefile"
  "$OXIDNS" -conf "$WORK/Corefile" -quiet >"$WORK/$name.log" 2>&1 &
  local pid=$!
  local up=0
  for _ in $(seq 1 100); do
    if dig @127.0.0.1 -p "$PORT" +tries=1 +time=1 +short big.rrl.test TXT >/dev/null 2>&1; then up=1; break; fi
    sleep 0.1
  done
  if [ "$up" != 1 ]; then
    echo "rrl.sh: oxidns did not answer ($name)" >&2; kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; return 1
  fi
  # Let the start-up probe's tokens come back before the flood.
  sleep 2
  timeout $((DUR + 30)) dnsperf -s 127.0.0.1 -p "$PORT" -d "$WORK/queries" -e -l "$DUR" -Q "$QPS" \
    -q 20000 -t 1 -c 1 >"$WORK/$name.dnsperf" 2>&1
  kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null
  awk -v name="$name" '
    /Queries sent:/       { sent = $3 }
    /Queries completed:/  { done = $3 }
    /Average packet size:/ { gsub(",", ""); req = $5; resp = $7 }
    END {
      if (sent == 0 || req == 0) { printf "%-14s no dnsperf result\n", name; exit 1 }
      printf "%-14s %8d %10d %8.1f %9.1f %14.2f\n", name, sent, done, req, resp, (done * resp) / (sent * req)
    }' "$WORK/$name.dnsperf"
}

printf '%-14s %8s %10s %8s %9s %14s\n' run sent answered req_B resp_B amplification
run off "# ratelimit off" || exit 1
run "ratelimit=$RATE" "ratelimit $RATE { slip $SLIP }" || exit 1
echo "($DUR s at $QPS q/s from 127.0.0.1; ratelimit $RATE: window 15, slip $SLIP; $OXIDNS)"
