#!/usr/bin/env bash
# bench/zone_memory.sh — load a 1,000,000-record zone in oxidns (file plugin) and in knotd;
# report the load time (process start until it answers `example.com SOA`), RSS after load
# and the ratio oxidns / knot. Optionally a short dnsperf run on the big zone (CPU us/query).
#
# Usage:  bench/zone_memory.sh
# Environment (defaults):
#   NRECORDS=1000000        zone size in RRs (bench/genbigzone.py, deterministic)
#   SERVERS="knot oxidns"   run one after the other (never concurrently), in this order
#   LOADS=2                 how many times each server is started (load time/RSS per start)
#   PERF_DUR=5              seconds of dnsperf against each server after the last load (0 = skip)
#   WORK=/tmp/oxidns-zonemem   zone, configs, logs, zonemem.tsv
#   BUILD=0                 BUILD=1 runs `cargo build --release -p oxidns` first
#   OXIDNS=<repo>/target/release/oxidns (copied to $WORK/bin before use)
#   LOAD_TIMEOUT=600        seconds a server may take to answer SOA before it counts as failed
#   NETNS=1                 re-exec inside a private network namespace (only lo): nothing can leave
#                           loopback and ports cannot collide with other servers on the machine.
# Both servers are pinned to CPU 0 (taskset -c 0); knot: udp-workers 1, background-workers 1;
# oxidns: TOKIO_WORKER_THREADS=1. Only the processes started here are stopped, by PID.
set -uo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
NRECORDS=${NRECORDS:-1000000}
SERVERS=${SERVERS:-"knot oxidns"}
LOADS=${LOADS:-2}
PERF_DUR=${PERF_DUR:-5}
WORK=${WORK:-/tmp/oxidns-zonemem}
BUILD=${BUILD:-0}
OXIDNS_SRC=${OXIDNS:-$REPO/target/release/oxidns}
LOAD_TIMEOUT=${LOAD_TIMEOUT:-600}
NETNS=${NETNS:-1}
CPU=${SERVER_CPU:-0}; LOAD_CPU=${LOAD_CPU:-1}
ORIGIN=example.com

if [ "$NETNS" = 1 ] && [ -z "${ZONEMEM_IN_NETNS:-}" ]; then
  if [ "$BUILD" = 1 ]; then
    (cd "$REPO" && cargo build --release -p oxidns) || { echo "!! build failed"; exit 1; }
  fi
  export BUILD=0
  exec env ZONEMEM_IN_NETNS=1 unshare -n bash -c 'ip link set lo up && exec bash "$0"' "$0"
fi

mkdir -p "$WORK/data" "$WORK/bin" "$WORK/run"
ZONE=$WORK/data/big-$NRECORDS.zone; QFILE=$WORK/data/big-$NRECORDS.queries.txt
[ -f "$ZONE" ] && [ -f "$QFILE" ] || python3 "$HERE/genbigzone.py" "$WORK/data" "$NRECORDS" || exit 1
cp "$OXIDNS_SRC" "$WORK/bin/oxidns" || exit 1   # snapshot: a concurrent rebuild can't swap it
TSV=$WORK/zonemem.tsv
[ -f "$TSV" ] || printf 'date\tserver\tnrecords\tload\tload_s\trss_kb\thwm_kb\tpss_kb\tthreads\tload1\tperf_qps\tperf_us_q\tperf_lost_pct\n' >"$TSV"
START=$(wc -l <"$TSV")

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

server_cmd() {  # NAME -> PORT, CMD, RUN
  local s=$1; RUN=$WORK/run/$s; rm -rf "$RUN"; mkdir -p "$RUN"
  case $s in
  knot)
    PORT=5401; mkdir -p "$RUN/db"
    cat >"$RUN/knot.conf" <<EOF
server:
    rundir: "$RUN"
    listen: 127.0.0.1@$PORT
    udp-workers: 1
    tcp-workers: 1
    background-workers: 1
database:
    storage: "$RUN/db"
log:
  - target: stderr
    any: warning
zone:
  - domain: $ORIGIN
    file: "$ZONE"
    zonefile-sync: -1
    zonefile-load: whole
    journal-content: none
EOF
    CMD=(knotd -c "$RUN/knot.conf");;
  oxidns)
    PORT=5402
    printf '%s:%s {\n    bind 127.0.0.1\n    file %s\n}\n' "$ORIGIN" "$PORT" "$ZONE" >"$RUN/Corefile"
    CMD=(env TOKIO_WORKER_THREADS=1 "$WORK/bin/oxidns" -quiet -conf "$RUN/Corefile");;
  *) echo "unknown server $s"; return 1;;
  esac
}

answers_soa() {
  dig +noall +answer +time=1 +tries=1 -p "$1" @127.0.0.1 $ORIGIN SOA 2>/dev/null | grep -v '^;' | grep -qw SOA
}
status_kb() { awk -v f="$2:" '$1==f{print $2}' /proc/$1/status 2>/dev/null; }
pss_kb() { awk '$1=="Pss:"{print $2}' /proc/$1/smaps_rollup 2>/dev/null; }
mb() { awk -v k="${1:-0}" 'BEGIN{printf "%.1f", k/1024}'; }
cpu_ticks() { sed 's/.*) //' /proc/$1/stat 2>/dev/null | awk '{print $12+$13}'; }

echo "== $(date -u +%FT%TZ)  $(uname -srm)  nproc=$(nproc)  loadavg: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "== zone $ZONE: $(grep -vc '^\$' "$ZONE") RRs, $(du -h "$ZONE" | cut -f1)"
echo "== knotd $(knotd --version | awk '{print $NF}'), oxidns $("$WORK/bin/oxidns" -version | head -1): $OXIDNS_SRC built $(date -u -r "$OXIDNS_SRC" +%FT%TZ), sha256 $(sha256sum "$WORK/bin/oxidns" | cut -c1-12) (repo HEAD now $(cd "$REPO" && git rev-parse --short HEAD 2>/dev/null))"

