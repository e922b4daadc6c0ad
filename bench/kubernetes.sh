#!/usr/bin/env bash
# bench/kubernetes.sh — oxidns's kubernetes plugin on a large cluster (issue #6's benchmark).
#
# 1. Starts the test API server (plugins/kubernetes/examples/bench_api_server.rs, the same server the
#    tests use) with $SERVICES ClusterIP Services in $NAMESPACES namespaces, each with one
#    EndpointSlice of $PER_SERVICE ready endpoints (10,000 × 10 = 100,000 endpoints by default),
#    filled in as the EndpointSlice controller writes them (target Pods, nodes, zones).
# 2. Starts oxidns with `kubernetes cluster.local { endpoint URL }` and `ready`; time to first sync
#    is from the process start until /ready answers 200 (every resource listed once, kube-runtime
#    pages of 500). RSS (VmRSS) and peak RSS (VmHWM) are read from /proc after the sync.
# 3. CPU per query: dnsperf (pinned to CPU 1) sends A queries for every Service name, shuffled,
#    for $DUR seconds to oxidns (pinned to CPU 0, TOKIO_WORKER_THREADS=1); CPU µs per query is the
#    process's utime+stime over the run divided by the queries completed.
# 4. The same query run against oxidns's `file` plugin serving an equivalent zone (the same
#    Service A records, plus every endpoint as `<a-b-c-d>.<svc>.<ns>.svc.cluster.local` A).
#
# Usage:  bench/kubernetes.sh            (from anywhere)
# Environment (defaults): SERVICES=10000 PER_SERVICE=10 NAMESPACES=100 DUR=10 PORT=5360
#   READY_PORT=8186  BUILD=1 (BUILD=0 uses the existing release binaries)
# Everything runs on loopback; every process started here is stopped on exit.
set -uo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
SERVICES=${SERVICES:-10000} PER_SERVICE=${PER_SERVICE:-10} NAMESPACES=${NAMESPACES:-100}
DUR=${DUR:-10} PORT=${PORT:-5360} READY_PORT=${READY_PORT:-8186} BUILD=${BUILD:-1}

for t in dnsperf curl taskset python3; do
  command -v "$t" >/dev/null || { echo "missing $t (apt-get install -y dnsperf curl util-linux)"; exit 1; }
done

if [ "$BUILD" = 1 ]; then
  (cd "$REPO" && cargo build --release -p oxidns -p oxidns-plugin-kubernetes \
      --features oxidns-plugin-kubernetes/test-api-server --example bench_api_server) || exit 1
fi
OX=$REPO/target/release/oxidns
API_BIN=$REPO/target/release/examples/bench_api_server
[ -x "$OX" ] && [ -x "$API_BIN" ] || { echo "missing $OX or $API_BIN"; exit 1; }

