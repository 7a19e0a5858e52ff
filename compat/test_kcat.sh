#!/usr/bin/env bash
# shellcheck disable=SC2317  # the check functions are called indirectly, through check()
# Strom against kcat, built on Debian's librdkafka (2.0.2 on Debian 12): the older librdkafka we
# must keep supporting.
#
# Covers: `kcat -L` metadata (plain and JSON), producing keyed lines (-K:) into an auto-created
# topic, consuming them back with -e and a format, consuming from an offset (-o 1) and the last
# record (-o -1), headers (-H / %h), every compression codec (-z), offset queries (-Q), and the
# idempotent producer (InitProducerId as librdkafka 2.0.2 sends it), and a compacted topic (created
# with `strom topic create`, $COMPAT_STROM_BIN, since kcat cannot set topic configs) read back as
# the latest value per key once the broker's cleaner ran.
#
# Run by compat/run.sh with COMPAT_BOOTSTRAP=host:port. Prints one PASS/FAIL/KNOWN-FAIL/XPASS line
# per check (see compat_check.py) and exits 1 if a check failed.
set -uo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
B=${COMPAT_BOOTSTRAP:-127.0.0.1:9092}
SUITE=kcat
RUN=$(od -An -N4 -tx4 /dev/urandom | tr -d ' \n')
TOPIC=compat-kcat-$RUN
KCAT=(kcat -b "$B" -q -m 15 -X socket.timeout.ms=15000)
FAILED=0
declare -A COUNTS=()

echo "== $SUITE against $B"
echo "   $(kcat -V 2>&1 | grep -m1 -o 'Version.*librdkafka [0-9.]*')"

known_reason() {
    [[ -f $HERE/known_failures.txt ]] || return 1
    awk -v name="$SUITE/$1" '$1 == name { $1 = ""; sub(/^ +/, ""); print; found = 1 } END { exit !found }' \
        "$HERE/known_failures.txt"
}

# check NAME DESCRIPTION FUNCTION [ARGS...]: runs FUNCTION; it passes if FUNCTION returns 0.
# FUNCTION says why it failed on stdout (its last line is quoted in the FAIL line).
check() {
    local name=$1 what=$2 out rc reason start took
    shift 2
    echo "   checking $name: $what"
    start=${EPOCHREALTIME/./}
    out=$("$@" 2>&1)
    rc=$?
    took=$(((${EPOCHREALTIME/./} - start) / 100000))
    took=$((took / 10)).$((took % 10))
    if ((rc == 0)); then
        if reason=$(known_reason "$name"); then
            echo "XPASS $SUITE/$name: listed in compat/known_failures.txt but passed (${took}s) -- delete its line so a regression fails CI"
            COUNTS[XPASS]=$((${COUNTS[XPASS]:-0} + 1))
        else
            echo "PASS $SUITE/$name (${took}s)"
            COUNTS[PASS]=$((${COUNTS[PASS]:-0} + 1))
        fi
    else
        # shellcheck disable=SC2001  # a prefix on every line, not one substitution
        [[ -n $out ]] && sed 's/^/     | /' <<<"$out"
        local why
        why=$(tail -n1 <<<"$out")
        if reason=$(known_reason "$name"); then
            echo "KNOWN-FAIL $SUITE/$name: ${why:-exit $rc} (${took}s) [known: $reason]"
            COUNTS[KNOWN-FAIL]=$((${COUNTS[KNOWN-FAIL]:-0} + 1))
        else
            echo "FAIL $SUITE/$name: ${why:-exit $rc} (${took}s)"
            COUNTS[FAIL]=$((${COUNTS[FAIL]:-0} + 1))
            FAILED=1
        fi
    fi
}

# same LABEL EXPECTED ACTUAL: compares two texts, prints a diff if they differ.
same() {
    if [[ $2 == "$3" ]]; then
        return 0
    fi
    diff <(printf '%s\n' "$2") <(printf '%s\n' "$3") | sed 's/^/  /'
    echo "$1: output differs from what was expected (diff above: < expected, > got)"
    return 1
}

EXPECTED_LINES=$'k1 hello 0\nk2 world 1\nk3 with spaces 2\nk4 4 3'

