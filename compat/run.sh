#!/usr/bin/env bash
# Client-compatibility suite: real Kafka clients against a real `strom serve`.
#
#   compat/run.sh                 install (compat/install.sh), build, start the broker, run every
#                                 compat/test_* script, stop the broker, summarise
#   compat/run.sh kcat            only the scripts whose name contains "kcat"
#
# Then compat/cluster.sh (real clients across three cluster-mode brokers over PostgreSQL and
# moto) and compat/librdkafka_tests.sh (librdkafka's own test suite, with a broker of its own; see
# compat/README.md) with the same binary, unless COMPAT_SKIP_LIBRDKAFKA_TESTS=1.
#
# Environment:
#   STROM_COMPAT_PROFILE=debug|release   cargo profile of the broker (default: debug, see below)
#   STROM_COMPAT_BIN=path                use this strom binary, skip the build
#   COMPAT_VERBOSE=1                     print tracebacks for every failed Python check
#   COMPAT_SKIP_LIBRDKAFKA_TESTS=1       do not run compat/librdkafka_tests.sh
#   COMPAT_SKIP_CLUSTER=1                do not run compat/cluster.sh (three cluster-mode brokers)
#   COMPAT_CLUSTER_TIMEOUT=secs          bound on compat/cluster.sh (default 420)
#   COMPAT_LIBRDKAFKA_TIMEOUT=secs       bound on that whole script (default 1800: a cold build)
#
# Why a debug build: .ci/run runs this right after `cargo test --workspace`, which has already
# compiled every dependency in the dev profile, so the debug broker costs seconds; a release
# build compiles the whole dependency tree again (minutes on two cores) for no gain in what
# these tests check (they move a few thousand small records).
#
# Each check prints PASS/FAIL/KNOWN-FAIL/XPASS/SKIP <suite>/<check> (see compat_check.py). This
# script adds its own checks (install, build, broker start, broker alive, clean shutdown, no
# panic), counts them all and ends with the line "N passed, N failed". Known failures (listed in
# compat/known_failures.txt) are printed loudly but do not fail the run. Exits 1 if anything failed.
set -uo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$HERE")
cd "$ROOT" || exit 1
FILTER=${1:-}

PASSED=0
FAILED=0
FAILURES=()
KNOWN=()
SKIPPED=()
XPASSED=()

pass() {
    echo "PASS $1"
    PASSED=$((PASSED + 1))
}

fail() {
    echo "FAIL $1: $2"
    FAILED=$((FAILED + 1))
    FAILURES+=("$1: $2")
}

finish() {
    echo
    echo "== compat summary"
    local line
    for line in "${XPASSED[@]}"; do echo "  XPASS (delete from compat/known_failures.txt): $line"; done
    for line in "${SKIPPED[@]}"; do echo "  skipped: $line"; done
    if ((${#KNOWN[@]})); then
        echo "  !!! ${#KNOWN[@]} KNOWN FAILURE(S), tolerated (compat/known_failures.txt) but real:"
        for line in "${KNOWN[@]}"; do echo "  !!! $line"; done
    fi
    for line in "${FAILURES[@]}"; do echo "  FAILED: $line"; done
    echo "$PASSED passed, $FAILED failed"
    ((FAILED == 0))
    exit
}

# --- install and build -------------------------------------------------------------------------

echo "== compat: install"
if "$HERE/install.sh"; then
    pass compat/install
else
    fail compat/install "compat/install.sh exited $?"
    finish
fi
VENV_PYTHON=$HERE/.venv/bin/python

if [[ -n ${STROM_COMPAT_BIN:-} ]]; then
    BIN=$STROM_COMPAT_BIN
    echo "== compat: using $BIN"
else
    PROFILE=${STROM_COMPAT_PROFILE:-debug}
    case $PROFILE in
        debug) BUILD_FLAGS=() ;;
        release) BUILD_FLAGS=(--release) ;;
        *) echo "STROM_COMPAT_PROFILE must be debug or release, not $PROFILE" >&2; exit 2 ;;
    esac
    BIN=${CARGO_TARGET_DIR:-$ROOT/target}/$PROFILE/strom
    echo "== compat: cargo build ${BUILD_FLAGS[*]} -p strom ($PROFILE profile)"
    start=$SECONDS
    if cargo build "${BUILD_FLAGS[@]}" --locked -p strom; then
        pass compat/build
        echo "   built in $((SECONDS - start))s: $BIN"
    else
        fail compat/build "cargo build -p strom failed"
        finish
    fi
fi

# --- start the broker --------------------------------------------------------------------------

