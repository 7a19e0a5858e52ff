#!/usr/bin/env bash
# Strom's Kinesis API against the AWS CLI (`aws kinesis ... --endpoint-url`), from compat/.venv.
#
# Covers: create-stream, wait stream-exists, describe-stream-summary, list-streams, put-record,
# get-shard-iterator, get-records (data round trip), the CLI's error exit for an unknown stream,
# delete-stream. Prints PASS/FAIL lines as compat/run.sh expects; exits 1 if a check failed.
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
((FAILED == 0))
