#!/usr/bin/env bash
# bench/axfr.sh — AXFR of a 1,000,000-record zone out of oxidns and out of knotd (the same zone),
# into kdig, a knotd secondary and an oxidns secondary. Reports transfer time and peak RSS on
# both ends, and the oxidns/Knot ratios.
#
# Usage:  bench/axfr.sh
# Environment (defaults):
#   NRECORDS=1000000          zone size in RRs (bench/genbigzone.py, deterministic)
#   ZONE=$WORK/data/big-$NRECORDS.zone   generated when missing (genbigzone.py)
#   PRIMARIES="knot oxidns"   the sending servers, one at a time
#   RECEIVERS="kdig knot oxidns"   per primary: kdig AXFR (client), knotd and oxidns as secondaries
#   REPS=2                    transfers per (primary, receiver)
#   WORK=/tmp/oxidns-axfr     configs, logs, axfr.tsv
#   BUILD=0                   BUILD=1 runs `cargo build --release -p oxidns` first
#   OXIDNS=<repo>/target/release/oxidns (copied to $WORK/bin before use)
#   TIMEOUT=600               seconds a load or a transfer may take before it counts as failed
#   NETNS=1                   re-exec inside a private network namespace (only lo)
#
# What is measured, for each transfer:
#   * time: kdig's wall time for `kdig AXFR`; for a secondary, from its start until it answers
#     the zone's SOA (first SOA query to the primary, AXFR, building the zone, saving it to disk
#     — oxidns writes and fsyncs its copy before serving it; knotd: zonefile-sync 0).
#   * receiver peak RSS: "Maximum resident set size" of /usr/bin/time -v (the process is stopped
#     with SIGTERM once it serves the zone).
#   * primary peak RSS: its VmHWM, reset to its current RSS just before each transfer by writing
#     5 to /proc/PID/clear_refs; reported beside its RSS before the transfer.
# The whole zone must arrive: kdig's output must hold NRECORDS+1 records (the SOA twice), and a
# secondary must answer the last owner of the zone file.
# The primary is pinned to CPU 0 and the receiver to CPU 1 (taskset); knotd: 1 UDP, 1 TCP and
# 1 background worker; oxidns: TOKIO_WORKER_THREADS=1. Only processes started here are stopped,
# by PID.
set -uo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
NRECORDS=${NRECORDS:-1000000}
PRIMARIES=${PRIMARIES:-"knot oxidns"}
RECEIVERS=${RECEIVERS:-"kdig knot oxidns"}
REPS=${REPS:-2}
WORK=${WORK:-/tmp/oxidns-axfr}
BUILD=${BUILD:-0}
OXIDNS_SRC=${OXIDNS:-$REPO/target/release/oxidns}
TIMEOUT=${TIMEOUT:-600}
NETNS=${NETNS:-1}
PCPU=${PRIMARY_CPU:-0}; RCPU=${RECEIVER_CPU:-1}
ORIGIN=example.com
ZONE=${ZONE:-$WORK/data/big-$NRECORDS.zone}

for t in knotd kdig dig taskset unshare python3 /usr/bin/time; do
  command -v "$t" >/dev/null || { echo "missing $t"; exit 1; }
done

if [ "$NETNS" = 1 ] && [ -z "${AXFR_IN_NETNS:-}" ]; then
  if [ "$BUILD" = 1 ]; then
    (cd "$REPO" && cargo build --release -p oxidns) || { echo "!! build failed"; exit 1; }
  fi
  export BUILD=0
  exec env AXFR_IN_NETNS=1 unshare -n bash -c 'ip link set lo up && exec bash "$0"' "$0"
fi