check_metadata_broker() {
    local out
    out=$("${KCAT[@]}" -L) || { echo "kcat -L exited $?"; return 1; }
    echo "$out"
    grep -q "^ 1 brokers:" <<<"$out" || { echo "kcat -L does not list exactly one broker"; return 1; }
    grep -q "broker [0-9]* at $B" <<<"$out" || { echo "kcat -L does not list the broker at $B"; return 1; }
}

check_produce_keyed() {
    # The topic does not exist yet: the broker auto-creates it (1 partition by default).
    printf 'k1:hello\nk2:world\nk3:with spaces\nk4:4\n' |
        "${KCAT[@]}" -P -t "$TOPIC" -K: -X acks=all || { echo "kcat -P exited $?"; return 1; }
}

check_metadata_topic() {
    local out json
    out=$("${KCAT[@]}" -L -t "$TOPIC") || { echo "kcat -L -t exited $?"; return 1; }
    echo "$out"
    grep -q "topic \"$TOPIC\" with 1 partitions:" <<<"$out" || { echo "topic not listed with 1 partition"; return 1; }
    grep -Eq "partition 0, leader [0-9]+, replicas: [0-9]+, isrs: [0-9]+" <<<"$out" ||
        { echo "partition 0 without leader/replicas/isrs"; return 1; }
    json=$("${KCAT[@]}" -L -J -t "$TOPIC") || { echo "kcat -L -J exited $?"; return 1; }
    python3 -c '
import json, sys
md = json.loads(sys.argv[2])
topic = next((t for t in md["topics"] if t["topic"] == sys.argv[1]), None)
assert topic is not None, f"topic missing from JSON metadata: {md}"
assert "error" not in topic, f"topic error in JSON metadata: {topic}"
assert [p["partition"] for p in topic["partitions"]] == [0], topic
assert len(md["brokers"]) == 1, md["brokers"]
' "$TOPIC" "$json"
}

check_consume_all() {
    local out
    out=$("${KCAT[@]}" -C -t "$TOPIC" -e -f '%k %s %o\n') || { echo "kcat -C exited $?"; return 1; }
    same "consume -e" "$EXPECTED_LINES" "$out"
}

check_consume_from_offset() {
    local out
    out=$("${KCAT[@]}" -C -t "$TOPIC" -o 1 -e -f '%k %s %o\n') || { echo "kcat -C -o 1 exited $?"; return 1; }
    same "consume -o 1" "$(tail -n +2 <<<"$EXPECTED_LINES")" "$out"
}

check_consume_last() {
    local out
    out=$("${KCAT[@]}" -C -t "$TOPIC" -o -1 -e -f '%k %s %o\n') || { echo "kcat -C -o -1 exited $?"; return 1; }
    same "consume -o -1" "k4 4 3" "$out"
}

check_query_offsets() {
    local out
    # -Q with -2 (beginning) and -1 (end): kcat prints "<topic> [<p>] offset <o>".
    out=$("${KCAT[@]}" -Q -t "$TOPIC:0:-2") || { echo "kcat -Q exited $?"; return 1; }
    same "query beginning" "$TOPIC [0] offset 0" "$out" || return 1
    out=$("${KCAT[@]}" -Q -t "$TOPIC:0:-1") || { echo "kcat -Q exited $?"; return 1; }
    same "query end" "$TOPIC [0] offset 4" "$out"
}

check_headers() {
    local topic=$TOPIC-headers out
    printf 'one\ntwo\n' | "${KCAT[@]}" -P -t "$topic" -H trace=abc -H n=2 ||
        { echo "kcat -P -H exited $?"; return 1; }
    out=$("${KCAT[@]}" -C -t "$topic" -e -f '%s|%h|%o\n') || { echo "kcat -C exited $?"; return 1; }
    same "headers" $'one|trace=abc,n=2|0\ntwo|trace=abc,n=2|1' "$out"
}

