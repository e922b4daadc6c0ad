# bench/lib.sh — what the scripts that run oxidns and knotd themselves (instructions.sh,
# latency.sh) share. Sourced, not run. Expects REPO and OUT to be set.

ZONE=/tmp/oxidns-bench/data/example.com.zone
QFILE=/tmp/oxidns-bench/data/queries.txt

# The peer benchmark's zone and queries, generated once with ../shared/bench/genzone.py.
ensure_peer_data() {
  [ -f "$ZONE" ] && return 0
  mkdir -p /tmp/oxidns-bench/data && python3 "$REPO/../shared/bench/genzone.py" /tmp/oxidns-bench/data
}

# The server under measurement; stop_server ends only that process.
PID=""
stop_server() {
  [ -n "$PID" ] || return 0
  kill -TERM "$PID" 2>/dev/null
  local i; for i in $(seq 1 100); do kill -0 "$PID" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$PID" 2>/dev/null; wait "$PID" 2>/dev/null; PID=""
}

# wait_until_answering NAME PORT TRIES PAUSE: until the server answers example.com SOA; after
# TRIES tries (or if it died) prints its log's tail, stops it and fails.
wait_until_answering() {
  local name=$1 port=$2 tries=$3 pause=$4 i
  for i in $(seq 1 "$tries"); do
    dig +noall +comments +time=2 +tries=1 -p "$port" @127.0.0.1 example.com SOA 2>/dev/null \
      | grep -q 'status: NOERROR' && return 0
    kill -0 "$PID" 2>/dev/null || break; sleep "$pause"
  done
  echo "$name did not come up"; tail -5 "$OUT/$name.log"; stop_server; return 1
}

# write_configs OXIDNS_PORT KNOT_PORT: $OUT/Corefile and $OUT/knot/knot.conf, both serving the
# peer zone on 127.0.0.1 with one worker (Knot as peers.sh runs it).
write_configs() {
  printf 'example.com:%s {\n    bind 127.0.0.1\n    file %s\n}\n' "$1" "$ZONE" >"$OUT/Corefile"
  mkdir -p "$OUT/knot/db"
  cat >"$OUT/knot/knot.conf" <<KNOT
server:
    rundir: "$OUT/knot"
    listen: 127.0.0.1@$2
    udp-workers: 1
    tcp-workers: 1
    background-workers: 1
database:
    storage: "$OUT/knot/db"
log:
  - target: stderr
    any: warning
zone:
  - domain: example.com
    file: "$ZONE"
    zonefile-sync: -1
    zonefile-load: whole
    journal-content: none
KNOT
}
