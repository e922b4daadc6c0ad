#!/usr/bin/env bash
# bench/profile.sh — where oxidns spends its CPU under the peer benchmark's load.
#
# Starts target/release/oxidns (a copy) pinned to CPU 0 with TOKIO_WORKER_THREADS=1 on ZONE,
# drives it with dnsperf from CPU 1 (open loop, -c 4 -q 100), and reports
#   * user and system CPU us/query (from /proc/PID/stat) over a DUR-second run;
#   * with PERF=1 (default if perf exists): `perf record` of the server for PERF_SECS seconds
#     (DWARF call graphs) and the top self-time symbols. perf.data is left in $OUT, and with
#     inferno installed (`cargo install inferno`) a flame graph, $OUT/flamegraph.svg.
# Runs in a private network namespace (only lo). Stops only the processes it started, by PID.
#
# Usage:  bench/profile.sh [ZONE QUERIES]
#   default: the peer zone and queries from bench/auth.sh's WORK (/tmp/oxidns-bench/data),
#   generated with ../shared/bench/genzone.py if missing. For the 1M-record zone:
#   bench/profile.sh /tmp/oxidns-zonemem/data/big-1000000.zone /tmp/oxidns-zonemem/data/big-1000000.queries.txt
# Environment: DUR=10 PERF_SECS=5 PERF=1 OUT=/tmp/oxidns-profile PORT=5460
set -uo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
DUR=${DUR:-10}; PERF_SECS=${PERF_SECS:-5}; OUT=${OUT:-/tmp/oxidns-profile}; PORT=${PORT:-5460}
PERF=${PERF:-$(command -v perf >/dev/null && echo 1 || echo 0)}
ZONE=${1:-/tmp/oxidns-bench/data/example.com.zone}
QFILE=${2:-/tmp/oxidns-bench/data/queries.txt}

if [ -z "${PROFILE_IN_NETNS:-}" ]; then
  if [ ! -f "$ZONE" ] && [ $# -eq 0 ]; then
    mkdir -p /tmp/oxidns-bench/data && python3 "$REPO/../shared/bench/genzone.py" /tmp/oxidns-bench/data || exit 1
  fi
  exec env PROFILE_IN_NETNS=1 DUR="$DUR" PERF_SECS="$PERF_SECS" OUT="$OUT" PORT="$PORT" PERF="$PERF" \
    unshare -n bash -c 'ip link set lo up && exec bash "$0" "$@"' "$0" "$ZONE" "$QFILE"
fi

mkdir -p "$OUT"
cp "$REPO/target/release/oxidns" "$OUT/oxidns" || exit 1
printf 'example.com:%s {\n    bind 127.0.0.1\n    file %s\n}\n' "$PORT" "$ZONE" >"$OUT/Corefile"
setsid taskset -c 0 env TOKIO_WORKER_THREADS=1 "$OUT/oxidns" -quiet -conf "$OUT/Corefile" >"$OUT/server.log" 2>&1 </dev/null &
PID=$!
stop() {
  kill -0 "$PID" 2>/dev/null || return 0
  kill -TERM "$PID"; local i
  for i in $(seq 1 100); do kill -0 "$PID" 2>/dev/null || break; sleep 0.1; done
  kill -0 "$PID" 2>/dev/null && kill -KILL "$PID"; wait "$PID" 2>/dev/null
}
trap stop EXIT
trap 'stop; exit 130' INT TERM
ok=0
for i in $(seq 1 600); do
  dig +noall +answer +time=1 +tries=1 -p "$PORT" @127.0.0.1 example.com SOA 2>/dev/null | grep -v '^;' | grep -qw SOA && { ok=1; break; }
  kill -0 "$PID" 2>/dev/null || break; sleep 0.2
done
[ "$ok" = 1 ] || { echo "oxidns did not come up:"; tail "$OUT/server.log"; exit 1; }

DP=(taskset -c 1 dnsperf -s 127.0.0.1 -p "$PORT" -d "$QFILE" -c 4 -T 1 -q 100)
"${DP[@]}" -l 2 >/dev/null 2>&1   # warm-up
read -r u0 s0 < <(sed 's/.*) //' /proc/$PID/stat | awk '{print $12, $13}')
timeout $((DUR + 30)) "${DP[@]}" -l "$DUR" >"$OUT/dnsperf.txt" 2>&1 &
dp=$!
if [ "$PERF" = 1 ]; then
  sleep 1
  timeout $((PERF_SECS + 20)) perf record -F 1999 --call-graph dwarf,16384 -p "$PID" -o "$OUT/perf.data" -- sleep "$PERF_SECS" \
    >"$OUT/perf.log" 2>&1
fi
wait $dp
read -r u1 s1 < <(sed 's/.*) //' /proc/$PID/stat | awk '{print $12, $13}')
n=$(awk '/Queries completed:/{print $3}' "$OUT/dnsperf.txt")
awk -v n="$n" -v u=$((u1 - u0)) -v y=$((s1 - s0)) -v hz="$(getconf CLK_TCK)" -v p="$PERF" 'BEGIN{
  printf "oxidns: %d queries in the run; user %.2f us/q, system %.2f us/q, total %.2f us/q%s\n",
    n, u*1e6/hz/n, y*1e6/hz/n, (u+y)*1e6/hz/n, (p==1 ? " (perf was sampling part of it: a few % higher)" : "")}'
grep -E 'Queries per second|Queries lost' "$OUT/dnsperf.txt"
if [ "$PERF" = 1 ]; then
  echo "== top self time (perf report -i $OUT/perf.data --no-children --sort dso,symbol)"
  perf report -i "$OUT/perf.data" --no-children --sort dso,symbol --stdio -g none 2>/dev/null |
    grep -v '^#' | grep '%' | head -25 | cut -c1-150
  # A flame graph of the same samples, with inferno (`cargo install inferno`) when it is there.
  if command -v inferno-collapse-perf >/dev/null && command -v inferno-flamegraph >/dev/null; then
    perf script -i "$OUT/perf.data" 2>/dev/null | inferno-collapse-perf 2>/dev/null |
      inferno-flamegraph --title "oxidns, $(basename "$ZONE")" >"$OUT/flamegraph.svg" 2>/dev/null &&
      echo "== flame graph: $OUT/flamegraph.svg"
  fi
fi
