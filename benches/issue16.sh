#!/usr/bin/env bash
# The issue-16 matrix in one command: durable and non-durable produce and librdkafka consume
# across 1/6/24 partitions, with the machine's ceilings measured in the same run.
#
#   benches/issue16.sh [RUNS] [COUNT_1K] [COUNT_100B] [FIO_SIZE]
#   (defaults: 5 runs, 1 000 000 x 1 KiB, 5 000 000 x 100 B, fio 1g)
#
# Run from the workspace root after `cargo build --release -p strom -p strom-bench`.
# Smoke run with tiny sizes: `benches/issue16.sh 1 20000 50000 64m`.
#
# For each of four modes (1 KiB and 100 B records, `strom.fsync=always` and `never`) a fresh
# `strom serve` (release build, fresh data dir under $BENCH_DIR, default target/issue16, ports
# 196xx) runs `kafka_bench --partition-cases 1,6,24 --runs RUNS`: every run produces to a fresh
# topic per partition count (acks=all, linger.ms=5, one producer, cases alternated run by run)
# and consumes it back once with librdkafka from the page cache. Ceilings, each RUNS times:
# fio 64 KiB writes + fdatasync per MiB in the same directory (before and after the matrix: the
# disk's rate moves), and iperf3 over loopback (if installed). Prints medians: produce MB/s and
# records/s, p99 acknowledgement latency, consume MB/s and records/s, and the issue's ratios.
# Per-run tables are kept in $BENCH_DIR/*.log.
set -u
RUNS=${1:-5}
COUNT=${2:-1000000}
SMALL=${3:-5000000}
FIO_SIZE=${4:-1g}
BIN=target/release
BASE=${BENCH_DIR:-target/issue16}
PORT=19692
KAFKA=127.0.0.1:$PORT
IPERF_PORT=19601

for b in strom kafka_bench; do
  [ -x "$BIN/$b" ] || { echo "missing $BIN/$b: cargo build --release -p strom -p strom-bench" >&2; exit 1; }
done
command -v python3 >/dev/null || { echo "python3 is needed to compute the medians" >&2; exit 1; }
mkdir -p "$BASE"
SUMMARY=$BASE/summary.txt
: >"$SUMMARY"

median() { python3 -c 'import sys,statistics; v=[float(x) for x in sys.stdin.read().split()]; print(f"{statistics.median(v):.0f}" if v else "n/a")'; }

fio_ceiling() { # $1: label
  if ! command -v fio >/dev/null; then echo "fio_$1_mb_s=n/a" >>"$SUMMARY"; echo "fio not installed (apt-get install -y fio)"; return; fi
  local dir=$BASE/fio vals=""
  for _ in $(seq "$RUNS"); do
    rm -rf "$dir"; mkdir -p "$dir"
    local v
    v=$(fio --name=c --directory="$dir" --rw=write --bs=64k --size="$FIO_SIZE" --fdatasync=16 \
          --output-format=json 2>/dev/null |
        python3 -c 'import sys,json; print(json.load(sys.stdin)["jobs"][0]["write"]["bw_bytes"]/1e6)')
    vals="$vals $v"
  done
  rm -rf "$dir"
  local m; m=$(echo "$vals" | median)
  echo "fio_$1_mb_s=$m" >>"$SUMMARY"
  echo "fio 64 KiB writes + fdatasync per MiB ($1): median $m MB/s (runs:$(printf ' %.0f' $vals))"
}

iperf_ceiling() {
  if ! command -v iperf3 >/dev/null; then echo "iperf3_mb_s=n/a" >>"$SUMMARY"; echo "iperf3 not installed (apt-get install -y iperf3)"; return; fi
  local vals=""
  for _ in $(seq "$RUNS"); do
    iperf3 -s -1 -p $IPERF_PORT >/dev/null 2>&1 &
    local srv=$!
    sleep 0.3
    local v
    v=$(iperf3 -c 127.0.0.1 -p $IPERF_PORT -t 3 -J 2>/dev/null |
        python3 -c 'import sys,json; print(json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"]/8e6)')
    wait $srv 2>/dev/null
    vals="$vals $v"
  done
  local m; m=$(echo "$vals" | median)
  echo "iperf3_mb_s=$m" >>"$SUMMARY"
  echo "iperf3 loopback, one stream: median $m MB/s (runs:$(printf ' %.0f' $vals))"
}

