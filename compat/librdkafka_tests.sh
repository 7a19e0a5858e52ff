#!/usr/bin/env bash
# librdkafka's own integration tests (its tests/ directory: 0011 produce_batch, 0081 admin, 0092
# mixed msgver, basics) against a real `strom serve`.
#
#   compat/librdkafka_tests.sh              every check of compat/librdkafka_tests.txt
#   compat/librdkafka_tests.sh 0081         only the checks whose name contains "0081"
#
# librdkafka's source comes from the rdkafka-sys crate of Cargo.lock (it ships the whole tree,
# tests included); nothing of it is in this repository. The first run copies that tree to
# target/librdkafka-tests/<crate version>/, configures it without SSL/SASL/zstd/curl (only zlib,
# which Debian has), builds the static library and the test runner (about 3 minutes on two
# cores) and leaves a stamp; later runs reuse the runner.
#
# Then it starts its own broker (fresh data directory, free ports, compat/broker.sh), runs each
# check as its own test-runner process (bounded by LIBRDKAFKA_TEST_TIMEOUT), prints one line per
# check, PASS/FAIL/KNOWN-FAIL/XPASS/SKIP librdkafka/<check> (known failures: known_failures.txt,
# as for the other compat scripts), checks the broker stopped cleanly and without a panic, and
# exits 1 if anything not listed as known failed.
#
# Environment:
#   STROM_COMPAT_BIN=path          the strom binary (compat/run.sh passes its own); default:
#                                  `cargo build -p strom` and target/debug/strom
#   LIBRDKAFKA_TESTS_DIR=dir       build cache (default: <target dir>/librdkafka-tests)
#   LIBRDKAFKA_TEST_TIMEOUT=secs   per check (default 240)
#   LIBRDKAFKA_KAFKA_VERSION=x.y.z what TEST_KAFKA_VERSION the tests gate on (default 4.0.0)
#   LIBRDKAFKA_TEST_LOGS=dir       keep every check's full runner output and the broker log here
#   LIBRDKAFKA_TESTS_PLAN=file     run the checks of this file instead (same format as
#                                  compat/librdkafka_tests.txt), e.g. to try more of the suite
#   COMPAT_VERBOSE=1               print the whole runner output of a failed check, not its tail
set -uo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$HERE")
cd "$ROOT" || exit 1
FILTER=${1:-}
SUITE=librdkafka
PLAN=${LIBRDKAFKA_TESTS_PLAN:-$HERE/librdkafka_tests.txt}
TEST_TIMEOUT=${LIBRDKAFKA_TEST_TIMEOUT:-240}
KAFKA_VERSION=${LIBRDKAFKA_KAFKA_VERSION:-4.0.0}
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
declare -A COUNTS=()
FAILED=0

# How the tree is configured and built; part of the cache stamp, so changing it rebuilds.
CONFIGURE_FLAGS=(--disable-ssl --disable-gssapi --disable-curl --disable-zstd --disable-lz4-ext
    --disable-syslog)
BUILD_RECIPE="v1 configure ${CONFIGURE_FLAGS[*]}; make -C src librdkafka.a; make -C src-cpp librdkafka++.a; make -C tests test-runner"

count() { COUNTS[$1]=$((${COUNTS[$1]:-0} + 1)); }

known_reason() {
    [[ -f $HERE/known_failures.txt ]] || return 1
    awk -v name="$SUITE/$1" '$1 == name { $1 = ""; sub(/^ +/, ""); print; found = 1 } END { exit !found }' \
        "$HERE/known_failures.txt"
}

# result NAME OK WHY: prints the check's line, honouring known_failures.txt.
result() {
    local name=$1 ok=$2 why=$3 reason
    if ((ok)); then
        if reason=$(known_reason "$name"); then
            echo "XPASS $SUITE/$name: listed in compat/known_failures.txt but passed -- delete its line so a regression fails CI"
            count XPASS
        else
            echo "PASS $SUITE/$name${why:+ ($why)}"
            count PASS
        fi
    elif reason=$(known_reason "$name"); then
        echo "KNOWN-FAIL $SUITE/$name: $why [known: $reason]"
        count KNOWN-FAIL
    else
        echo "FAIL $SUITE/$name: $why"
        count FAIL
        FAILED=1
    fi
}

summary() {
    echo "$SUITE: pass=${COUNTS[PASS]:-0} fail=${COUNTS[FAIL]:-0} known-fail=${COUNTS[KNOWN-FAIL]:-0} xpass=${COUNTS[XPASS]:-0} skip=${COUNTS[SKIP]:-0}"
    exit "$FAILED"
}