for n in $(seq 1 "$LOADS"); do
  for s in $SERVERS; do
    server_cmd "$s" || continue
    load1=$(cut -d' ' -f1 /proc/loadavg)
    t0=$(date +%s.%N)
    setsid taskset -c "$CPU" "${CMD[@]}" >"$RUN/server.log" 2>&1 </dev/null &
    pid=$!; PIDS+=("$pid")
    ready=0; deadline=$(( $(date +%s) + LOAD_TIMEOUT ))
    while [ "$(date +%s)" -lt "$deadline" ]; do
      if answers_soa "$PORT"; then ready=1; break; fi
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    t1=$(date +%s.%N)
    if [ "$ready" != 1 ]; then
      echo "!! $s did not answer SOA within ${LOAD_TIMEOUT}s (or died); log:"; tail -20 "$RUN/server.log"
      stop_pid "$pid"; continue
    fi
    secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.2f", b-a}')
    sleep 2   # let background work settle (knot's zone-load finalisation, allocator)
    rss=$(status_kb "$pid" VmRSS); hwm=$(status_kb "$pid" VmHWM); pss=$(pss_kb "$pid")
    thr=$(ls /proc/$pid/task | wc -l)
    probes=""
    for q in "host0000001 A" "host0000002 AAAA" "nxdoesnotexist A" "alias000001 A" "foo.wild A" "x.child A"; do
      set -- $q
      st=$(dig +norec +time=2 +tries=1 -p "$PORT" @127.0.0.1 "$1.$ORIGIN" "$2" 2>&1 | awk '/status:/{gsub(",","");print $6}')
      probes="$probes $1/$2=$st"
    done
    pq=""; pus=""; pl=""
    if [ "$n" = "$LOADS" ] && [ "$PERF_DUR" != 0 ] && command -v dnsperf >/dev/null; then
      c0=$(cpu_ticks "$pid")
      timeout $((PERF_DUR + 30)) taskset -c "$LOAD_CPU" dnsperf -s 127.0.0.1 -p "$PORT" -d "$QFILE" \
        -c 4 -T 1 -q 100 -l "$PERF_DUR" >"$RUN/dnsperf.txt" 2>&1
      c1=$(cpu_ticks "$pid")
      read -r pq pus pl < <(awk -v ct=$((c1 - c0)) -v hz="$(getconf CLK_TCK)" '
        /Queries completed:/{n=$3} /Queries per second:/{q=$4} /Queries lost:/{gsub(/[()%]/,"",$4); l=$4}
        END{printf "%.0f %.1f %s\n", q, (n>0?ct*1e6/hz/n:0), l}' "$RUN/dnsperf.txt")
    fi
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$(date +%FT%T)" "$s" "$NRECORDS" "$n" \
      "$secs" "$rss" "$hwm" "$pss" "$thr" "$load1" "$pq" "$pus" "$pl" >>"$TSV"
    printf '%-7s load %d: answered SOA after %6.2f s; RSS %7s MB (HWM %7s, PSS %7s); %s threads; load1 %s%s\n' \
      "$s" "$n" "$secs" "$(mb "$rss")" "$(mb "$hwm")" "$(mb "$pss")" "$thr" "$load1" \
      "${pq:+; dnsperf ${PERF_DUR}s: $pq qps, $pus us/q, lost $pl%}"
    echo "        probes:$probes"
    stop_pid "$pid"
  done
done

echo "== load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
python3 - "$TSV" "$START" <<'EOF'
import statistics, sys
lines = open(sys.argv[1]).read().splitlines()
hdr = lines[0].split("\t")
rows = [dict(zip(hdr, l.split("\t"))) for l in lines[int(sys.argv[2]):] if l]
by = {}
for r in rows:
    by.setdefault(r["server"], []).append(r)
def med(rs, k):
    v = [float(r[k]) for r in rs if r[k]]
    return statistics.median(v) if v else float("nan")
st = {s: dict(load=med(rs, "load_s"), lmin=min(float(r["load_s"]) for r in rs), lmax=max(float(r["load_s"]) for r in rs),
              rss=med(rs, "rss_kb") / 1024, hwm=med(rs, "hwm_kb") / 1024, pss=med(rs, "pss_kb") / 1024,
              us=med(rs, "perf_us_q"), qps=med(rs, "perf_qps"), n=len(rs)) for s, rs in by.items()}
print(f"== {rows[0]['nrecords'] if rows else '?'}-record zone: medians over loads")
print(f"{'server':8} {'n':>2} {'load_s':>7} {'[min-max]':>13} {'RSS_MB':>8} {'HWM_MB':>8} {'PSS_MB':>8} {'us/q':>6} {'qps':>7}")
for s, t in st.items():
    print(f"{s:8} {t['n']:2d} {t['load']:7.2f} {'[%.2f-%.2f]' % (t['lmin'], t['lmax']):>13} {t['rss']:8.1f} {t['hwm']:8.1f} {t['pss']:8.1f} {t['us']:6.1f} {t['qps']:7.0f}")
if "knot" in st and "oxidns" in st:
    k, o = st["knot"], st["oxidns"]
    print(f"oxidns/knot: load time {o['load'] / k['load']:.2f}x, RSS {o['rss'] / k['rss']:.2f}x, "
          f"HWM {o['hwm'] / k['hwm']:.2f}x, us/q {o['us'] / k['us']:.2f}x")
    print(f"target: RSS of the zone <= knot's: {'meets' if o['rss'] <= k['rss'] else 'misses (by %.2fx)' % (o['rss'] / k['rss'])}")
EOF
