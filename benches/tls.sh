#!/usr/bin/env bash
# Issue 19 Performance: TLS against plaintext on one broker in the same run. Produce and consume
# throughput (goal: TLS >= 70 % of plaintext) and new connections per second.
#
#   benches/tls.sh [RUNS] [COUNT] [CONN_SECONDS] [CONCURRENCY]
#   (defaults: 5 runs, 1 000 000 x 1 KiB records, 5 s per connection run, 8 connectors)
#
# Run from the workspace root after `cargo build --release -p strom -p strom-bench`
# (BIN=target/debug to use a debug build, for a smoke run only).
# Smoke run: `benches/tls.sh 1 20000 2 4`.
#
# Certificates: made here by the openssl CLI in $BENCH_DIR/certs (a CA and a server certificate
# for localhost and 127.0.0.1, RSA 2048 as most deployments use; no files from elsewhere).
#
# Throughput. Each run starts a fresh `strom serve` (fresh data dir under $BENCH_DIR, default
# target/tls-bench, ports 198xx) with two Kafka listeners, PLAINTEXT and SSL (TLS 1.3 with
# rustls/aws-lc-rs), and runs `kafka_bench --runs 1` against each with two pairs of clients,
# each on a fresh topic, plaintext and SSL in alternating order run by run (acks=all, one
# partition, 1 KiB records; clients warmed up outside the clock by kafka_bench):
#   - raw: kafka_bench's raw Produce client (one ~1 MB batch built once and sent again and
#     again, 5 requests in flight) and raw Fetch client (batch headers only), over TLS with
#     rustls (`--tls-ca`). Both keep the client cheap, so the broker's TLS cost shows: these
#     are the ratios to hold against the 70 % goal.
#   - librdkafka (the rdkafka crate, built with OpenSSL) producer (linger.ms=5) and consumer,
#     the only change being `security.protocol=ssl` + `ssl.ca.location`: what a real client
#     sees end to end (both ends encrypt on the same machine, librdkafka's per-message cost
#     included).
# Medians over the runs, and the ratios TLS / plaintext of the medians; the broker's CPU
# seconds per GB produced and consumed come with them.
#
# Connections. `tls_connect_bench` with CONCURRENCY connectors, each connecting, making a full
# handshake (no session resumption), sending one request and closing, for CONN_SECONDS, RUNS
# times: Kafka ApiVersions to the PLAINTEXT and the SSL listener, then `GET /` to the Kinesis
# endpoint over HTTPS (HTTP/1.1) and, after a restart without `--kinesis-tls`, over plain HTTP.
#
# Prints the per-run tables, then one `summary` line per metric with its ratio. Logs stay in
# $BENCH_DIR/*.log; the data dir is removed at the end.
set -u
RUNS=${1:-5}
COUNT=${2:-1000000}
CONN_SECONDS=${3:-5}
CONCURRENCY=${4:-8}
BIN=${BIN:-target/release}
BASE=${BENCH_DIR:-target/tls-bench}
PLAIN_PORT=19892
SSL_PORT=19893
KINESIS_PORT=19868
HTTP_PORT=19845
PLAIN=127.0.0.1:$PLAIN_PORT
SSL=127.0.0.1:$SSL_PORT

for b in strom kafka_bench tls_connect_bench; do
  [ -x "$BIN/$b" ] || { echo "missing $BIN/$b: cargo build --release -p strom -p strom-bench" >&2; exit 1; }
done
for c in openssl python3; do
  command -v $c >/dev/null || { echo "$c is needed" >&2; exit 1; }
done
mkdir -p "$BASE"
DATA=$BASE/data
CERTS=$BASE/certs
SUMMARY=$BASE/summary.txt
: >"$SUMMARY"
: >"$BASE/serve.log"
BROKER=

make_certs() {
  rm -rf "$CERTS"; mkdir -p "$CERTS"
  (
    cd "$CERTS" || exit 1
    openssl req -x509 -newkey rsa:2048 -nodes -days 2 -keyout ca.key -out ca.pem -subj /CN=bench-ca
    printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' >server.ext
    openssl req -newkey rsa:2048 -nodes -keyout server.key -out server.csr -subj /CN=localhost
    openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 \
      -out server.pem -extfile server.ext
  ) >"$BASE/openssl.log" 2>&1 || { echo "openssl failed; see $BASE/openssl.log" >&2; exit 1; }
}

