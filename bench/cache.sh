#!/usr/bin/env bash
# bench/cache.sh — oxidns as a caching forwarder against the shared peer benchmark (cache hits),
# then its memory per cached answer.
#
# 1. Builds target/release/oxidns, snapshots the binary and ../shared/bench/{peers.sh,genzone.py}
#    into a temp dir (peers.sh must not be run in place: bash reads it lazily), and runs
#    `peers.sh resolver` with oxidns added through EXTRA and RESOLVERS. peers.sh starts knotd as the
#    upstream on 127.0.0.1:$KNOT_PORT, warms every cache (2 passes over the query file at 20k qps),
#    stops knotd, then measures pure cache hits. Ratios to Unbound come from bench/report.py.
# 2. Memory per cached answer: knotd serves a zone with $NENTRIES distinct hostNNNNN A records;
#    oxidns and Unbound (each pinned to CPU 0, one thread) get every name asked once. RSS before
#    and after, divided by the number of answers cached. knotd is then stopped and every name is
#    asked again: all must come back NOERROR from the cache, or the figure is flagged.
#
# Usage:  bench/cache.sh                     (from anywhere; paths are resolved from this file)
# Environment (defaults):
#   DUR=10 REPS=2                 dnsperf seconds per run, runs per server (peers.sh defaults: 15, 3)
#   RESOLVERS="unbound dnsmasq"   peers; oxidns (and oxidns-default, see below) are appended
#   WORK=/tmp/oxidns-cachebench   peers.sh scratch dir; results.tsv accumulates there
#   KNOT_PORT=5301                upstream knotd port (peers.sh reads the same variable)
#   OXIDNS_PORT=5350              oxidns with `cache { success 100000; denial 100000 }`
#   DEFAULT_CACHE=1               also run `oxidns-default` (plain `cache`, 9984 answers per cache)
#   OXIDNS_DEFAULT_PORT=5351        on this port; DEFAULT_CACHE=0 leaves it out
#   NENTRIES=100000 MEMORY=1      memory phase size; MEMORY=0 skips it
#   PEERBENCH=<repo>/../shared/bench   where peers.sh and genzone.py come from
#   BUILD=1                       BUILD=0 uses the existing target/release/oxidns
# Anything else peers.sh reads (CLIENTS, OUTSTANDING, QPS, NETNS, ...) is passed through.
#
# oxidns threads: as in bench/auth.sh, TOKIO_WORKER_THREADS=1 and the CPU pin (taskset -c 0 by
# peers.sh) give one tokio worker plus the mostly idle main thread.
set -uo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
ORIGIN=example.com