mkdir -p "$WORK/data" "$WORK/bin" "$WORK/run"
[ -f "$ZONE" ] || python3 "$HERE/genbigzone.py" "$(dirname "$ZONE")" "$NRECORDS" || exit 1
cp "$OXIDNS_SRC" "$WORK/bin/oxidns" || exit 1   # snapshot: a concurrent rebuild can't swap it
# The last record of the file (owner and type), asked of each secondary: it came last.
read -r LAST LAST_TYPE < <(awk '!/^[$;]/ && NF {o=$1; for (i=2; i<=NF; i++) if ($i !~ /^[0-9]+$/ && $i !~ /^(IN|CH|HS|CS)$/) {t=$i; break}} END{print o, t}' "$ZONE")
case $LAST in *.) ;; *) LAST=$LAST.$ORIGIN ;; esac
TSV=$WORK/axfr.tsv
[ -f "$TSV" ] || printf 'date\tprimary\treceiver\trep\tsecs\trecv_maxrss_kb\tprim_rss_kb\tprim_hwm_kb\tcomplete\tload1\n' >"$TSV"
START=$(wc -l <"$TSV")

PIDS=()
stop_pid() {
  local p=$1 i
  kill -0 "$p" 2>/dev/null || { wait "$p" 2>/dev/null; return 0; }
  kill -TERM "$p" 2>/dev/null
  for i in $(seq 1 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
  kill -0 "$p" 2>/dev/null && kill -KILL "$p" 2>/dev/null
  wait "$p" 2>/dev/null
}
cleanup() { local p; for p in "${PIDS[@]}"; do stop_pid "$p"; done; }
trap cleanup EXIT
trap 'cleanup; exit 130' INT TERM

knot_conf() {  # RUN PORT ZONE-LINES
  cat <<EOF
server:
    rundir: "$1"
    listen: 127.0.0.1@$2
    udp-workers: 1
    tcp-workers: 1
    background-workers: 1
database:
    storage: "$1/db"
log:
  - target: stderr
    any: warning
$3
EOF
}

primary_cmd() {  # NAME -> PORT, CMD, RUN
  local s=$1; RUN=$WORK/run/primary-$s; rm -rf "$RUN"; mkdir -p "$RUN/db"
  case $s in
  knot)
    PORT=5411
    knot_conf "$RUN" $PORT "acl:
  - id: local
    address: 127.0.0.1
    action: transfer
zone:
  - domain: $ORIGIN
    file: \"$ZONE\"
    zonefile-sync: -1
    zonefile-load: whole
    journal-content: none
    acl: local" >"$RUN/knot.conf"
    CMD=(knotd -c "$RUN/knot.conf");;
  oxidns)
    PORT=5412
    printf '%s:%s {\n    bind 127.0.0.1\n    file %s\n    transfer {\n        to *\n        journal %s\n    }\n}\n' \
      "$ORIGIN" "$PORT" "$ZONE" "$RUN" >"$RUN/Corefile"
    CMD=(env TOKIO_WORKER_THREADS=1 "$WORK/bin/oxidns" -quiet -conf "$RUN/Corefile");;
  *) echo "unknown primary $s"; return 1;;
  esac
}

secondary_cmd() {  # NAME PRIMARY_PORT -> SPORT, SCMD, SRUN
  local s=$1 pport=$2; SRUN=$WORK/run/secondary-$s; rm -rf "$SRUN"; mkdir -p "$SRUN/db"
  case $s in
  knot)
    SPORT=5421
    knot_conf "$SRUN" $SPORT "remote:
  - id: primary
    address: 127.0.0.1@$pport
zone:
  - domain: $ORIGIN
    file: \"$SRUN/$ORIGIN.zone\"
    master: primary
    zonefile-sync: 0" >"$SRUN/knot.conf"
    SCMD=(knotd -c "$SRUN/knot.conf");;
  oxidns)
    SPORT=5422
    printf '%s:%s {\n    bind 127.0.0.1\n    secondary {\n        transfer from 127.0.0.1:%s\n        directory %s\n    }\n}\n' \
      "$ORIGIN" "$SPORT" "$pport" "$SRUN/zones" >"$SRUN/Corefile"
    SCMD=(env TOKIO_WORKER_THREADS=1 "$WORK/bin/oxidns" -quiet -conf "$SRUN/Corefile");;
  *) echo "unknown secondary $s"; return 1;;
  esac
}

