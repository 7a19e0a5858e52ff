#!/usr/bin/env bash
# Client-compatibility suite: real Kafka clients against a real `strom serve`.
#
#   compat/run.sh                 install (compat/install.sh), build, start the broker, run every
#                                 compat/test_* script, stop the broker, summarise
#   compat/run.sh kcat            only the scripts whose name contains "kcat"
#
# Environment:
#   STROM_COMPAT_PROFILE=debug|release   cargo profile of the broker (default: debug, see below)
#   STROM_COMPAT_BIN=path                use this strom binary, skip the build
#   COMPAT_VERBOSE=1                     print tracebacks for every failed Python check
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
BROKER_PID=
# shellcheck disable=SC2317  # called by the EXIT trap
cleanup() {
    if [[ -n $BROKER_PID ]] && kill -0 "$BROKER_PID" 2>/dev/null; then
        kill -TERM "$BROKER_PID" 2>/dev/null
        sleep 2
        kill -KILL "$BROKER_PID" 2>/dev/null
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
    "$VENV_PYTHON" -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])'
}

# start_broker PORT: starts strom in the background; returns 0 once the port accepts connections.
start_broker() {
    local port=$1 i
    # STROM_* variables of the caller must not change what the broker under test does.
    # shellcheck disable=SC2046  # one "-u NAME" pair per variable
    env $(compgen -e | grep '^STROM_' | sed 's/^/-u /') \
        "$BIN" serve \
        --data-dir "$WORK/data" \
        --kafka-listen "127.0.0.1:$port" \
        --kinesis-listen "127.0.0.1:$KINESIS_PORT" \
        --advertised-host 127.0.0.1 --advertised-port "$port" \
        --auto-create-topics true --num-partitions 1 \
        --log-cleaner-backoff-ms 200 \
        --log info \
        >>"$BROKER_LOG" 2>&1 &
    BROKER_PID=$!
    for ((i = 0; i < 300; i++)); do
        if ! kill -0 "$BROKER_PID" 2>/dev/null; then
            wait "$BROKER_PID"
            echo "   broker exited with status $? before accepting connections"
            BROKER_PID=
            return 1
        fi
        if (: <>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            return 0
        fi
        sleep 0.1
    done
    echo "   broker did not accept connections on port $port within 30s"
    return 1
}

echo "== compat: starting $BIN serve (data in $WORK/data)"
started=
for attempt in 1 2 3; do
    PORT=$(free_port)
    KINESIS_PORT=$(free_port)
    if start_broker "$PORT"; then
        started=1
        break
    fi
    # The port may have been taken between free_port and the bind: try another one.
    [[ -n $BROKER_PID ]] && kill -KILL "$BROKER_PID" 2>/dev/null
    BROKER_PID=
    echo "   attempt $attempt failed; broker log:"
    tail -n 20 "$BROKER_LOG" | sed 's/^/   | /'
done
if [[ -z $started ]]; then
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

for script in "$HERE"/test_*; do
    name=$(basename "$script")
    [[ -n $FILTER && $name != *"$FILTER"* ]] && continue
    case $name in
        *.py) cmd=("$VENV_PYTHON" "$script") ;;
        *.sh) cmd=(bash "$script") ;;
        *) continue ;;
    esac
    echo
    out=$WORK/$name.out
    start=$SECONDS
    timeout --kill-after=10 "$SCRIPT_TIMEOUT" "${cmd[@]}" 2>&1 | tee "$out"
    rc=${PIPESTATUS[0]}
    echo "   ($name: exit $rc after $((SECONDS - start))s)"
    fails=0
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
            fail "$name" "timed out after ${SCRIPT_TIMEOUT}s"
        else
            fail "$name" "exited $rc without reporting a failed check (crashed?)"
        fi
    elif ((rc == 0 && fails > 0)); then
        fail "$name" "reported $fails failed check(s) but exited 0"
    fi
done

# --- stop the broker ---------------------------------------------------------------------------

echo
echo "== compat: stopping the broker"
if kill -0 "$BROKER_PID" 2>/dev/null; then
    pass broker/alive
    kill -TERM "$BROKER_PID"
    for ((i = 0; i < 300; i++)); do
        kill -0 "$BROKER_PID" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$BROKER_PID" 2>/dev/null; then
        kill -KILL "$BROKER_PID"
        wait "$BROKER_PID" 2>/dev/null
        fail broker/shutdown "still running 30s after SIGTERM (killed)"
    else
        wait "$BROKER_PID"
        status=$?
        if ((status != 0)); then
            fail broker/shutdown "exited with status $status after SIGTERM"
        elif ! grep -q "strom stopped cleanly" "$BROKER_LOG"; then
            fail broker/shutdown "exited 0 but did not print 'strom stopped cleanly'"
        else
            pass broker/shutdown
        fi
    fi
else
    wait "$BROKER_PID"
    fail broker/alive "the broker died during the run (status $?)"
fi
BROKER_PID=

if grep -q "panicked" "$BROKER_LOG"; then
    fail broker/no_panic "the broker log has a panic"
else
    pass broker/no_panic
fi
# Warnings are not failures, but they are how a client-visible problem shows up on the broker's
# side (for example a connection closed on an unsupported request): show them.
if grep -Eq ' (WARN|ERROR) |panicked' "$BROKER_LOG"; then
    echo "   broker warnings and errors (full log: $(wc -l <"$BROKER_LOG") lines):"
    grep -E ' (WARN|ERROR) |panicked' "$BROKER_LOG" | head -n 40 | sed 's/^/   | /'
fi
if ((FAILED)); then
    echo "   last lines of the broker log:"
    tail -n 30 "$BROKER_LOG" | sed 's/^/   | /'
fi

finish