# ------------------------------------------------------------------ memory phase (in a netns)
# Runs as `bash cache.sh __memory OXIDNS_BIN MEMDIR` inside `unshare -n` (only lo exists).
if [ "${1:-}" = __memory ]; then
  # shellcheck source=bench/lib.sh
  . "$HERE/lib.sh"
  OX=$2; MEM=$3; N=${NENTRIES:-100000}; KP=5501; OP=5502; UP=5503; MP=5504
  CPU=${SERVER_CPU:-0}; LOAD_CPU=${LOAD_CPU:-1}
  mkdir -p "$MEM/data" "$MEM/knot/db" "$MEM/oxidns" "$MEM/unbound"
  # genzone.py's zone with N hosts (host00000..: 5 digits up to 99,999, then 6), one query per name
  python3 "$HERE/genzone.py" "$MEM/data" "$N" 1 >/dev/null || exit 1   # the copy next to this script
  awk '$1 ~ /^host[0-9]+$/ && $3 == "A" {print $1 ".example.com A"}' "$MEM/data/example.com.zone" >"$MEM/data/names.txt"
  N=$(wc -l <"$MEM/data/names.txt")
  PIDS=()
  stop_pid() {
    local p=$1 i
    kill -0 "$p" 2>/dev/null || return 0
    kill -TERM "$p" 2>/dev/null
    for i in $(seq 1 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$p" 2>/dev/null && kill -KILL "$p" 2>/dev/null
    wait "$p" 2>/dev/null
    PIDS=($(printf '%s\n' "${PIDS[@]}" | grep -vx "$p"))
  }
  cleanup() { local p; for p in "${PIDS[@]}"; do stop_pid "$p"; done; }
  trap cleanup EXIT
  trap 'cleanup; exit 130' INT TERM
  start() {  # NAME PORT CPU CMD... -> SPID; waits (bounded) for an SOA answer
    local name=$1 port=$2 cpu=$3 i; shift 3
    setsid taskset -c "$cpu" "$@" >"$MEM/$name/server.log" 2>&1 </dev/null &
    SPID=$!; PIDS+=("$SPID")
    for i in $(seq 1 300); do
      dig +noall +answer +time=1 +tries=1 -p "$port" @127.0.0.1 $ORIGIN SOA 2>/dev/null | grep -v '^;' | grep -qw SOA && return 0
      kill -0 "$SPID" 2>/dev/null || break
      sleep 0.2
    done
    echo "!! $name did not answer SOA on $port"; tail -5 "$MEM/$name/server.log"; return 1
  }
  kb() { awk -v f="$2:" '$1==f{print $2}' /proc/$1/status 2>/dev/null; }
  pass() {  # PORT TAG -> dnsperf over every name once; prints "completed noerror lost"
    timeout 120 taskset -c "$LOAD_CPU" dnsperf -s 127.0.0.1 -p "$1" -d "$MEM/data/names.txt" -n 1 -c 4 -q 100 -Q 20000 \
      >"$MEM/$2.txt" 2>&1
    awk '/Queries completed:/{c=$3} /Queries lost:/{l=$3} /Response codes:/{for(i=3;i<=NF;i++) if($i=="NOERROR") {n=$(i+1); gsub(/[^0-9]/,"",n)}}
         END{print c+0, n+0, l+0}' "$MEM/$2.txt"
  }
  cat >"$MEM/knot/knot.conf" <<EOF
server:
    rundir: "$MEM/knot"
    listen: 127.0.0.1@$KP
    udp-workers: 1
    tcp-workers: 1
    background-workers: 1
database:
    storage: "$MEM/knot/db"
log:
  - target: stderr
    any: warning
zone:
  - domain: $ORIGIN
    file: "$MEM/data/example.com.zone"
    zonefile-sync: -1
    zonefile-load: whole
    journal-content: none
EOF
  # oxidns: room for every answer; prometheus only to read coredns_cache_entries back
  printf '.:%s {\n    bind 127.0.0.1\n    prometheus 127.0.0.1:%s\n    cache {\n        success %s\n        denial 10000\n    }\n    forward . 127.0.0.1:%s\n}\n' \
    "$OP" "$MP" "$((2 * N))" "$KP" >"$MEM/oxidns/Corefile"
  # unbound as peers.sh runs it, with caches large enough not to evict (limits, not preallocated)
  unbound_conf "$MEM/unbound" "$UP" "$KP" 512m 1024m >"$MEM/unbound/unbound.conf"
  echo "== memory per cached answer: $N distinct names (hostNNNNN.$ORIGIN A), one dnsperf pass at 20k qps; loadavg $(cut -d' ' -f1-3 /proc/loadavg)"
  start knot "$KP" "$LOAD_CPU" knotd -c "$MEM/knot/knot.conf" || exit 1
  KPID=$SPID
  declare -A PID BEFORE AFTER HWM FILL
  for s in oxidns unbound; do
    case $s in
      oxidns) start oxidns "$OP" "$CPU" env TOKIO_WORKER_THREADS=1 "$OX" -quiet -conf "$MEM/oxidns/Corefile" || continue; port=$OP;;
      unbound) start unbound "$UP" "$CPU" unbound -d -p -c "$MEM/unbound/unbound.conf" || continue; port=$UP;;
    esac
    PID[$s]=$SPID
    sleep 1; BEFORE[$s]=$(kb "$SPID" VmRSS)
    FILL[$s]=$(pass "$port" "$s/fill")
    sleep 2; AFTER[$s]=$(kb "$SPID" VmRSS); HWM[$s]=$(kb "$SPID" VmHWM)
  done
  entries=$(curl -s --max-time 5 "http://127.0.0.1:$MP/metrics" | awk '/^coredns_cache_entries/ && /type="success"/{print $NF}')
  stop_pid "$KPID"   # upstream gone: the check pass below can only be answered from the cache
  for s in "${!PID[@]}"; do
    port=$OP; [ "$s" = unbound ] && port=$UP
    read -r c0 n0 l0 <<<"${FILL[$s]}"
    read -r c1 n1 l1 <<<"$(pass "$port" "$s/check")"
    per=$(awk -v a="${BEFORE[$s]}" -v b="${AFTER[$s]}" -v n="$N" 'BEGIN{printf "%.0f", (b-a)*1024/n}')
    printf '%-8s RSS %6.1f -> %6.1f MB (HWM %6.1f): +%6.1f MB for %d answers = %s B/answer; fill: %s NOERROR, %s lost; check (upstream stopped): %s/%d NOERROR%s\n' \
      "$s" "$(awk -v k="${BEFORE[$s]}" 'BEGIN{print k/1024}')" "$(awk -v k="${AFTER[$s]}" 'BEGIN{print k/1024}')" \
      "$(awk -v k="${HWM[$s]}" 'BEGIN{print k/1024}')" "$(awk -v a="${BEFORE[$s]}" -v b="${AFTER[$s]}" 'BEGIN{print (b-a)/1024}')" \
      "$N" "$per" "$n0" "$l0" "$n1" "$N" "$([ "$n1" = "$N" ] || echo '  !! not every name was cached')"
    [ "$s" = oxidns ] && echo "         oxidns coredns_cache_entries{type=success} after the fill: ${entries:-?}"
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$(date +%FT%T)" "$s" "$N" "${BEFORE[$s]}" "${AFTER[$s]}" "${HWM[$s]}" "$per" "$n1" >>"$MEM/memory.tsv"
  done
  if [ -n "${BEFORE[oxidns]:-}" ] && [ -n "${BEFORE[unbound]:-}" ]; then
    awk -v ob="${BEFORE[oxidns]}" -v oa="${AFTER[oxidns]}" -v ub="${BEFORE[unbound]}" -v ua="${AFTER[unbound]}" \
      'BEGIN{if (ua > ub) printf "memory per cached answer, oxidns / unbound: %.2fx\n", (oa-ob)/(ua-ub)}'
  fi
  exit 0
