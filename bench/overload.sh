#!/usr/bin/env bash
# bench/overload.sh — oxidns under a flood of twice what it can answer, then right after it.
#
# Two scenarios, each in its own private network namespace (only lo), oxidns pinned to CPU 0 with
# one worker, dnsperf on CPU 1:
#   auth     `file` serving the peer benchmark's zone: every query is answered at once.
#   forward  `forward` to an upstream that never answers (a bound UDP socket nobody reads), so
#            every query waits in flight until forward's deadline: the case where CoreDNS's memory
#            has grown without bound.
# For each: capacity = closed-loop qps over CAP_DUR seconds; then an open-loop flood at 2x that
# rate (dnsperf -Q, as far as one dnsperf can push) for FLOOD_DUR seconds. RSS is read before,
# every second during, and after the flood; when the flood ends, a probe query is sent every
# 50 ms until one is answered NOERROR (auth: the zone's SOA; forward: a `whoami` zone on the same
# listener), giving the time to recover. Reports RSS growth (peak during / before) and the share
# of flood queries answered.
#
# Usage:  bench/overload.sh            Environment: CAP_DUR=5 FLOOD_DUR=60 BUILD=1 PORT=5420
# Stops only the processes it started, by PID; every wait is bounded.
set -uo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
CAP_DUR=${CAP_DUR:-5}; FLOOD_DUR=${FLOOD_DUR:-60}; PORT=${PORT:-5420}
OUT=${OUT:-/tmp/oxidns-overload}

if [ -z "${OVERLOAD_SCENARIO:-}" ]; then
  if [ "${BUILD:-1}" = 1 ]; then
    (cd "$REPO" && cargo build --release -p oxidns) || exit 1
  fi
  mkdir -p "$OUT" && cp "$REPO/target/release/oxidns" "$OUT/oxidns" || exit 1
  if [ ! -f /tmp/oxidns-bench/data/example.com.zone ]; then
    mkdir -p /tmp/oxidns-bench/data && python3 "$REPO/../shared/bench/genzone.py" /tmp/oxidns-bench/data || exit 1
  fi
  echo "== $(date -u +%FT%TZ) load: $(cut -d' ' -f1-3 /proc/loadavg)"
  for scenario in auth forward; do
    env OVERLOAD_SCENARIO=$scenario CAP_DUR="$CAP_DUR" FLOOD_DUR="$FLOOD_DUR" PORT="$PORT" OUT="$OUT" \
      timeout $((CAP_DUR + FLOOD_DUR + 120)) unshare -n bash -c 'ip link set lo up && exec bash "$0"' "$0"
  done
  exit 0
fi

S=$OVERLOAD_SCENARIO
Z=/tmp/oxidns-bench/data/example.com.zone
Q=/tmp/oxidns-bench/data/queries.txt
cd "$OUT" || exit 1
PIDS=()
stop_all() {
  local p i
  for p in "${PIDS[@]}"; do
    kill -TERM "$p" 2>/dev/null
    for i in $(seq 1 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$p" 2>/dev/null; wait "$p" 2>/dev/null
  done
}
trap stop_all EXIT

case $S in
  auth)
    printf 'example.com:%s {\n    bind 127.0.0.1\n    file %s\n}\n' "$PORT" "$Z" >"$S.Corefile"
    PROBE=(dig +noall +comments +time=1 +tries=1 -p "$PORT" @127.0.0.1 example.com SOA)
    OUTSTANDING=500 ;;
  forward)
    # An upstream that takes queries and never answers.
    python3 -c "import socket,time; s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM); s.bind(('127.0.0.1',$((PORT + 1)))); time.sleep(100000)" &
    PIDS+=($!)
    printf '.:%s {\n    bind 127.0.0.1\n    forward . 127.0.0.1:%s\n}\nhealth.test:%s {\n    bind 127.0.0.1\n    whoami\n}\n' \
      "$PORT" $((PORT + 1)) "$PORT" >"$S.Corefile"
    PROBE=(dig +noall +comments +time=1 +tries=1 -p "$PORT" @127.0.0.1 health.test A)
    # Nothing is answered: enough outstanding queries for dnsperf to keep its rate.
    OUTSTANDING=50000 ;;
esac
taskset -c 0 "$OUT/oxidns" -quiet -workers 1 -conf "$OUT/$S.Corefile" >"$S.log" 2>&1 &
SP=$!; PIDS+=($SP)
answered() { "${PROBE[@]}" 2>/dev/null | grep -q 'status: NOERROR'; }
for i in $(seq 1 100); do answered && break; sleep 0.1; done
rss() { awk '/VmRSS/ {print $2}' /proc/$SP/status 2>/dev/null || echo 0; }

DP=(taskset -c 1 dnsperf -s 127.0.0.1 -p "$PORT" -d "$Q" -c 8 -T 1 -q "$OUTSTANDING" -t 1)
"${DP[@]}" -l "$CAP_DUR" >"$S.capacity.txt" 2>&1
cap=$(awk '/Queries per second/ {printf "%d", $4}' "$S.capacity.txt")
[ "$S" = forward ] && cap=$(( cap < 20000 ? 20000 : cap ))   # nothing is answered: flood at a fixed rate
rate=$((cap * 2))
before=$(rss)
"${DP[@]}" -Q "$rate" -l "$FLOOD_DUR" >"$S.flood.txt" 2>&1 &
FP=$!
peak=$before; samples=()
for i in $(seq 1 $((FLOOD_DUR + 5))); do
  kill -0 $FP 2>/dev/null || break
  r=$(rss); samples+=("$r"); [ "$r" -gt "$peak" ] && peak=$r
  sleep 1
done
wait $FP 2>/dev/null
start=$(date +%s%N); recovered=""
for i in $(seq 1 200); do
  if answered; then recovered=$(( ($(date +%s%N) - start) / 1000000 )); break; fi
  sleep 0.05
done
sleep 2; after=$(rss)
sent=$(awk '/Queries sent/ {print $3}' "$S.flood.txt")
done_=$(awk '/Queries completed/ {print $3}' "$S.flood.txt")
achieved=$(awk '/Queries per second/ {printf "%d", $4}' "$S.flood.txt")
kill -0 $SP 2>/dev/null && alive=yes || alive=NO
python3 - "$S" "$cap" "$rate" "$before" "$peak" "$after" "${sent:-0}" "${done_:-0}" "${recovered:-none}" "$alive" "${samples[*]}" <<'EOF'
import sys
s, cap, rate, before, peak, after, sent, done, rec, alive, samples = sys.argv[1:]
cap, rate, before, peak, after, sent, done = map(int, (cap, rate, before, peak, after, sent, done))
growth = (peak / before - 1) * 100 if before else 0
share = done / sent * 100 if sent else 0
print(f"{s:8} capacity {cap} q/s, flood asked {rate} q/s; RSS before {before/1024:.1f} MB, "
      f"peak {peak/1024:.1f} MB (+{growth:.1f}%), after {after/1024:.1f} MB; "
      f"answered {done}/{sent} ({share:.1f}%); first answer {rec} ms after the flood; alive: {alive}")
print(f"         RSS samples (MB): {' '.join(f'{int(x)/1024:.1f}' for x in samples.split())}")
EOF
