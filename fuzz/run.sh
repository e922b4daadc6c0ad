#!/usr/bin/env bash
# Builds and runs the fuzz targets: fuzz/run.sh [TARGET] [EXECUTIONS]
#
#   TARGET      one of query_parse response_parse corefile zonefile query_path tsig,
#               or "all" (the default): each in turn, one process each
#   EXECUTIONS  inputs to run per target (libFuzzer -runs=), default 10000000
#
# Environment:
#   FUZZ_MAX_TIME   stop a target after this many seconds even if EXECUTIONS
#                   have not run (libFuzzer -max_total_time=); 0 = no limit
#   FUZZ_SANITIZER  none (default: the code is safe Rust, and it runs about
#                   twice as fast) or address
#   FUZZ_CMIN=1     afterwards, merge what the run found into corpus/TARGET
#                   and minimise it with `cargo fuzz cmin`
#   FUZZ_ARGS       more libFuzzer flags, e.g. "-seed=1 -only_ascii=1"
#
# The committed seeds (corpus/TARGET) and regressions (regressions/TARGET) are
# read, never written: new inputs go to target/corpus/TARGET, crashes to
# artifacts/TARGET/. A target that finds a crash stops with its input named.
set -euo pipefail

cd "$(dirname "$0")"
# Absolute paths: the text targets change their working directory (common.rs).
here=$PWD
ALL=(query_parse response_parse corefile zonefile query_path tsig)
target=${1:-all}
runs=${2:-10000000}
sanitizer=${FUZZ_SANITIZER:-none}
max_time=${FUZZ_MAX_TIME:-0}

if [[ $target == all ]]; then
    targets=("${ALL[@]}")
elif [[ " ${ALL[*]} " == *" $target "* ]]; then
    targets=("$target")
else
    echo "unknown target '$target'; one of: ${ALL[*]} all" >&2
    exit 2
fi

if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi
# The toolchain is stable. With -s none cargo-fuzz passes only stable flags;
# the sanitizers need -Zsanitizer, which RUSTC_BOOTSTRAP allows on stable.
export RUSTC_BOOTSTRAP=1
# --debug-assertions: integer overflow and debug_assert! are bugs here too.
build_flags=(-s "$sanitizer" --debug-assertions)

if [[ ${#targets[@]} == 1 ]]; then
    cargo fuzz build "${build_flags[@]}" "${targets[0]}"
else
    cargo fuzz build "${build_flags[@]}"
fi

# A private network namespace with only a loopback interface: a fuzzed
# Corefile may name hosts (`bind some.host`), and resolving them must neither
# send anything off the machine nor wait on a resolver's timeouts.
isolate=()
if [[ $(id -u) == 0 ]] && command -v unshare >/dev/null; then
    isolate=(unshare -n)
else
    echo "warning: not root or no unshare: the targets run with the machine's network" >&2
fi

status=0
for t in "${targets[@]}"; do
    work=$here/target/corpus/$t
    mkdir -p "$work" "corpus/$t" "regressions/$t" "artifacts/$t"
    dict=()
    [[ -f dict/$t.dict ]] && dict=("-dict=$here/dict/$t.dict")
    echo "=== $t: $runs executions (max time ${max_time}s, sanitizer $sanitizer)"
    # shellcheck disable=SC2086
    if ! "${isolate[@]}" cargo fuzz run "${build_flags[@]}" "$t" "$work" "$here/corpus/$t" "$here/regressions/$t" -- \
        -runs="$runs" -max_total_time="$max_time" -timeout=10 -rss_limit_mb=2048 \
        -print_final_stats=1 "${dict[@]}" ${FUZZ_ARGS:-}; then
        echo "=== $t: FAILED (see artifacts/$t/)" >&2
        status=1
        continue
    fi
    if [[ ${FUZZ_CMIN:-0} == 1 ]]; then
        cp -n "$work"/* "corpus/$t"/ 2>/dev/null || true
        cargo fuzz cmin "${build_flags[@]}" "$t" "$here/corpus/$t"
    fi
done
exit $status