fi

# ------------------------------------------------------------------ main: build, peers.sh resolver
PEERBENCH=${PEERBENCH:-$(cd "$REPO/../shared/bench" && pwd)}
export DUR=${DUR:-10} REPS=${REPS:-2}
export WORK=${WORK:-/tmp/oxidns-cachebench}
export KNOT_PORT=${KNOT_PORT:-5301}   # peers.sh's knot upstream and unbound/dnsmasq use this too
OXIDNS_PORT=${OXIDNS_PORT:-5350}
OXIDNS_DEFAULT_PORT=${OXIDNS_DEFAULT_PORT:-5351}
DEFAULT_CACHE=${DEFAULT_CACHE:-1}
MEMORY=${MEMORY:-1}
BUILD=${BUILD:-1}
RESOLVERS=${RESOLVERS:-"unbound dnsmasq"}

for t in knotd unbound dnsmasq dnsperf dig taskset unshare python3 curl; do
  command -v "$t" >/dev/null || { echo "missing $t: run the apt part of '$PEERBENCH/peers.sh install' first"; exit 1; }
done

# shellcheck source=bench/lib.sh
. "$HERE/lib.sh"
build_and_snapshot cache

# EXTRA lines: NAME PORT COMMAND (run by `bash -c` by peers.sh, which exports PORT and RUN).
# The Corefiles are written here, with the ports filled in, and copied into $RUN for the record.
# The peers are sized to hold the whole working set (dnsmasq --cache-size=100000, unbound 64m/128m):
# oxidns gets the same room. Plain `cache` (9984 answers per cache) is run too as oxidns-default.
printf '.:%s {\n    bind 127.0.0.1\n    cache {\n        success 100000\n        denial 100000\n    }\n    forward . 127.0.0.1:%s\n}\n' \
  "$OXIDNS_PORT" "$KNOT_PORT" >"$TMP/Corefile.oxidns"
