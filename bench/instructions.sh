#!/usr/bin/env bash
# bench/instructions.sh — instructions per query, counted by valgrind (callgrind), for oxidns and
# knotd answering the same queries from the peer benchmark's zone.
#
# CPU time moves by ±7% on this shared machine; an instruction count does not (the same binary,
# inputs and environment give the same count whatever else runs). Each server runs under
# `valgrind --tool=callgrind` with one worker; after it answers, its counters are zeroed
# (`callgrind_control -z`), N queries from the query file are sent at a low rate (valgrind runs
# the server some 50x slower), the counters are dumped (`callgrind_control -d`), and the total
# instructions of the dump divided by the queries answered is the figure. The dump keeps every
# function's share: `callgrind_annotate $OUT/<server>.callgrind.out.*` shows where they go.
#
# MODE=cache counts cache hits instead: knotd (not under valgrind) serves the zone as the
# upstream; oxidns (bench/cache.sh's Corefile), oxidns with `prometheus` too, oxidns with the
# plugins of CoreDNS's default Kubernetes Corefile (less `kubernetes`: `errors`, `prometheus`,
# `cache`, `loadbalance`, ...) and Unbound (as peers.sh runs it) are measured, each after the
# measured questions were asked once (so every counted query is a hit). `oxidns-records` has a
# plugin that reads records (`loadbalance` with `prefer`) before the cache: its hits are decoded.
#
# Usage:  bench/instructions.sh          Environment: N=20000 QPS=1500 BUILD=1 WARM=1 MODE=auth OUT=/tmp/oxidns-instructions
#         WARM=1 asks each measured question once before counting (the steady state); WARM=0
#         warms up with 2 s of the query file only, so most measured questions are new.
# Runs in a private network namespace (only lo). Stops only the processes it started, by PID.
set -uo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
N=${N:-20000}; QPS=${QPS:-1500}; OUT=${OUT:-/tmp/oxidns-instructions}; WARM=${WARM:-1}
MODE=${MODE:-auth}
# shellcheck source=bench/lib.sh
. "$HERE/lib.sh"

if [ -z "${INSTRUCTIONS_IN_NETNS:-}" ]; then
  command -v valgrind >/dev/null && command -v callgrind_control >/dev/null \
    || { echo "needs valgrind (apt-get install valgrind)"; exit 1; }
  run_in_netns INSTRUCTIONS_IN_NETNS N QPS WARM MODE
fi

cd "$OUT" || exit 1
UPSTREAM_PID=""
trap 'stop_server; [ -z "$UPSTREAM_PID" ] || { kill "$UPSTREAM_PID"; wait "$UPSTREAM_PID"; } 2>/dev/null' EXIT

# measure NAME PORT CMD...: prints "NAME instructions queries per-query"
measure() {
  local name=$1 port=$2; shift 2
  valgrind --tool=callgrind --callgrind-out-file="$OUT/$name.callgrind.out.%p" "$@" >"$OUT/$name.log" 2>&1 &
  PID=$!
  wait_until_answering "$name" "$port" 300 0.5 || return 1   # valgrind starts slowly
  # Warm up (first-touch paths; with WARM=1 each measured question once, as in a steady run where
  # every question repeats and oxidns answers from its stored wire-form answers), then count
  # only the measured queries.
  head -n "$N" "$QFILE" >"$OUT/queries.$N"
  if [ "$WARM" = 1 ]; then
    dnsperf -s 127.0.0.1 -p "$port" -d "$OUT/queries.$N" -n 1 -Q "$QPS" -t 5 >/dev/null 2>&1
  else
    dnsperf -s 127.0.0.1 -p "$port" -d "$QFILE" -n 1 -Q "$QPS" -l 2 >/dev/null 2>&1
  fi
  callgrind_control -z "$PID" >/dev/null 2>&1
  dnsperf -s 127.0.0.1 -p "$port" -d "$OUT/queries.$N" -n 1 -Q "$QPS" -t 5 >"$OUT/$name.dnsperf.txt" 2>&1
  callgrind_control -d "$PID" >/dev/null 2>&1
  sleep 1
  local done_ dump total
  done_=$(awk '/Queries completed/ {print $3}' "$OUT/$name.dnsperf.txt")
  dump=$(ls -t "$OUT/$name".callgrind.out.* 2>/dev/null | head -1)
  total=$(awk '/^summary:|^totals:/ {print $2; exit}' "$dump")
  echo "$name $total ${done_:-0} $(python3 -c "print(round($total / max(1, ${done_:-0}), 1))")"
  stop_server
}

