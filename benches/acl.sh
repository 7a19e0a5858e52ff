#!/usr/bin/env bash
# Issue 19 Performance: produce throughput with the authorizer off and with 1 000 ACLs, in the
# same run, plus the cost of one authorization check (acl_bench).
#
#   benches/acl.sh [RUNS] [COUNT] [ACLS]
#   (defaults: 5 runs, 1 000 000 x 1 KiB records, 1 000 ACLs)
#
# Run from the workspace root after `cargo build --release -p strom -p strom-bench`.
# Smoke run: `benches/acl.sh 1 20000 50`.
#
# Each mode starts a fresh `strom serve` (release build, data dir under $BENCH_DIR, default
# target/acl-bench, ports 197xx) and runs `kafka_bench --runs RUNS` against it (acks=all,
# linger.ms=5, one producer, 1 partition, consumed back once):
#   - off:  no authorizer (no check at all);
#   - acls: `--authorizer` with ACLS ACLs loaded by `strom acl add` (per-service literal and
#           per-team prefixed topic ACLs for ACLS/10 other principals, some DENY rules), and
#           the benchmark's own principal (User:ANONYMOUS on the PLAINTEXT listener) allowed
#           through a prefixed ACL on the `bench` topics, the `strom-bench` group and CREATE, DESCRIBE and
#           IDEMPOTENT_WRITE on the cluster: no super user, so every request walks the index.
# The ACLs are loaded while the broker runs with `--super-users User:ANONYMOUS`, then the
# broker restarts without it (ACLs are durable). Prints both tables, then one `summary` line per
# metric with the ratio acls / off (produce MB/s and records/s, p99, broker CPU s per GB).
set -u
RUNS=${1:-5}
COUNT=${2:-1000000}
ACLS=${3:-1000}
BIN=${BIN:-target/release}
BASE=${BENCH_DIR:-target/acl-bench}
PORT=19792
KAFKA=127.0.0.1:$PORT

command -v python3 >/dev/null || { echo "python3 is needed for the ratios" >&2; exit 1; }
for b in strom kafka_bench acl_bench; do
  [ -x "$BIN/$b" ] || { echo "missing $BIN/$b: cargo build --release -p strom -p strom-bench" >&2; exit 1; }
done
mkdir -p "$BASE"
DATA=$BASE/data
BROKER=

start() { # flags for serve
  "$BIN/strom" serve --data-dir "$DATA" --kafka-listen $KAFKA --kinesis-listen 127.0.0.1:19768 \
    --http-listen 127.0.0.1:19745 --log warn "$@" >>"$BASE/serve.log" 2>&1 &
  BROKER=$!
  for _ in $(seq 200); do
    (exec 3<>/dev/tcp/127.0.0.1/$PORT) 2>/dev/null && return 0
    sleep 0.05
  done
  echo "broker did not start; see $BASE/serve.log" >&2
  exit 1
}
stop() { kill "$BROKER"; wait "$BROKER" 2>/dev/null; }
acl() { "$BIN/strom" acl add --bootstrap $KAFKA "$@" >/dev/null || exit 1; }

bench() { # label
  echo "## $1 (load: $(cut -d' ' -f1-3 /proc/loadavg))"
  "$BIN/kafka_bench" --bootstrap $KAFKA --size 1024 --count "$COUNT" --runs "$RUNS" \
    --broker-pid "$BROKER" >"$BASE/$1.log" 2>&1
  grep -E '^\|' "$BASE/$1.log"
  grep '^summary' "$BASE/$1.log" | sed "s/^summary/mode=$1/" | tee -a "$SUMMARY"
}
# Value of KEY in the summary line of mode MODE.
value() { grep "^mode=$1 " "$SUMMARY" | tr ' ' '\n' | sed -n "s/^$2=//p" | head -1; }
ratio() { python3 -c 'import sys; a,b=sys.argv[1:3]; print(f"{100*float(a)/float(b):.0f} %" if a and b and float(b)>0 else "n/a")' "$1" "$2" 2>/dev/null || echo n/a; }

: >"$BASE/serve.log"
SUMMARY=$BASE/summary.txt
: >"$SUMMARY"
echo "# issue 19 ACL cost, $(date -u +%FT%TZ), runs=$RUNS, $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"

rm -rf "$DATA"
start
bench off
stop

rm -rf "$DATA"
start --authorizer --super-users User:ANONYMOUS
me=User:ANONYMOUS
acl --resource-type topic --resource bench --pattern prefixed --principal $me --operation all
acl --resource-type group --resource strom-bench --principal $me --operation all
acl --resource-type cluster --principal $me --operation create --operation describe --operation idempotent-write
loaded=5
i=0
while [ $loaded -lt "$ACLS" ]; do
  team=$((i % 37)); who=User:svc-$((i % (ACLS / 10 + 1)))
  case $((i % 5)) in
    0|1) acl --resource-type topic --resource "team$team." --pattern prefixed --principal "$who" --operation write ;;
    2)   acl --resource-type topic --resource "team$team.service-$i" --principal "$who" --operation read ;;
    3)   acl --resource-type group --resource "team$team-" --pattern prefixed --principal "$who" --operation read ;;
    4)   acl --resource-type topic --resource "team$team.secret-$i" --principal 'User:*' --operation read --deny ;;
  esac
  i=$((i + 1)); loaded=$((loaded + 1))
done
stored=$("$BIN/strom" acl list --bootstrap $KAFKA | tail -n +2 | wc -l)
stop
start --authorizer
echo "(ACLs stored: $stored)"
bench acls
stop
rm -rf "$DATA"

echo "## one check (acl_bench --acls $ACLS)"
"$BIN/acl_bench" --acls "$ACLS" --runs "$RUNS" --dir "$BASE/acl_bench"

echo "## summary (medians of $RUNS runs; ratio = with $ACLS ACLs / authorizer off; goal: not measurable)"
for key in produce_mb_s produce_rec_s produce_p99_ms produce_broker_cpu_s_gb; do
  off=$(value off $key); with=$(value acls $key)
  echo "summary metric=$key off=${off:-n/a} acls=${with:-n/a} ratio=$(ratio "$with" "$off")"
done
