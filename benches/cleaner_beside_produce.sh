#!/usr/bin/env bash
# Broker-level produce throughput with the log cleaner working beside it (issue 15).
#
#   benches/cleaner_beside_produce.sh [COUNT] [RUNS] [FILL_COUNT]
#
# Three modes, each on a fresh `strom serve` (release build, fresh data dir, ports 19xxx):
#   alone        cleaner enabled, nothing to clean: kafka_bench alone
#   fill, off    --log-cleaner-enable false; a second kafka_bench keeps producing to a
#                compacted topic (1 KiB values over 1 024 keys, 32 MiB segments, fsync never;
#                `compact,delete` with retention.bytes 512 MiB and a 500 ms retention check,
#                so the data dir stays under ~1 GB without the cleaner)
#   fill, on     the same, cleaner enabled (unthrottled, --log-cleaner-backoff-ms 100), so
#                it keeps cleaning the compacted topic's rolled segments
#   fill, on, throttled   the same with --log-cleaner-io-max-bytes-per-second 52428800
# The measured kafka_bench produces COUNT x 1 KiB (acks=all, default strom.fsync=always) to a
# fresh topic per run. "fill, on" against "fill, off" is the cleaner's cost; both carry the
# same second producer. Run from the workspace root after
# `cargo build --release -p strom -p strom-bench`.
set -u
COUNT=${1:-200000}
RUNS=${2:-3}
FILL=${3:-8000000}
BIN=target/release
BASE=${BENCH_DIR:-target/cleaner-beside}
KAFKA=127.0.0.1:19392

run_mode() {
  local mode=$1 enable=$2 fill=$3
  shift 3 # the rest: extra `strom serve` flags
  local data=$BASE/data
  rm -rf "$data"; mkdir -p "$BASE"; sync
  printf '[broker]\nretention_check_interval_ms = 500\n' >"$BASE/strom.toml"
  "$BIN/strom" serve --config "$BASE/strom.toml" --data-dir "$data" --kafka-listen $KAFKA \
    --kinesis-listen 127.0.0.1:19567 --http-listen 127.0.0.1:19644 \
    --log-cleaner-enable "$enable" --log-cleaner-backoff-ms 100 "$@" \
    >"$BASE/serve-$mode.log" 2>&1 &
  local broker=$!
  for _ in $(seq 100); do
    (exec 3<>/dev/tcp/127.0.0.1/19392) 2>/dev/null && break
    sleep 0.05
  done
  local filler=""
  if [ "$fill" = yes ]; then
    "$BIN/kafka_bench" --bootstrap $KAFKA --topic dirty --count "$FILL" --size 1024 \
      --runs 1 --consume-passes 0 --acks 1 \
      --topic-config cleanup.policy=compact,delete --topic-config retention.bytes=536870912 \
      --topic-config segment.bytes=33554432 \
      --topic-config strom.fsync=never >"$BASE/fill-$mode.log" 2>&1 &
    filler=$!
    sleep 1.5 # the compacted topic has rolled segments and the cleaner is at work
  fi
  echo "## $mode (load: $(cut -d' ' -f1-3 /proc/loadavg))"
  "$BIN/kafka_bench" --bootstrap $KAFKA --topic bench --count "$COUNT" --size 1024 \
    --runs "$RUNS" --consume-passes 0 2>&1 | grep -E '^\|'
  if [ -n "$filler" ]; then
    if kill -0 "$filler" 2>/dev/null; then
      echo "filler still producing at the end: yes"
      kill "$filler"
    else
      echo "filler still producing at the end: NO (it finished first)"
    fi
    wait "$filler" 2>/dev/null
  fi
  curl -s http://127.0.0.1:19644/metrics | grep -E '^strom_log_cleaner_(bytes_cleaned_total|records_removed_total)' \
    | sed 's/{[^}]*}//' | awk '{s[$1]+=$2} END {for (k in s) printf "%s %.0f\n", k, s[k]}'
  du -sh "$data" | sed 's/^/data dir: /'
  kill "$broker"; wait "$broker" 2>/dev/null
  rm -rf "$data"
}

run_mode alone true no
run_mode fill-off false yes
run_mode fill-on true yes
run_mode fill-on-50MiBps true yes --log-cleaner-io-max-bytes-per-second 52428800
rm -rf "$BASE"