wait_port() { # port
  for _ in $(seq 400); do
    (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0
    sleep 0.05
  done
  echo "broker did not listen on $1; see $BASE/serve.log" >&2
  stop
  exit 1
}

start() { # extra serve flags
  "$BIN/strom" serve --data-dir "$DATA" \
    --listeners "PLAINTEXT://$PLAIN,SSL://$SSL" \
    --listener-security-protocol-map PLAINTEXT:PLAINTEXT,SSL:SSL \
    --tls-cert "$CERTS/server.pem" --tls-key "$CERTS/server.key" \
    --kinesis-listen 127.0.0.1:$KINESIS_PORT --http-listen 127.0.0.1:$HTTP_PORT \
    --log warn "$@" >>"$BASE/serve.log" 2>&1 &
  BROKER=$!
  wait_port $PLAIN_PORT
  wait_port $SSL_PORT
  wait_port $KINESIS_PORT
}
stop() { [ -n "$BROKER" ] && kill "$BROKER" && wait "$BROKER" 2>/dev/null; BROKER=; }
trap stop EXIT

median() { python3 -c 'import sys,statistics; v=[float(x) for x in sys.stdin.read().split()]; print(f"{statistics.median(v):.1f}" if v else "n/a")'; }
# Values of KEY in the summary lines of mode MODE and client CLIENT.
values() { grep "^mode=$1 client=$2 " "$SUMMARY" | tr ' ' '\n' | sed -n "s/^$3=//p"; }
ratio() { python3 -c 'import sys; a,b=sys.argv[1:3]; print(f"{100*float(a)/float(b):.0f} %" if a!="n/a" and b!="n/a" and float(b)>0 else "n/a")' "$1" "$2"; }

bench() { # mode (plaintext|tls) client (raw|rdkafka) run
  local mode=$1 client=$2 run=$3 flags
  if [ "$mode" = tls ]; then
    flags=(--bootstrap "$SSL" --client-config security.protocol=ssl
           --client-config "ssl.ca.location=$CERTS/ca.pem" --tls-ca "$CERTS/ca.pem"
           --tls-server-name 127.0.0.1)
  else
    flags=(--bootstrap "$PLAIN")
  fi
  if [ "$client" = raw ]; then
    flags+=(--producer raw --consumer raw)
  else
    flags+=(--producer rdkafka --consumer rdkafka)
  fi
  local log=$BASE/$mode-$client-$run.log
  "$BIN/kafka_bench" "${flags[@]}" --topic "bench-$mode-$client-$run" --size 1024 \
    --count "$COUNT" --runs 1 --broker-pid "$BROKER" >"$log" 2>&1 ||
    { echo "kafka_bench ($mode, $client, run $run) failed; see $log" >&2; }
  echo "### $mode, $client clients, run $run"
  grep -E '^\|' "$log"
  grep -E '^run .*(raw fetch|librdkafka)' "$log"
  grep '^summary' "$log" | sed "s/^summary/mode=$mode client=$client run=$run/" >>"$SUMMARY"
}

echo "# issue 19 TLS vs plaintext, $(date -u +%FT%TZ), runs=$RUNS, count=$COUNT, $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
make_certs

for run in $(seq "$RUNS"); do
  rm -rf "$DATA"
  start
  echo "## run $run (load: $(cut -d' ' -f1-3 /proc/loadavg))"
  for client in raw rdkafka; do
    if [ $((run % 2)) -eq 1 ]; then bench plaintext $client "$run"; bench tls $client "$run"
    else bench tls $client "$run"; bench plaintext $client "$run"; fi
  done
  stop
done

connect() { # label addr protocol [--tls-ca FILE]
  local label=$1 addr=$2 protocol=$3
  shift 3
  "$BIN/tls_connect_bench" --addr "$addr" --protocol "$protocol" --concurrency "$CONCURRENCY" \
    --seconds "$CONN_SECONDS" --runs "$RUNS" "$@" >"$BASE/connect-$label.log" 2>&1 ||
    echo "tls_connect_bench ($label) failed; see $BASE/connect-$label.log" >&2
  grep '^run' "$BASE/connect-$label.log"
  local v; v=$(sed -n 's/^summary.* conn_per_s=\([0-9.]*\).*/\1/p' "$BASE/connect-$label.log")
  echo "conn=$label conn_per_s=${v:-n/a}" >>"$SUMMARY"
}
conn() { sed -n "s/^conn=$1 conn_per_s=//p" "$SUMMARY"; }

echo "## new connections ($CONCURRENCY connectors, $CONN_SECONDS s x $RUNS)"
rm -rf "$DATA"
start --kinesis-tls
connect kafka-plaintext "$PLAIN" kafka
connect kafka-ssl "$SSL" kafka --tls-ca "$CERTS/ca.pem" --tls-server-name 127.0.0.1
connect kinesis-https 127.0.0.1:$KINESIS_PORT http --tls-ca "$CERTS/ca.pem" --tls-server-name 127.0.0.1
stop
start
connect kinesis-http 127.0.0.1:$KINESIS_PORT http
stop
rm -rf "$DATA"

echo "## summary (medians of $RUNS runs; ratio = TLS / plaintext)"
metric() { # client key label
  local p t
  p=$(values plaintext "$1" "$2" | median); t=$(values tls "$1" "$2" | median)
  echo "summary metric=$3 plaintext=$p tls=$t ratio=$(ratio "$t" "$p")"
}
metric raw produce_mb_s raw_produce_mb_s
metric raw raw_consume_mb_s raw_consume_mb_s
metric rdkafka produce_mb_s librdkafka_produce_mb_s
metric rdkafka consume_mb_s librdkafka_consume_mb_s
metric raw produce_broker_cpu_s_gb raw_produce_broker_cpu_s_gb
metric raw consume_broker_cpu_s_gb raw_consume_broker_cpu_s_gb
kp=$(conn kafka-plaintext); ks=$(conn kafka-ssl); hp=$(conn kinesis-http); hs=$(conn kinesis-https)
echo "summary metric=kafka_connections_per_s plaintext=$kp tls=$ks ratio=$(ratio "$ks" "$kp")"
echo "summary metric=kinesis_connections_per_s plaintext=$hp tls=$hs ratio=$(ratio "$hs" "$hp")"
