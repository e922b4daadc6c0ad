# bench/lib.sh — what the scripts that run oxidns and knotd themselves (instructions.sh,
# latency.sh) share. Sourced, not run. Expects REPO and OUT to be set.

ZONE=/tmp/oxidns-bench/data/example.com.zone
QFILE=/tmp/oxidns-bench/data/queries.txt

# The peer benchmark's zone and queries, generated once with ../shared/bench/genzone.py.
ensure_peer_data() {
  [ -f "$ZONE" ] && return 0
  mkdir -p /tmp/oxidns-bench/data && python3 "$REPO/../shared/bench/genzone.py" /tmp/oxidns-bench/data
}

# run_in_netns FLAG VAR...: builds oxidns (BUILD=1), makes the peer data, copies the binary
# into a fresh $OUT, and runs this script again in a private network namespace that has only lo,
# with FLAG=1 and the named variables (and OUT) exported; the script tests FLAG to know where
# it is.
run_in_netns() {
  local flag=$1; shift
  if [ "${BUILD:-1}" = 1 ]; then (cd "$REPO" && cargo build --release -p oxidns) || exit 1; fi
  ensure_peer_data || exit 1
  rm -rf "$OUT" && mkdir -p "$OUT" && cp "$REPO/target/release/oxidns" "$OUT/oxidns" || exit 1
  export "$flag"=1 OUT "$@"
  exec timeout 1800 unshare -n bash -c 'ip link set lo up && exec bash "$0"' "$0"
}

# The server under measurement is $PID; stop_server ends only that process.
stop_server() {
  [ -n "${PID:-}" ] || return 0
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

# build_and_snapshot KIND (auth.sh, cache.sh): with BUILD=1 builds target/release/oxidns, with
# bounded retries (another engineer may have a crate mid-edit); copies the binary and
# $PEERBENCH's peers.sh and genzone.py into a fresh $TMP (peers.sh must not run in place: bash
# reads it lazily, and a rebuild must not change a run), removed on exit; prints what was built.
build_and_snapshot() {
  if [ "${BUILD:-1}" = 1 ]; then
    local ok=0 attempt
    for attempt in 1 2 3 4 5; do
      if (cd "$REPO" && cargo build --release -p oxidns); then ok=1; break; fi
      echo "!! build failed (attempt $attempt/5); retrying in 60 s"; sleep 60
    done
    [ "$ok" = 1 ] || { echo "!! release build failed 5 times; giving up"; exit 1; }
  fi
  [ -x "$REPO/target/release/oxidns" ] || { echo "no $REPO/target/release/oxidns"; exit 1; }
  TMP=$(mktemp -d "/tmp/oxidns-$1.XXXXXX")
  trap 'rm -rf "$TMP"' EXIT
  cp "$REPO/target/release/oxidns" "$TMP/oxidns"
  cp "$PEERBENCH/peers.sh" "$PEERBENCH/genzone.py" "$TMP/"
  local rev
  rev=$(cd "$REPO" && git rev-parse --short HEAD 2>/dev/null)$(cd "$REPO" && git diff --quiet HEAD 2>/dev/null || echo "+dirty")
  echo "== oxidns $rev ($("$TMP/oxidns" -version | head -1)), built $(date -u -r "$REPO/target/release/oxidns" +%FT%TZ), sha256 $(sha256sum "$TMP/oxidns" | cut -c1-12), snapshot $TMP/oxidns"
  echo "== $(date -u +%FT%TZ)  $(uname -srm)  nproc=$(nproc)  loadavg: $(cut -d' ' -f1-3 /proc/loadavg)"
}

# unbound_conf DIR PORT UPSTREAM_PORT MSG_CACHE RRSET_CACHE: an unbound.conf on stdout for Unbound
# as peers.sh runs it (one thread, the iterator only, forwarding everything to 127.0.0.1 at
# UPSTREAM_PORT), listening on 127.0.0.1 at PORT, with its files in DIR.
unbound_conf() {
  cat <<EOF
server:
    interface: 127.0.0.1@$2
    port: $2
    num-threads: 1
    do-ip6: no
    do-not-query-localhost: no
    username: ""
    chroot: ""
    directory: "$1"
    pidfile: "$1/unbound.pid"
    use-syslog: no
    logfile: ""
    verbosity: 0
    access-control: 127.0.0.0/8 allow
    module-config: "iterator"
    qname-minimisation: no
    msg-cache-size: $4
    rrset-cache-size: $5
    so-reuseport: no
remote-control:
    control-enable: no
forward-zone:
    name: "."
    forward-addr: 127.0.0.1@$3
EOF
}