check_compression() {
    local codec=$1 topic=$TOPIC-$1 expected out i
    expected=$(for i in $(seq 0 99); do echo "k$i $codec-$i-compressible-compressible-compressible $i"; done)
    # A long linger puts the 100 lines into one batch, so the broker sees one compressed batch.
    awk '{ print $1 ":" $2 }' <<<"$expected" |
        "${KCAT[@]}" -P -t "$topic" -K: -z "$codec" -X linger.ms=100 -X acks=all ||
        { echo "kcat -P -z $codec exited $?"; return 1; }
    out=$("${KCAT[@]}" -C -t "$topic" -e -f '%k %s %o\n') || { echo "kcat -C exited $?"; return 1; }
    same "compression $codec" "$expected" "$out"
}

check_idempotent() {
    local topic=$TOPIC-idempotent out
    printf 'a:1\nb:2\nc:3\n' |
        "${KCAT[@]}" -P -t "$topic" -K: -X enable.idempotence=true -X acks=all ||
        { echo "kcat -P -X enable.idempotence=true exited $?"; return 1; }
    out=$("${KCAT[@]}" -C -t "$topic" -e -f '%k %s %o\n') || { echo "kcat -C exited $?"; return 1; }
    same "idempotent" $'a 1 0\nb 2 1\nc 3 2' "$out"
}

check_compacted() {
    local topic=$TOPIC-compacted out expected i attempt
    [[ -n ${COMPAT_STROM_BIN:-} ]] || { echo "COMPAT_STROM_BIN is not set (run through compat/run.sh)"; return 1; }
    "$COMPAT_STROM_BIN" topic create "$topic" --bootstrap "$B" -c cleanup.policy=compact \
        -c segment.ms=200 -c min.cleanable.dirty.ratio=0.01 || { echo "strom topic create exited $?"; return 1; }
    seq 0 99999 | awk '{print "k" ($1 % 1000) ":v" $1}' |
        "${KCAT[@]}" -P -t "$topic" -K: -X acks=all || { echo "kcat -P exited $?"; return 1; }
    # Once segment.ms has passed, one more record rolls the segment: only closed ones are cleaned.
    sleep 0.3
    echo "roll:roll" | "${KCAT[@]}" -P -t "$topic" -K: -X acks=all || { echo "kcat -P exited $?"; return 1; }
    expected=$( (seq 99000 99999 | awk '{print "k" ($1 % 1000) " v" $1}'; echo "roll roll") | sort)
    for attempt in $(seq 1 120); do
        # One line per key, each its latest value: the topic has been compacted.
        out=$("${KCAT[@]}" -C -t "$topic" -e -f '%k %s\n' | sort) || { echo "kcat -C exited $?"; return 1; }
        [[ $out == "$expected" ]] && return 0
        sleep 0.5
    done
    same "compacted read-back after 60s" "$expected" "$out"
}

check "metadata.broker" "kcat -L lists one broker at $B" check_metadata_broker
check "produce.keyed" "kcat -P -K: produces 4 keyed lines into auto-created $TOPIC" check_produce_keyed
check "metadata.topic" "kcat -L -t and -L -J show the topic with 1 partition" check_metadata_topic
check "consume.all" "kcat -C -e -f '%k %s %o\\n' prints every record" check_consume_all
check "consume.from_offset" "kcat -C -o 1 starts at offset 1" check_consume_from_offset
check "consume.last" "kcat -C -o -1 prints only the last record" check_consume_last
check "query.offsets" "kcat -Q gives the beginning (0) and end (4) offsets" check_query_offsets
check "headers" "kcat -P -H, then %h shows them" check_headers
check "produce.idempotent" "kcat -P -X enable.idempotence=true (InitProducerId from librdkafka 2.0.2)" check_idempotent
for codec in gzip snappy lz4 zstd; do
    check "compression.$codec" "kcat -P -z $codec, read back" check_compression "$codec"
done

check "compaction.latest_value_per_key" "100000 updates over 1000 keys to a compacted topic read back as the latest value per key" check_compacted

echo "== $SUITE done: pass=${COUNTS[PASS]:-0} fail=${COUNTS[FAIL]:-0} known-fail=${COUNTS[KNOWN-FAIL]:-0} xpass=${COUNTS[XPASS]:-0}"
exit "$FAILED"