answers() {  # PORT NAME TYPE
  dig +norec +noall +answer +time=1 +tries=1 -p "$1" @127.0.0.1 "$2" "$3" 2>/dev/null | grep -v '^;' | grep -qw "$3"
}
wait_answers() {  # PID PORT NAME TYPE: until it answers (0) or dies or times out (1)
  local deadline=$(( $(date +%s) + TIMEOUT ))
  while [ "$(date +%s)" -lt "$deadline" ]; do
    answers "$2" "$3" "$4" && return 0
    kill -0 "$1" 2>/dev/null || return 1
    sleep 0.05
  done
  return 1
}
status_kb() { awk -v f="$2:" '$1==f{print $2}' /proc/$1/status 2>/dev/null; }
maxrss_kb() { awk -F': ' '/Maximum resident set size/{print $2}' "$1" 2>/dev/null; }
mb() { awk -v k="${1:-0}" 'BEGIN{printf "%.1f", k/1024}'; }
now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%.2f", b-a}'; }

echo "== $(date -u +%FT%TZ)  $(uname -srm)  nproc=$(nproc)  loadavg: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "== zone $ZONE: $(grep -vc '^\$' "$ZONE") RRs, $(du -h "$ZONE" | cut -f1); last record $LAST $LAST_TYPE"
echo "== knotd $(knotd --version | awk '{print $NF}'), kdig $(kdig --version | awk '{print $NF}'), oxidns $("$WORK/bin/oxidns" -version | head -1): $OXIDNS_SRC built $(date -u -r "$OXIDNS_SRC" +%FT%TZ), sha256 $(sha256sum "$WORK/bin/oxidns" | cut -c1-12) (repo HEAD now $(cd "$REPO" && git rev-parse --short HEAD 2>/dev/null))"

for p in $PRIMARIES; do
  primary_cmd "$p" || continue
  setsid taskset -c "$PCPU" "${CMD[@]}" >"$RUN/server.log" 2>&1 </dev/null &
  ppid=$!; PIDS+=("$ppid")
  t0=$(now)
  if ! wait_answers "$ppid" "$PORT" "$ORIGIN" SOA; then
    echo "!! primary $p did not serve the zone; log:"; tail -20 "$RUN/server.log"; stop_pid "$ppid"; continue
  fi
  echo "primary $p: serving after $(secs "$t0" "$(now)") s, RSS $(mb "$(status_kb "$ppid" VmRSS)") MB"
  sleep 2
  for r in $RECEIVERS; do
    for n in $(seq 1 "$REPS"); do
      load1=$(cut -d' ' -f1 /proc/loadavg)
      prss=$(status_kb "$ppid" VmRSS)
      echo 5 >"/proc/$ppid/clear_refs" 2>/dev/null || echo "!! cannot reset the primary's VmHWM"
      TIMES=$WORK/run/time-$p-$r-$n.txt
      complete=no
      case $r in
      kdig)
        OUT=$WORK/run/kdig.out
        t0=$(now)
        timeout "$TIMEOUT" /usr/bin/time -v -o "$TIMES" taskset -c "$RCPU" \
          kdig -p "$PORT" @127.0.0.1 "$ORIGIN" AXFR +nocomments +nostats >"$OUT" 2>"$OUT.err"
        t1=$(now)
        got=$(grep -vc -e '^;' -e '^$' "$OUT")
        [ "$got" = $((NRECORDS + 1)) ] && complete=yes || echo "!! kdig got $got records"
        rm -f "$OUT";;
      knot|oxidns)
        secondary_cmd "$r" "$PORT" || continue
        t0=$(now)
        /usr/bin/time -v -o "$TIMES" taskset -c "$RCPU" "${SCMD[@]}" >"$SRUN/server.log" 2>&1 </dev/null &
        tpid=$!; PIDS+=("$tpid")
        sleep 0.05
        spid=$(cat "/proc/$tpid/task/$tpid/children" 2>/dev/null | awk '{print $1}')
        [ -n "$spid" ] && PIDS+=("$spid")
        if wait_answers "$tpid" "$SPORT" "$ORIGIN" SOA; then
          t1=$(now)
          answers "$SPORT" "$LAST" "$LAST_TYPE" && complete=yes || echo "!! secondary $r does not answer $LAST"
        else
          t1=$(now); echo "!! secondary $r never served the zone; log:"; tail -20 "$SRUN/server.log"
        fi
        [ -n "$spid" ] && stop_pid "$spid"
        stop_pid "$tpid";;
      esac
      phwm=$(status_kb "$ppid" VmHWM)
      s=$(secs "$t0" "$t1"); rss=$(maxrss_kb "$TIMES")
      printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$(date +%FT%T)" "$p" "$r" "$n" "$s" "$rss" "$prss" "$phwm" "$complete" "$load1" >>"$TSV"
      printf '%-6s -> %-6s %d: %6.2f s; receiver peak %7s MB; primary %7s MB before, peak %7s MB; complete %s; load1 %s\n' \
        "$p" "$r" "$n" "$s" "$(mb "$rss")" "$(mb "$prss")" "$(mb "$phwm")" "$complete" "$load1"
    done
  done
  stop_pid "$ppid"