# --- librdkafka's source and the cached build ----------------------------------------------------

crate_version() {
    awk '/^name = "rdkafka-sys"$/ { getline; gsub(/version = |"/, ""); print; exit }' "$ROOT/Cargo.lock"
}

crate_source() {
    local version=$1 dir
    for dir in "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/"rdkafka-sys-$version"/librdkafka; do
        [[ -x $dir/configure && -d $dir/tests ]] && { echo "$dir"; return 0; }
    done
    return 1
}

VERSION=$(crate_version)
if [[ -z $VERSION ]]; then
    result build 0 "no rdkafka-sys in Cargo.lock"
    summary
fi
if ! SOURCE=$(crate_source "$VERSION"); then
    echo "   rdkafka-sys $VERSION is not unpacked yet: cargo fetch --locked"
    cargo fetch --locked >/dev/null 2>&1
    if ! SOURCE=$(crate_source "$VERSION"); then
        result build 0 "cannot find the rdkafka-sys-$VERSION crate source (librdkafka/configure)"
        summary
    fi
fi

CACHE=${LIBRDKAFKA_TESTS_DIR:-$TARGET/librdkafka-tests}/$VERSION
TREE=$CACHE/librdkafka
RUNNER=$TREE/tests/test-runner
STAMP=$CACHE/built.stamp

echo "== $SUITE: librdkafka from rdkafka-sys $VERSION ($SOURCE)"
if [[ -x $RUNNER && -f $STAMP && $(cat "$STAMP") == "$BUILD_RECIPE" ]]; then
    echo "   test runner cached: $RUNNER"
else
    echo "   building the test runner in $TREE (first run for this version: a few minutes)"
    start=$SECONDS
    BUILD_LOG=$CACHE/build.log
    rm -rf "$TREE" "$STAMP"
    mkdir -p "$CACHE"
    : >"$BUILD_LOG"
    jobs=$(nproc 2>/dev/null || echo 2)
    if cp -r "$SOURCE" "$TREE" &&
        (cd "$TREE" && ./configure "${CONFIGURE_FLAGS[@]}") >>"$BUILD_LOG" 2>&1 &&
        make -j"$jobs" -C "$TREE/src" librdkafka.a >>"$BUILD_LOG" 2>&1 &&
        make -j"$jobs" -C "$TREE/src-cpp" librdkafka++.a >>"$BUILD_LOG" 2>&1 &&
        make -j"$jobs" -C "$TREE/tests" test-runner >>"$BUILD_LOG" 2>&1 &&
        [[ -x $RUNNER ]]; then
        echo "$BUILD_RECIPE" >"$STAMP"
        result build 1 "built in $((SECONDS - start))s"
    else
        tail -n 30 "$BUILD_LOG" | sed 's/^/     | /'
        result build 0 "building librdkafka's test runner failed (full log: $BUILD_LOG)"
        summary
    fi
fi

# --- the broker ---------------------------------------------------------------------------------

if [[ -n ${STROM_COMPAT_BIN:-} ]]; then
    BIN=$STROM_COMPAT_BIN