if [ "$MODE" = cache ]; then
  # knotd as the upstream on 5473, natively; the caches forward to it.
  write_configs 5471 5473
  knotd -c "$OUT/knot/knot.conf" >"$OUT/upstream.log" 2>&1 &
  UPSTREAM_PID=$!
  printf '.:5471 {\n    bind 127.0.0.1\n    cache {\n        success 100000\n        denial 100000\n    }\n    forward . 127.0.0.1:5473\n}\n' >"$OUT/Corefile"
  printf '.:5474 {\n    bind 127.0.0.1\n    prometheus 127.0.0.1:5475\n    cache {\n        success 100000\n        denial 100000\n    }\n    forward . 127.0.0.1:5473\n}\n' >"$OUT/Corefile.prometheus"
  # The shape of CoreDNS's default Kubernetes Corefile, less `kubernetes`: `loadbalance` reorders
  # every answer after the cache.
  printf '.:5477 {\n    errors\n    health 127.0.0.1:5478\n    ready 127.0.0.1:5479\n    prometheus 127.0.0.1:5480\n    forward . 127.0.0.1:5473\n    cache {\n        success 100000\n        denial 100000\n    }\n    loop\n    reload\n    loadbalance\n}\n' >"$OUT/Corefile.coredns"
  # A plugin that reads records before the cache (`loadbalance` with `prefer`): hits decoded.
  printf '.:5481 {\n    cache {\n        success 100000\n        denial 100000\n    }\n    loadbalance {\n        prefer 192.0.2.0/24\n    }\n    forward . 127.0.0.1:5473\n}\n' >"$OUT/Corefile.records"
  # Unbound as peers.sh runs it, on 5476.
  unbound_conf "$OUT" 5476 5473 64m 128m >"$OUT/unbound.conf"
  {
    measure oxidns 5471 "$OUT/oxidns" -quiet -workers 1 -conf "$OUT/Corefile"
    measure oxidns-prometheus 5474 "$OUT/oxidns" -quiet -workers 1 -conf "$OUT/Corefile.prometheus"
    measure oxidns-coredns-default 5477 "$OUT/oxidns" -quiet -workers 1 -conf "$OUT/Corefile.coredns"
    [ "${RECORDS:-1}" = 1 ] && measure oxidns-records 5481 "$OUT/oxidns" -quiet -workers 1 -conf "$OUT/Corefile.records"
    measure unbound 5476 unbound -d -p -c "$OUT/unbound.conf"
  } | tee "$OUT/results.txt"
  PEER=unbound
else
  write_configs 5471 5472
  {
    measure oxidns 5471 "$OUT/oxidns" -quiet -workers 1 -conf "$OUT/Corefile"
    measure knotd 5472 knotd -c "$OUT/knot/knot.conf"
  } | tee "$OUT/results.txt"
  PEER=knotd
fi
python3 - "$OUT/results.txt" "$PEER" <<'EOF'
import sys
rows = {l.split()[0]: l.split() for l in open(sys.argv[1]) if len(l.split()) == 4}
peer = sys.argv[2]
if peer in rows:
    base = float(rows[peer][3])
    for name, row in rows.items():
        if name != peer:
            print(f"instructions per query: {name} {float(row[3]):,.0f}, {peer} {base:,.0f}, ratio {float(row[3]) / base:.2f}x")
EOF
