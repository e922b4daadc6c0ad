#!/usr/bin/env bash
# bench/latency.sh — latency percentiles of oxidns and knotd answering the peer benchmark's
# queries at the same fixed rates (issue #8: "latency p99 no worse than Knot's").
#
# dnsperf 2.10 has no latency histogram, but with -v it prints every response with its latency
# ("> NOERROR name type 0.000123"); each server gets the same query file at each rate in RATES
# (open loop, -Q), pinned like peers.sh (server on CPU 0, one worker; dnsperf on CPU 1), and
# the printed latencies give p50, p90, p99 and p99.9 (nearest rank). Rates below capacity
# measure the answer path, not queueing; the top rate shows what queueing does to each.
#
# The machine is shared: single runs move by several times at p99, so the servers take turns
# for REPS rounds and the summary gives each percentile's median over the rounds.
#
# Usage:  bench/latency.sh        Environment: RATES="20000 100000" SECS=5 REPS=5 BUILD=1 OUT=/tmp/oxidns-latency
# Runs in a private network namespace (only lo). Stops only the processes it started, by PID.
set -uo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
RATES=${RATES:-"20000 100000"}; SECS=${SECS:-5}; REPS=${REPS:-5}; OUT=${OUT:-/tmp/oxidns-latency}
# shellcheck source=bench/lib.sh
. "$HERE/lib.sh"

if [ -z "${LATENCY_IN_NETNS:-}" ]; then
  for t in knotd dnsperf dig taskset unshare python3; do
    command -v "$t" >/dev/null || { echo "missing $t: run '$REPO/../shared/bench/peers.sh install' (apt part) first"; exit 1; }
  done
  echo "== $(date -u +%FT%TZ) oxidns $(cd "$REPO" && git rev-parse --short HEAD) loadavg: $(cut -d' ' -f1-3 /proc/loadavg)"
  run_in_netns LATENCY_IN_NETNS RATES SECS REPS
fi

cd "$OUT" || exit 1
trap stop_server EXIT

# measure NAME PORT CMD...: one line per rate, "NAME RATE answered p50 p90 p99 p99.9" (ms)
measure() {
  local name=$1 port=$2; shift 2
  TOKIO_WORKER_THREADS=1 taskset -c 0 "$@" >"$OUT/$name.log" 2>&1 &
  PID=$!
  wait_until_answering "$name" "$port" 100 0.2 || return 1
  # Warm-up: every question once (oxidns keeps answers in wire form after the first).
  taskset -c 1 dnsperf -s 127.0.0.1 -p "$port" -d "$QFILE" -n 1 -c 4 -q 100 >/dev/null 2>&1
  local rate
  for rate in $RATES; do
    taskset -c 1 dnsperf -s 127.0.0.1 -p "$port" -d "$QFILE" -c 4 -q 500 -Q "$rate" -l "$SECS" -v \
      2>/dev/null | awk '/^> / && $NF ~ /^[0-9.]+$/ {print $NF}' >"$OUT/$name.$rate.lat"
    python3 - "$name" "$rate" "$OUT/$name.$rate.lat" <<'PY'
import sys
name, rate, path = sys.argv[1:4]
lat = sorted(float(l) for l in open(path) if l.strip())
def pct(p):
    return lat[min(len(lat) - 1, max(0, int(round(p / 100 * len(lat))) - 1))] * 1000 if lat else float("nan")
print(name, rate, len(lat), *(f"{pct(p):.3f}" for p in (50, 90, 99, 99.9)))
PY
  done
  stop_server
}

write_configs 5481 5482
for rep in $(seq 1 "$REPS"); do
  measure oxidns 5481 "$OUT/oxidns" -quiet -workers 1 -conf "$OUT/Corefile"
  measure knotd 5482 knotd -c "$OUT/knot/knot.conf"
done | tee "$OUT/results.txt"
python3 - "$OUT/results.txt" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1]) if len(l.split()) == 7]
by = {}
for r in rows:
    by.setdefault((r[0], r[1]), []).append(r)
def med(rs, i):
    return statistics.median(float(r[i]) for r in rs)
print(f"== medians over {len(next(iter(by.values()), []))} rounds")
print(f"{'rate':>7} {'server':7} {'answered':>9} {'p50 ms':>7} {'p90 ms':>7} {'p99 ms':>7} {'p99.9 ms':>8} | p99 / knotd p99")
for (name, rate), rs in sorted(by.items(), key=lambda kv: (int(kv[0][1]), kv[0][0])):
    knot = by.get(("knotd", rate))
    ratio = f"{med(rs, 5) / med(knot, 5):.2f}x" if knot and med(knot, 5) > 0 else "-"
    print(f"{rate:>7} {name:7} {med(rs, 2):9.0f} {med(rs, 3):7.3f} {med(rs, 4):7.3f} {med(rs, 5):7.3f} {med(rs, 6):8.3f} | {ratio}")
PY
