#!/usr/bin/env bash
# Strom's Kinesis API against the AWS CLI (`aws kinesis ... --endpoint-url`), from compat/.venv.
#
# Covers: create-stream, wait stream-exists, describe-stream-summary, list-streams, put-record,
# get-shard-iterator, get-records (data round trip), the CLI's error exit for an unknown stream,
# delete-stream. Then, against a broker of its own with SigV4 on (compat/broker.sh, one access
# key): the configured key works; a wrong secret, a stale date and a body altered after signing
# (both through compat/awscli_compat_plugin.py, loaded as a CLI plugin) end the CLI with exit 255
# and InvalidSignatureException. Prints PASS/FAIL lines as compat/run.sh expects; exits 1 if a
# check failed.
set -uo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
AWS=$HERE/.venv/bin/aws
[[ -x $AWS ]] || AWS=aws
PY=$HERE/.venv/bin/python
[[ -x $PY ]] || PY=python3
ENDPOINT=${COMPAT_KINESIS_ENDPOINT:-http://127.0.0.1:4567}
export AWS_ACCESS_KEY_ID=AKIDCOMPAT AWS_SECRET_ACCESS_KEY=secret AWS_DEFAULT_REGION=us-east-1
export AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null AWS_PAGER=
STREAM=compat-awscli-$RANDOM$RANDOM
FAILED=0

k() { "$AWS" kinesis --endpoint-url "$ENDPOINT" --output json "$@"; }
json() { "$PY" -c "import json,sys; d=json.load(sys.stdin); print($1)"; }
check() {
    local name=$1 want=$2 got=$3
    if [[ $got == "$want" ]]; then
        echo "PASS awscli/$name"
    else
        echo "FAIL awscli/$name: expected '$want', got '$got'"
        FAILED=$((FAILED + 1))
    fi
}

echo "== awscli $("$AWS" --version 2>&1) against $ENDPOINT"
k create-stream --stream-name "$STREAM" --shard-count 2 >/dev/null 2>&1
k wait stream-exists --stream-name "$STREAM" 2>&1
check create_and_wait 2 "$(k describe-stream-summary --stream-name "$STREAM" 2>&1 | json 'd["StreamDescriptionSummary"]["OpenShardCount"]' 2>&1)"
check list_streams True "$(k list-streams 2>&1 | json "'$STREAM' in d['StreamNames']" 2>&1)"
# --cli-binary-format raw-in-base64-out: the CLI v1 default already sends --data as text.
shard=$(k put-record --stream-name "$STREAM" --partition-key pk --data "hello from the cli" 2>&1 | json 'd["ShardId"]' 2>&1)
check put_record_shard "shardId-00000000000" "${shard:0:19}"
it=$(k get-shard-iterator --stream-name "$STREAM" --shard-id "$shard" --shard-iterator-type TRIM_HORIZON 2>&1 | json 'd["ShardIterator"]' 2>&1)
data=$(k get-records --shard-iterator "$it" 2>&1 | json '__import__("base64").b64decode(d["Records"][0]["Data"]).decode()' 2>&1)
check get_records "hello from the cli" "$data"
err=$(k describe-stream --stream-name "nope-$STREAM" 2>&1)
rc=$?
check unknown_stream_exit 255 "$rc"
check unknown_stream_error 1 "$(grep -c ResourceNotFoundException <<<"$err")"
k delete-stream --stream-name "$STREAM" >/dev/null 2>&1
check delete 0 "$(k list-streams 2>&1 | json "d['StreamNames'].count('$STREAM')" 2>&1)"

# --- SigV4: a broker of its own with one access key ------------------------------------------

BIN=${COMPAT_STROM_BIN:-}
if [[ -z $BIN ]]; then
    echo "SKIP awscli/sigv4: COMPAT_STROM_BIN is not set"
    ((FAILED == 0))
    exit
fi
WORK=$(mktemp -d "${TMPDIR:-/tmp}/strom-compat-awscli.XXXXXX")
BROKER_LOG=$WORK/broker.log
BROKER_PYTHON=$PY
# shellcheck source=compat/broker.sh
source "$HERE/broker.sh"
# shellcheck disable=SC2317  # called by the EXIT trap
cleanup() {
    broker_kill
    rm -rf "$WORK"
}
trap cleanup EXIT
KEY_ID=AKIACOMPATCLI KEY_SECRET=cli-secret-$RANDOM$RANDOM
# On the command line, not in the environment: broker.sh keeps STROM_* variables away from it.
BROKER_EXTRA=(--kinesis-access-key "$KEY_ID:$KEY_SECRET:User:alice")
if ! broker_start; then
    echo "FAIL awscli/sigv4_start: the broker did not start"
    exit 1
fi
ENDPOINT=http://127.0.0.1:$KINESIS_PORT
printf '[plugins]\ncompat_tamper = awscli_compat_plugin\n' >"$WORK/aws-config"
export AWS_CONFIG_FILE=$WORK/aws-config PYTHONPATH=$HERE${PYTHONPATH:+:$PYTHONPATH}
export AWS_ACCESS_KEY_ID=$KEY_ID AWS_SECRET_ACCESS_KEY=$KEY_SECRET
SIGNED=compat-awscli-signed-$RANDOM$RANDOM
k create-stream --stream-name "$SIGNED" --shard-count 1 >/dev/null 2>&1
check sigv4_signed True "$(k list-streams 2>&1 | json "'$SIGNED' in d['StreamNames']" 2>&1)"
# refused NAME CMD...: the CLI must exit 255 with InvalidSignatureException.
refused() {
    local name=$1 err rc
    shift
    err=$("$@" 2>&1)
    rc=$?
    check "$name" "255 1" "$rc $(grep -c InvalidSignatureException <<<"$err")"
}
refused sigv4_wrong_secret env AWS_SECRET_ACCESS_KEY=not-the-secret \
    "$AWS" kinesis --endpoint-url "$ENDPOINT" list-streams
refused sigv4_stale_date env COMPAT_AWSCLI_TAMPER=stale \
    "$AWS" kinesis --endpoint-url "$ENDPOINT" list-streams
refused sigv4_tampered_body env COMPAT_AWSCLI_TAMPER=body \
    "$AWS" kinesis --endpoint-url "$ENDPOINT" put-record --stream-name "$SIGNED" \
    --partition-key pk-a --data tampered
# The refused write wrote nothing; a signed one does.
k put-record --stream-name "$SIGNED" --partition-key pk-a --data signed >/dev/null 2>&1
it=$(k get-shard-iterator --stream-name "$SIGNED" --shard-id shardId-000000000000 --shard-iterator-type TRIM_HORIZON 2>&1 | json 'd["ShardIterator"]' 2>&1)
check sigv4_nothing_tampered_written "pk-a" "$(k get-records --shard-iterator "$it" 2>&1 | json '",".join(r["PartitionKey"] for r in d["Records"])' 2>&1)"
if ! broker_stop; then
    echo "FAIL awscli/sigv4_shutdown: $BROKER_STOP_WHY"
    FAILED=$((FAILED + 1))
fi
broker_log_report >/dev/null || { echo "FAIL awscli/sigv4_no_panic: the broker log has a panic"; FAILED=$((FAILED + 1)); }
((FAILED == 0))