WORK=$(mktemp -d "${TMPDIR:-/tmp}/strom-compat.XXXXXX")
BROKER_LOG=$WORK/broker.log
BROKER_PYTHON=$VENV_PYTHON
# shellcheck source=compat/broker.sh
source "$HERE/broker.sh"
# shellcheck disable=SC2317  # called by the EXIT trap
cleanup() {
    broker_kill
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "== compat: starting $BIN serve (data in $WORK/data)"
# The cleaner backs off 200 ms instead of 15 s, so the compaction checks see a clean soon.
BROKER_EXTRA=(--log-cleaner-backoff-ms 200)
if ! broker_start; then
    fail broker/start "the broker did not come up (3 attempts)"
    finish
fi
pass broker/start
echo "   broker pid $BROKER_PID listening on 127.0.0.1:$PORT"

# --- run the scripts ---------------------------------------------------------------------------

export COMPAT_BOOTSTRAP=127.0.0.1:$PORT
export COMPAT_STROM_BIN=$BIN
export COMPAT_KINESIS_ENDPOINT=http://127.0.0.1:$KINESIS_PORT
export PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
SCRIPT_TIMEOUT=${COMPAT_SCRIPT_TIMEOUT:-180}

# run_script NAME TIMEOUT CMD...: runs CMD, shows its output and counts its result lines.
run_script() {
    local name=$1 limit=$2 out rc start fails=0 line
    shift 2
    echo
    out=$WORK/$name.out
    start=$SECONDS
    timeout --kill-after=10 "$limit" "$@" 2>&1 | tee "$out"
    rc=${PIPESTATUS[0]}
    echo "   ($name: exit $rc after $((SECONDS - start))s)"
    while IFS= read -r line; do
        case $line in
            "PASS "* | "XPASS "*)
                PASSED=$((PASSED + 1))
                [[ $line == XPASS* ]] && XPASSED+=("${line#XPASS }")
                ;;
            "FAIL "*)
                FAILED=$((FAILED + 1))
                fails=$((fails + 1))
                FAILURES+=("${line#FAIL }")
                ;;
            "KNOWN-FAIL "*) KNOWN+=("${line#KNOWN-FAIL }") ;;
            "SKIP "*) SKIPPED+=("${line#SKIP }") ;;
        esac
    done <"$out"
    if ((rc != 0 && fails == 0)); then
        if ((rc == 124 || rc == 137)); then
            fail "$name" "timed out after ${limit}s"
        else
            fail "$name" "exited $rc without reporting a failed check (crashed?)"
        fi
    elif ((rc == 0 && fails > 0)); then
        fail "$name" "reported $fails failed check(s) but exited 0"
    fi
}

for script in "$HERE"/test_*; do
    name=$(basename "$script")
    [[ -n $FILTER && $name != *"$FILTER"* ]] && continue
    case $name in
        *.py) cmd=("$VENV_PYTHON" "$script") ;;
        *.sh) cmd=(bash "$script") ;;
        *) continue ;;
    esac
    run_script "$name" "$SCRIPT_TIMEOUT" "${cmd[@]}"
done

# --- stop the broker ---------------------------------------------------------------------------

echo
echo "== compat: stopping the broker"
alive=1
kill -0 "$BROKER_PID" 2>/dev/null || alive=
broker_stop
status=$?
why=$BROKER_STOP_WHY
if ((status == 1)); then
    fail broker/alive "$why"
else
    [[ -n $alive ]] && pass broker/alive
    if ((status == 0)); then
        pass broker/shutdown
    else
        fail broker/shutdown "$why"
    fi
fi

# Warnings are not failures, but they are shown (broker_log_report).
if broker_log_report; then
    pass broker/no_panic
else
    fail broker/no_panic "the broker log has a panic"
fi
if ((FAILED)); then
    echo "   last lines of the broker log:"
    tail -n 30 "$BROKER_LOG" | sed 's/^/   | /'
fi

# --- real clients across the brokers of a cluster -------------------------------------------------

# PostgreSQL + moto + three cluster-mode brokers of the binary built above (compat/cluster.sh),
# then confluent-kafka, kafka-python and kcat across them. COMPAT_SKIP_CLUSTER=1 leaves it out.
if [[ -z ${COMPAT_SKIP_CLUSTER:-} && (-z $FILTER || cluster.sh == *"$FILTER"*) ]]; then
    export COMPAT_VENV_PYTHON=$VENV_PYTHON
    run_script cluster.sh "${COMPAT_CLUSTER_TIMEOUT:-420}" bash "$HERE/cluster.sh"
fi

# --- librdkafka's own test suite -----------------------------------------------------------------

# It starts its own broker (a fresh data directory: its tests create and delete many topics and
# groups) with the binary built above, and builds librdkafka's test runner once per crate version
# (cached under target/librdkafka-tests/). COMPAT_SKIP_LIBRDKAFKA_TESTS=1 leaves it out.
if [[ -z ${COMPAT_SKIP_LIBRDKAFKA_TESTS:-} && (-z $FILTER || librdkafka_tests.sh == *"$FILTER"*) ]]; then
    STROM_COMPAT_BIN=$BIN run_script librdkafka_tests.sh "${COMPAT_LIBRDKAFKA_TIMEOUT:-1800}" \
        bash "$HERE/librdkafka_tests.sh"
fi

finish