printf '.:%s {\n    bind 127.0.0.1\n    cache\n    forward . 127.0.0.1:%s\n}\n' \
  "$OXIDNS_DEFAULT_PORT" "$KNOT_PORT" >"$TMP/Corefile.oxidns-default"
run_line() {  # NAME PORT
  echo "$1 $2 cp $TMP/Corefile.$1 \"\$RUN/Corefile\" && TOKIO_WORKER_THREADS=1 exec $TMP/oxidns -quiet -conf \"\$RUN/Corefile\""
}
EXTRA=$(run_line oxidns "$OXIDNS_PORT")
NAMES="oxidns"
if [ "$DEFAULT_CACHE" = 1 ]; then
  EXTRA="$EXTRA
$(run_line oxidns-default "$OXIDNS_DEFAULT_PORT")"
  NAMES="$NAMES oxidns-default"
fi
export EXTRA
export RESOLVERS="$RESOLVERS $NAMES"
echo "== RESOLVERS=\"$RESOLVERS\"   DUR=$DUR REPS=$REPS   WORK=$WORK   upstream knot 127.0.0.1:$KNOT_PORT"
printf '%s\n' "$EXTRA" | sed 's/^/   EXTRA: /'

mkdir -p "$WORK"
RESULTS=$WORK/results.tsv
START=$( [ -f "$RESULTS" ] && wc -l <"$RESULTS" || echo 1 )   # rows after this line are ours
bash "$TMP/peers.sh" resolver
rc=$?
echo
for s in $NAMES; do echo "== Corefile of $s:"; sed 's/^/   /' "$TMP/Corefile.$s"; done
echo "== response codes of the measured runs (upstream stopped: anything but NOERROR/NXDOMAIN is a miss):"
for s in $RESOLVERS; do
  for f in "$WORK"/run/"$s"/dnsperf.cache.*.txt; do
    [ -f "$f" ] && printf '   %-15s rep %s: %s; %s\n' "$s" "$(basename "$f" .txt | awk -F. '{print $NF}')" \
      "$(grep -m1 'Response codes:' "$f" | sed 's/^ *Response codes: *//')" "$(grep -m1 'Queries lost:' "$f" | sed 's/^ *//')"
  done
done
echo "== load average after the cache-hit runs: $(cut -d' ' -f1-3 /proc/loadavg)"
python3 "$HERE/report.py" "$RESULTS" --skip "$START" --kind cache --base unbound --target 0.7
python3 "$HERE/report.py" "$RESULTS" --skip "$START" --kind cache --base best --target 0.7

if [ "$MEMORY" = 1 ]; then
  echo
  cp "$HERE/cache.sh" "$HERE/lib.sh" "$TMP/"   # copies, like peers.sh: bash reads scripts lazily
  mkdir -p "$WORK/memory"
  rm -rf "$WORK/memory/oxidns" "$WORK/memory/unbound" "$WORK/memory/knot"
  NENTRIES=${NENTRIES:-100000} timeout 900 unshare -n bash -c 'ip link set lo up && exec bash "$0" __memory "$1" "$2"' \
    "$TMP/cache.sh" "$TMP/oxidns" "$WORK/memory"
  echo "== load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
fi
exit $rc