TMP=$(mktemp -d /tmp/oxidns-k8sbench.XXXXXX)
PIDS=()
stop_pid() {
  local p=$1 i
  kill -0 "$p" 2>/dev/null || return 0
  kill -TERM "$p" 2>/dev/null
  for i in $(seq 1 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
  kill -0 "$p" 2>/dev/null && kill -KILL "$p" 2>/dev/null
  wait "$p" 2>/dev/null
}
cleanup() { local p; for p in "${PIDS[@]}"; do stop_pid "$p"; done; rm -rf "$TMP"; }
trap cleanup EXIT
trap 'exit 130' INT TERM

now_ms() { date +%s%3N; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
status_kib() { awk -v k="$2:" '$1 == k {print $2}' "/proc/$1/status"; }

echo "== $(date -u +%FT%TZ)  $(uname -srm)  nproc=$(nproc)  oxidns $(cd "$REPO" && git rev-parse --short HEAD)"
echo "== $SERVICES services × $PER_SERVICE endpoints in $NAMESPACES namespaces, DUR=$DUR"

# ---- 1. the API server
t0=$(now_ms)
taskset -c 1 "$API_BIN" "$SERVICES" "$PER_SERVICE" "$NAMESPACES" >"$TMP/api.url" 2>"$TMP/api.err" &
API_PID=$!; PIDS+=("$API_PID")
for _ in $(seq 1 1200); do [ -s "$TMP/api.url" ] && break; kill -0 "$API_PID" || break; sleep 0.1; done
URL=$(head -1 "$TMP/api.url")
[ -n "$URL" ] || { echo "API server did not start"; cat "$TMP/api.err"; exit 1; }
echo "API server $URL loaded in $(( $(now_ms) - t0 )) ms (RSS $(( $(status_kib "$API_PID" VmRSS) / 1024 )) MiB)"

# ---- the queries: every service name, shuffled
python3 - "$SERVICES" "$NAMESPACES" >"$TMP/queries" <<'EOF'
import random, sys
services, namespaces = int(sys.argv[1]), int(sys.argv[2])
names = [f"svc-{s}.ns-{s % namespaces}.svc.cluster.local A" for s in range(services)]
random.Random(6).shuffle(names)
print("\n".join(names))
EOF

# Runs dnsperf against PID on PORT; prints "QPS CPU_US_PER_QUERY LOST".
measure() {
  local pid=$1 before after out completed lost qps
  before=$(cpu_ticks "$pid")
  out=$(taskset -c 1 dnsperf -s 127.0.0.1 -p "$PORT" -d "$TMP/queries" -l "$DUR" -c 4 -q 200 2>&1)
  after=$(cpu_ticks "$pid")
  completed=$(awk '/Queries completed:/ {print $3}' <<<"$out")
  lost=$(awk '/Queries lost:/ {print $3}' <<<"$out")
  qps=$(awk '/Queries per second:/ {print $4}' <<<"$out")
  awk -v t=$((after - before)) -v n="$completed" -v hz="$(getconf CLK_TCK)" -v q="$qps" -v l="$lost" \
    'BEGIN {printf "%.0f %.2f %s\n", q, t * 1e6 / hz / n, l}'
}

# Waits (bounded) for an answer to QNAME on PORT.
answers() {
  local i
  for i in $(seq 1 600); do
    dig +short +time=1 +tries=1 -p "$PORT" @127.0.0.1 "$1" A 2>/dev/null | grep -q . && return 0
    sleep 0.1
  done
  return 1
}

# ---- 2. oxidns with kubernetes: time to first sync, memory
cat >"$TMP/Corefile.k8s" <<EOF
cluster.local:$PORT {
    bind 127.0.0.1
    ready 127.0.0.1:$READY_PORT
    kubernetes {
        endpoint $URL
        startup_timeout 300s
    }
}
EOF
t0=$(now_ms)
TOKIO_WORKER_THREADS=1 taskset -c 0 "$OX" -quiet -conf "$TMP/Corefile.k8s" >"$TMP/k8s.log" 2>&1 &
OX_PID=$!; PIDS+=("$OX_PID")
synced=""
for _ in $(seq 1 6000); do
  if curl -fs -o /dev/null "http://127.0.0.1:$READY_PORT/ready"; then synced=$(( $(now_ms) - t0 )); break; fi
  kill -0 "$OX_PID" 2>/dev/null || break
  sleep 0.02
done
[ -n "$synced" ] || { echo "oxidns never became ready"; cat "$TMP/k8s.log"; exit 1; }
sync_cpu_ms=$(( $(cpu_ticks "$OX_PID") * 1000 / $(getconf CLK_TCK) ))
last=$((SERVICES - 1))
answers "svc-$last.ns-$((last % NAMESPACES)).svc.cluster.local" || { echo "no answer after sync"; exit 1; }
sleep 1
rss=$(status_kib "$OX_PID" VmRSS); hwm=$(status_kib "$OX_PID" VmHWM)
echo "kubernetes: first sync ${synced} ms (oxidns CPU ${sync_cpu_ms} ms); RSS after sync $((rss / 1024)) MiB (peak $((hwm / 1024)) MiB)"
read -r qps cpu lost < <(measure "$OX_PID")
echo "kubernetes: $qps qps, ${cpu} µs CPU per query, $lost lost"
rss2=$(status_kib "$OX_PID" VmRSS)
echo "kubernetes: RSS after the query run $((rss2 / 1024)) MiB"
stop_pid "$OX_PID"

# ---- 4. oxidns with file on the equivalent zone
python3 - "$SERVICES" "$PER_SERVICE" "$NAMESPACES" >"$TMP/cluster.local.zone" <<'EOF'
import sys
services, per, namespaces = (int(a) for a in sys.argv[1:4])
def address(first, i):
    return f"{first}.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}"
out = ["$ORIGIN cluster.local.", "$TTL 5",
       "@ IN SOA ns.dns.cluster.local. hostmaster.cluster.local. 1 7200 1800 86400 5",
       "@ IN NS ns.dns.cluster.local.", "ns.dns IN A 127.0.0.1"]
endpoint = 0
for s in range(services):
    name = f"svc-{s}.ns-{s % namespaces}.svc"
    out.append(f"{name} IN A {address(10, s + 1)}")
    for _ in range(per):
        endpoint += 1
        ip = address(11, endpoint)
        out.append(f"{ip.replace('.', '-')}.{name} IN A {ip}")
print("\n".join(out))
EOF
cat >"$TMP/Corefile.file" <<EOF
cluster.local:$PORT {
    bind 127.0.0.1
    file $TMP/cluster.local.zone
}
EOF
t0=$(now_ms)
TOKIO_WORKER_THREADS=1 taskset -c 0 "$OX" -quiet -conf "$TMP/Corefile.file" >"$TMP/file.log" 2>&1 &
OX_PID=$!; PIDS+=("$OX_PID")
answers "svc-$last.ns-$((last % NAMESPACES)).svc.cluster.local" || { echo "file: no answer"; cat "$TMP/file.log"; exit 1; }
loaded=$(( $(now_ms) - t0 ))
sleep 1
rss=$(status_kib "$OX_PID" VmRSS)
echo "file: zone of $(grep -c ' IN A ' "$TMP/cluster.local.zone") A records loaded in ${loaded} ms; RSS $((rss / 1024)) MiB"
read -r qps cpu lost < <(measure "$OX_PID")
echo "file: $qps qps, ${cpu} µs CPU per query, $lost lost"
stop_pid "$OX_PID"