run_mode() { # $1: label, $2: record size, $3: count, rest: kafka_bench flags
  local label=$1 size=$2 count=$3
  shift 3
  local data=$BASE/data
  rm -rf "$data"; sync
  "$BIN/strom" serve --data-dir "$data" --kafka-listen $KAFKA --kinesis-listen 127.0.0.1:19668 \
    --http-listen 127.0.0.1:19645 --log warn >"$BASE/serve-$label.log" 2>&1 &
  local broker=$!
  for _ in $(seq 100); do
    (exec 3<>/dev/tcp/127.0.0.1/$PORT) 2>/dev/null && break
    sleep 0.05
  done
  echo "## $label: $count x $size B (load: $(cut -d' ' -f1-3 /proc/loadavg))"
  "$BIN/kafka_bench" --bootstrap $KAFKA --size "$size" --count "$count" --runs "$RUNS" \
    --partition-cases 1,6,24 --broker-pid $broker "$@" >"$BASE/$label.log" 2>&1
  grep -E '^\|' "$BASE/$label.log"
  grep '^summary' "$BASE/$label.log" | sed "s/^summary/mode=$label/" | tee -a "$SUMMARY"
  kill $broker; wait $broker 2>/dev/null
  rm -rf "$data"
}

echo "# issue 16 matrix, $(date -u +%FT%TZ), runs=$RUNS, $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
fio_ceiling before
iperf_ceiling
run_mode always-1k 1024 "$COUNT"
run_mode never-1k 1024 "$COUNT" --topic-config strom.fsync=never
run_mode always-100b 100 "$SMALL"
run_mode never-100b 100 "$SMALL" --topic-config strom.fsync=never
fio_ceiling after

python3 - "$SUMMARY" <<'EOF'
import sys
rows, ceil = {}, {}
for line in open(sys.argv[1]):
    fields = dict(f.split("=", 1) for f in line.split())
    if "mode" in fields:
        rows[(fields["mode"], int(fields["partitions"]))] = fields
    else:
        ceil.update(fields)
def num(v):
    try:
        return float(v)
    except (TypeError, ValueError):
        return None
fio = [x for x in (num(ceil.get("fio_before_mb_s")), num(ceil.get("fio_after_mb_s"))) if x]
fio_m = sum(fio) / len(fio) if fio else None
iperf = num(ceil.get("iperf3_mb_s"))
def pct(a, b):
    return f"{100 * a / b:.0f} %" if a is not None and b else "n/a"
print("\n# Medians")
iperf_s = f"{iperf:.0f}" if iperf else "n/a"
print(f"ceilings: fio {' / '.join(f'{x:.0f}' for x in fio) or 'n/a'} MB/s (before / after), iperf3 {iperf_s} MB/s")
print("| records | partitions | always MB/s | always rec/s | always p99 ms | never MB/s | never rec/s | always/never | always/fio | consume MB/s | consume rec/s | consume/iperf3 | consume/1-partition |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
for size in ("1k", "100b"):
    one = rows.get((f"always-{size}", 1), {})
    for p in (1, 6, 24):
        a, n = rows.get((f"always-{size}", p), {}), rows.get((f"never-{size}", p), {})
        am, nm = num(a.get("produce_mb_s")), num(n.get("produce_mb_s"))
        c = num(a.get("consume_mb_s"))
        print(f"| {size} | {p} | {a.get('produce_mb_s','n/a')} | {a.get('produce_rec_s','n/a')} | "
              f"{a.get('produce_p99_ms','n/a')} | {n.get('produce_mb_s','n/a')} | {n.get('produce_rec_s','n/a')} | "
              f"{pct(am, nm)} | {pct(am, fio_m)} | {a.get('consume_mb_s','n/a')} | {a.get('consume_rec_s','n/a')} | "
              f"{pct(c, iperf)} | {pct(c, num(one.get('consume_mb_s')))} |")
EOF