done

echo "== load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
python3 - "$TSV" "$START" <<'EOF'
import statistics, sys
lines = open(sys.argv[1]).read().splitlines()
hdr = lines[0].split("\t")
rows = [dict(zip(hdr, l.split("\t"))) for l in lines[int(sys.argv[2]):] if l]
by = {}
for r in rows:
    by.setdefault((r["primary"], r["receiver"]), []).append(r)
def med(rs, k):
    v = [float(r[k]) for r in rs if r[k]]
    return statistics.median(v) if v else float("nan")
st = {}
print(f"{'primary':8} {'receiver':8} {'n':>2} {'secs':>6} {'[min-max]':>13} {'recv_MB':>8} {'prim_MB':>8} {'prim_peak_MB':>12} complete")
for (p, r), rs in by.items():
    t = dict(secs=med(rs, "secs"), recv=med(rs, "recv_maxrss_kb") / 1024, prss=med(rs, "prim_rss_kb") / 1024,
             phwm=med(rs, "prim_hwm_kb") / 1024, ok=all(x["complete"] == "yes" for x in rs))
    st[(p, r)] = t
    lo, hi = min(float(x["secs"]) for x in rs), max(float(x["secs"]) for x in rs)
    print(f"{p:8} {r:8} {len(rs):2d} {t['secs']:6.2f} {'[%.2f-%.2f]' % (lo, hi):>13} {t['recv']:8.1f} {t['prss']:8.1f} {t['phwm']:12.1f} {'yes' if t['ok'] else 'NO'}")
print("sending (oxidns primary / knot primary, same receiver): time, primary peak RSS, primary growth during the transfer")
for r in sorted({r for _, r in st}):
    if ("knot", r) in st and ("oxidns", r) in st:
        k, o = st[("knot", r)], st[("oxidns", r)]
        grow_k, grow_o = k["phwm"] - k["prss"], o["phwm"] - o["prss"]
        print(f"  to {r:7}: time {o['secs'] / k['secs']:.2f}x, peak {o['phwm'] / k['phwm']:.2f}x, "
              f"growth {grow_o:.1f} MB vs {grow_k:.1f} MB")
print("receiving (oxidns secondary / knot secondary, same primary): time, receiver peak RSS")
for p in sorted({p for p, _ in st}):
    if (p, "knot") in st and (p, "oxidns") in st:
        k, o = st[(p, "knot")], st[(p, "oxidns")]
        print(f"  from {p:7}: time {o['secs'] / k['secs']:.2f}x, peak RSS {o['recv'] / k['recv']:.2f}x")
EOF
