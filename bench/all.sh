#!/usr/bin/env bash
# bench/all.sh — the whole performance comparison in one command (issue #8).
#
# Builds oxidns once, then runs, one after the other on the same build:
#   auth.sh         oxidns beside knotd, nsd, named (and hickory-dns if installed): CPU µs/query,
#                   qps, RSS, as ratios to Knot and to the best peer of the run;
#   cache.sh        cache hits beside unbound and dnsmasq, ratios to Unbound and to the best;
#   latency.sh      p50/p90/p99/p99.9 of oxidns and knotd at the same fixed rates;
#   instructions.sh user-space instructions per query under callgrind, oxidns and knotd, then
#                   per cache hit (MODE=cache), oxidns and Unbound;
#   profile.sh      oxidns's user/system split under load, perf top symbols, flame graph.
# and prints the summary lines of each at the end. Every script runs in its own private network
# namespace (loopback only) and stops only what it started.
#
# Usage:  bench/all.sh        Environment: BUILD=1 OUT=/tmp/oxidns-all; each script's own
#         variables pass through (DUR, REPS, RATES, N, ...). About 17 minutes.
set -uo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
OUT=${OUT:-/tmp/oxidns-all}
mkdir -p "$OUT"
if [ "${BUILD:-1}" = 1 ]; then (cd "$REPO" && cargo build --release -p oxidns) || exit 1; fi
export BUILD=0
echo "== $(date -u +%FT%TZ) oxidns $(cd "$REPO" && git rev-parse --short HEAD), loadavg $(cut -d' ' -f1-3 /proc/loadavg)"

run() {
  local name=$1; shift
  echo "== $name"
  "$@" >"$OUT/$name.log" 2>&1
  echo "   exit $?; log $OUT/$name.log"
}
run auth "$HERE/auth.sh"
run cache env DEFAULT_CACHE=0 MEMORY=0 RESOLVERS="${RESOLVERS:-unbound dnsmasq}" "$HERE/cache.sh"
run latency "$HERE/latency.sh"
run instructions env N="${N:-5000}" QPS="${QPS:-1000}" "$HERE/instructions.sh"
run instructions-cache env MODE=cache OUT=/tmp/oxidns-instructions-cache N="${N:-5000}" QPS="${QPS:-1000}" "$HERE/instructions.sh"
run profile env DUR="${PROFILE_DUR:-6}" PERF_SECS="${PERF_SECS:-3}" "$HERE/profile.sh"

echo
echo "== summary"
for name in auth cache; do
  awk '/^== (auth|cache): medians/ {on=1} on {print} /^target:/ {on=0}' "$OUT/$name.log"
done
awk '/^== medians over/ {on=1} on {print}' "$OUT/latency.log"
grep -h "^instructions per query" "$OUT/instructions.log" "$OUT/instructions-cache.log"
grep -h "us/q" "$OUT/profile.log" | head -1
grep -h "flame graph" "$OUT/profile.log"
