#!/usr/bin/env bash
# bench/auth.sh — oxidns against the shared peer benchmark (authoritative mode).
#
# Builds target/release/oxidns, snapshots the binary and ../shared/bench/{peers.sh,genzone.py}
# into a temp dir (peers.sh must not be run in place: bash reads it lazily), runs
# `peers.sh auth` with oxidns added through EXTRA, then prints ratios to Knot (bench/report.py).
#
# Usage:  bench/auth.sh                      (from anywhere; paths are resolved from this file)
# Environment (defaults):
#   DUR=10 REPS=2                 dnsperf seconds per run, runs per server (peers.sh defaults: 15, 3)
#   SERVERS="knot nsd named"      peers; hickory is added if its binary is already installed
#   WORK=/tmp/oxidns-bench        peers.sh scratch dir; results.tsv accumulates there
#   OXIDNS_PORT=5350              UDP port of oxidns (loopback, inside peers.sh's private netns)
#   PEERBENCH=<repo>/../shared/bench   where peers.sh and genzone.py come from
#   BUILD=1                       BUILD=0 uses the existing target/release/oxidns
#   FLOOR=1                       also run bench/floor.c (port FLOOR_PORT=5351): the kernel's
#                                 share of a query, under every socket-based server's CPU per query
# Anything else peers.sh reads (CLIENTS, OUTSTANDING, QPS, NETNS, ...) is passed through.
#
# oxidns is pinned to CPU 0 by peers.sh (taskset -c 0) like the peers. TOKIO_WORKER_THREADS=1
# (read by tokio's Builder::new_multi_thread when worker_threads() is not called; the same as
# -workers 1) gives it one runtime worker and so one UDP socket, read by a thread of its own,
# plus the main thread (block_on) and tokio's lazily created blocking pool.
set -uo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
PEERBENCH=${PEERBENCH:-$(cd "$REPO/../shared/bench" && pwd)}
export DUR=${DUR:-10} REPS=${REPS:-2}
export WORK=${WORK:-/tmp/oxidns-bench}
OXIDNS_PORT=${OXIDNS_PORT:-5350}
BUILD=${BUILD:-1}

if [ -z "${SERVERS:-}" ]; then
  SERVERS="knot nsd named"
  H=$(command -v hickory-dns || echo /tmp/peerbench/hickory/bin/hickory-dns)
  [ -x "$H" ] && { SERVERS="$SERVERS hickory"; export HICKORY=$H; }
fi
export SERVERS

for t in knotd dnsperf dig taskset unshare python3; do
  command -v "$t" >/dev/null || { echo "missing $t: run '$PEERBENCH/peers.sh install' (apt part) first"; exit 1; }
done

# shellcheck source=bench/lib.sh
. "$HERE/lib.sh"
build_and_snapshot auth
echo "== SERVERS=\"$SERVERS\" + oxidns   DUR=$DUR REPS=$REPS   WORK=$WORK"

# One EXTRA line: NAME PORT COMMAND (run by `bash -c` with ZONE ORIGIN PORT RUN exported).
EXTRA="oxidns $OXIDNS_PORT printf '%s:%s {\n    bind 127.0.0.1\n    file %s\n}\n' \"\$ORIGIN\" \"\$PORT\" \"\$ZONE\" > \"\$RUN/Corefile\" && TOKIO_WORKER_THREADS=1 exec $TMP/oxidns -quiet -conf \"\$RUN/Corefile\""
if [ "${FLOOR:-1}" = 1 ]; then
  gcc -O2 -Wall -o "$TMP/floor" "$HERE/floor.c" || exit 1
  EXTRA="$EXTRA
floor ${FLOOR_PORT:-5351} exec $TMP/floor \"\$PORT\""
fi
export EXTRA

mkdir -p "$WORK"
RESULTS=$WORK/results.tsv
START=$( [ -f "$RESULTS" ] && wc -l <"$RESULTS" || echo 1 )   # rows after this line are ours
bash "$TMP/peers.sh" auth
rc=$?
echo
echo "== load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
python3 "$HERE/report.py" "$RESULTS" --skip "$START" --base knot --target 0.7
python3 "$HERE/report.py" "$RESULTS" --skip "$START" --base best --target 0.7
exit $rc