else
    echo "   cargo build -p strom"
    if ! cargo build --locked -p strom; then
        result strom_build 0 "cargo build -p strom failed"
        summary
    fi
    BIN=$TARGET/debug/strom
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/strom-librdkafka.XXXXXX")
BROKER_LOG=$WORK/broker.log
# librdkafka's consumer tests join groups again and again: no initial rebalance delay. Its
# default test scenario (tests/scenarios/default.json) is a broker that auto-creates topics with
# 4 partitions: its tests produce to partitions 1-3 of topics they never created.
BROKER_EXTRA=(--group-initial-rebalance-delay-ms 0)
BROKER_PARTITIONS=4
# shellcheck source=compat/broker.sh
source "$HERE/broker.sh"
# shellcheck disable=SC2317  # called by the EXIT trap
cleanup() {
    # A runner still going (this script was interrupted): timeout passes the TERM on to it.
    [[ -n ${RUN_PID:-} ]] && kill -TERM "$RUN_PID" 2>/dev/null
    broker_kill
    if [[ -n ${LIBRDKAFKA_TEST_LOGS:-} ]]; then
        mkdir -p "$LIBRDKAFKA_TEST_LOGS"
        cp "$WORK"/*.log "$LIBRDKAFKA_TEST_LOGS"/ 2>/dev/null
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "   starting $BIN serve (data in $WORK/data)"
if ! broker_start; then
    result broker_start 0 "the broker did not come up (3 attempts)"
    summary
fi
echo "   broker pid $BROKER_PID listening on 127.0.0.1:$PORT"

# Checks marked "sasl" in the plan run last, against the same data directory restarted with SASL
# PLAIN (the runner is built without OpenSSL, so SCRAM is out): their user is created now, while
# the listener needs no authentication. It is not a super user, so ACLs apply to it.
SASL_USER=librdkafka SASL_PASSWORD=librdkafka-secret
SASL_CHECKS=()
if ! STROM_SCRAM_PASSWORD=$SASL_PASSWORD "$BIN" user scram set "$SASL_USER" \
    -b "127.0.0.1:$PORT" >/dev/null; then
    echo "   could not create the SASL user: the sasl checks will fail"
fi

# The runner's configuration: the broker, and topic names unique to this run.
cat >"$WORK/test.conf" <<EOF
bootstrap.servers=127.0.0.1:$PORT
test.topic.random=true
# A debug broker on a shared two-core machine: give the runner's waits some slack.
test.timeout.multiplier=2
EOF

# Tests that need a topic config at creation (0052, 0077) run Kafka's bin/kafka-topics.sh from
# KAFKA_PATH against BROKERS. This stand-in takes the arguments they pass and creates the topic
# with `strom topic create`, that is with CreateTopics like any other client.
mkdir -p "$WORK/kafka/bin"
{
    echo '#!/usr/bin/env bash'
    echo '# kafka-topics.sh stand-in for librdkafka tests: --bootstrap-server B --create --topic T'
    echo '# [--partitions N] [--replication-factor R (ignored: one broker)] [--config K=V]...'
    echo 'set -euo pipefail'
    printf 'bin=%q\n' "$BIN"
    cat <<'SHIM'
bootstrap='' topic='' partitions=-1 create='' configs=()
while (($#)); do
    case $1 in
        --bootstrap-server) bootstrap=$2; shift 2 ;;
        --create) create=1; shift ;;
        --topic) topic=$2; shift 2 ;;
        --partitions) partitions=$2; shift 2 ;;
        --replication-factor) shift 2 ;;
        --config) configs+=(-c "$2"); shift 2 ;;
        *) echo "kafka-topics.sh stand-in: unsupported argument $1" >&2; exit 2 ;;
    esac
done
if [[ -z $create || -z $topic || -z $bootstrap ]]; then
    echo "kafka-topics.sh stand-in: only --create --topic T --bootstrap-server B is supported" >&2
    exit 2
fi
exec "$bin" topic create -b "$bootstrap" -p "$partitions" "${configs[@]}" "$topic"
SHIM
} >"$WORK/kafka/bin/kafka-topics.sh"
chmod +x "$WORK/kafka/bin/kafka-topics.sh"

# --- the checks ---------------------------------------------------------------------------------

# why_failed LOG: the first failure the runner reported, on one line.
why_failed() {
    local first
    first=$(grep -m1 -A1 '^### Test .* failed at ' "$1" | tr '\n' ' ' | sed -E 's/### Test "([^"]*)" failed at ([^ ]*) .*###/\1 at \2:/; s/ +/ /g')
    # A failed kafka-topics.sh stand-in: strom's own error says more than the command line.
    if grep -q '^strom: error:' "$1"; then
        first="$(grep -m1 '^strom: error:' "$1") <- $(cut -c1-120 <<<"$first")"
    fi
    echo "${first:-no failure reported by the runner}"
}

# run_check NAME TEST SUBTEST VERSION
run_check() {
    local name=$1 test=$2 sub=$3 version=$4 log rc start took sub_env=()
    log=$WORK/$(tr '/' '_' <<<"$name").log
    [[ $sub == - ]] && sub=
    [[ $version == - ]] && version=$KAFKA_VERSION
    [[ -n $sub ]] && sub_env=(SUBTESTS="$sub")
    echo "   checking $name: TESTS=$test${sub:+ SUBTESTS=$sub} TEST_KAFKA_VERSION=$version"
    start=$SECONDS
    # The runner's own files (test reports, stats) land in $WORK, never in the cached tree. It
    # runs in the background and is waited for, so that a signal to this script is handled at
    # once (cleanup stops the runner and the broker) instead of after the runner ends; the wait's
    # stderr is dropped because bash reports there a runner that aborted (a failed assertion).
    (
        cd "$WORK" || exit 1
        exec env -u CI RDKAFKA_TEST_CONF="$WORK/test.conf" TESTS="$test" "${sub_env[@]}" \
            KAFKA_PATH="$WORK/kafka" BROKERS="127.0.0.1:$PORT" \
            TEST_KAFKA_VERSION="$version" TEST_LEVEL=2 \
            timeout --kill-after=10 "$TEST_TIMEOUT" "$RUNNER" -Q -p1 </dev/null
    ) >"$log" 2>&1 &
    RUN_PID=$!
    wait "$RUN_PID" 2>/dev/null
    rc=$?
    RUN_PID=
    took=$((SECONDS - start))s
    # The runner colours its output.
    sed -i 's/\x1b\[[0-9;]*m//g' "$log"
    if ((rc == 124 || rc == 137)); then
        show_failure "$log"
        result "$name" 0 "timed out after ${TEST_TIMEOUT}s"
    elif ((rc != 0)); then
        show_failure "$log"
        result "$name" 0 "$(why_failed "$log") (exit $rc, $took)"
    elif grep -Eq "^\| $test[^ ]* +\| +SKIPPED" "$log"; then
        # The runner's summary table; a skip inside the test also shows "SKIPPING TEST: <why>".
        echo "SKIP $SUITE/$name: $(grep -m1 -o 'SKIPPING TEST: [^[]*\|Skipping [^[]*' "$log" || echo 'the test skipped itself')"
        count SKIP
    elif [[ -n $sub ]] && ! grep -Fq "[ $sub" "$log"; then
        # Nothing matched SUBTESTS: the check would pass without testing anything.
        result "$name" 0 "no sub-test matching '$sub' ran (renamed in this librdkafka version?)"
    elif [[ -n $sub ]] && ! grep -F "[ $sub" "$log" | grep -q ': PASS ('; then
        # Every matching sub-test skipped itself ("[ <sub-test>: SKIP: <why> ]").
        echo "SKIP $SUITE/$name: $(grep -F "[ $sub" "$log" | grep -m1 -o 'SKIP: .*' | sed 's/ *]$//')"
        count SKIP
    elif ! grep -q "Test $test[^ ]* PASSED" "$log"; then
        show_failure "$log"
        result "$name" 0 "the runner exited 0 without reporting the test as passed"
    else
        result "$name" 1 "$took"
    fi
}

show_failure() {
    if [[ -n ${COMPAT_VERBOSE:-} ]]; then
        sed 's/^/     | /' "$1"
    else
        grep -m6 -A1 '^### Test .* failed at ' "$1" | grep -v '^--$' | sed 's/^/     | /'
    fi
}

while read -r name test sub version mode _; do
    [[ -z $name || $name == \#* ]] && continue
    [[ -n $FILTER && $name != *"$FILTER"* ]] && continue
    if [[ ${mode:-} == sasl ]]; then
        SASL_CHECKS+=("$name $test ${sub:--} ${version:--}")
        continue
    fi
    if [[ ! $test =~ ^[0-9]{4}$ ]]; then
        # An empty TESTS= would run librdkafka's whole suite.
        result "$name" 0 "$PLAN: '$test' is not a four-digit test number"
        continue
    fi
    if ! kill -0 "$BROKER_PID" 2>/dev/null; then
        result "$name" 0 "the broker is not running"
        continue
    fi
    run_check "$name" "$test" "${sub:--}" "${version:--}"
done <"$PLAN"

# --- the checks that need SASL -----------------------------------------------------------------

if ((${#SASL_CHECKS[@]})); then
    echo "   restarting the broker with SASL PLAIN for ${#SASL_CHECKS[@]} check(s)"
    broker_stop || echo "   the broker did not stop cleanly: $BROKER_STOP_WHY"
    BROKER_SASL=1
    BROKER_EXTRA+=(--sasl-enabled-mechanisms PLAIN)
    if broker_start; then
        sed -i "s/^bootstrap.servers=.*/bootstrap.servers=127.0.0.1:$PORT/" "$WORK/test.conf"
        {
            echo "security.protocol=SASL_PLAINTEXT"
            echo "sasl.mechanism=PLAIN"
            echo "sasl.username=$SASL_USER"
            echo "sasl.password=$SASL_PASSWORD"
        } >>"$WORK/test.conf"
        for line in "${SASL_CHECKS[@]}"; do
            read -r name test sub version <<<"$line"
            run_check "$name" "$test" "$sub" "$version"
        done
    else
        for line in "${SASL_CHECKS[@]}"; do
            result "${line%% *}" 0 "the SASL broker did not come up"
        done
    fi
fi

# --- stop the broker ----------------------------------------------------------------------------

echo "   stopping the broker"
broker_stop
status=$?
why=$BROKER_STOP_WHY
if ((status == 0)); then
    result broker_shutdown 1 ""
else
    result broker_shutdown 0 "$why"
fi
if broker_log_report; then
    result broker_no_panic 1 ""
else
    result broker_no_panic 0 "the broker log has a panic"
fi
summary
