#!/usr/bin/env bash
# Cluster-mode benchmarks (issue 17, "Performance") in one command: the engines' ceilings, then
# librdkafka produce/consume against one single-node broker and a three-broker cluster, all in
# the same run on the same machine.
#
#   benches/cluster.sh [RUNS] [COUNT]        (defaults: 3 runs, 300 000 x 1 KiB)
#   env: PARTITIONS (12), FLUSH_DELAY_MS (250, the broker default), BENCH_DIR (target/cluster-bench),
#        RATE (10000 records/s offered in the latency runs), RATE_SECS (8 s per latency run),
#        TXN_SIZE (10000 records per transaction in the transactional cluster run),
#        IDEMPOTENCE (1: the producers are idempotent; 0: librdkafka's default producer, not
#        idempotent, unbounded requests in flight per connection),
#        BIN_DIR (target/release; another build's strom, kafka_bench and examples/ceilings, to
#        compare two versions in interleaved invocations)
#
# Run from the workspace root after
#   cargo build --release -p strom -p strom-bench && cargo build --release -p strom-cluster --examples
# Smoke run: `benches/cluster.sh 1 20000`.
#
# 1. Ceilings: `examples/ceilings` (release) starts its own PostgreSQL (fsync on) and moto and
#    prints moto PUT/GET MiB/s with p50/p99 and PostgreSQL single-row commits/s with p50/p99.
# 2. PostgreSQL (Debian's package; as the postgres user when root; scratch dir; free port;
#    fsync on) and moto on loopback, bucket `bench`; three `strom serve` in cluster mode
#    (ports 197x1..197x3, own data dirs, flush delay FLUSH_DELAY_MS) and one single-node
#    `strom serve` (fsync=always, the default).
# 3. `kafka_bench` (1 KiB, acks=all, linger.ms=5, one producer, idempotent unless IDEMPOTENCE=0, PARTITIONS
#    partitions, fresh topic per run, consumers librdkafka then raw Fetch) against the single
#    node, then the cluster with the producer bootstrapped on all three brokers and the
#    consumers bootstrapped on broker 3 (the raw consumer fetches every partition through broker
#    3; librdkafka fetches from each partition's leader, i.e. the broker that wrote it).
#    Around each cluster produce (after warm-up, and after the last acknowledgement) a hook
#    snapshots pg_stat_database.xact_commit and the committed objects in `strom_objects`;
#    commits are also counted over an idle period to subtract the brokers' background traffic.
#    The same hook snapshots the CPU seconds of moto, PostgreSQL (postmaster and backends), the
#    three brokers and the client (benches/cpu.py): the summary gives each one's CPU seconds per
#    GB produced and the produce rate the machine's cores allow at that total cost.
#    A saturating producer's latency is mostly its own queue, so each target also gets latency
#    runs at RATE records/s (below saturation, RATE_SECS each, produce only): their p99 is the
#    one the issue's latency goal is about. Last, a transactional producer (TXN_SIZE records per
#    transaction, each committed after its records are acknowledged) against the cluster, for
#    issue 18's transactional-vs-plain ratio.
# Every process is killed on exit (trap) and the scratch directories removed.
set -u
RUNS=${1:-3}
COUNT=${2:-300000}
PARTITIONS=${PARTITIONS:-12}
FLUSH_DELAY_MS=${FLUSH_DELAY_MS:-250}
RATE=${RATE:-10000}
RATE_SECS=${RATE_SECS:-8}
TXN_SIZE=${TXN_SIZE:-10000}
IDEMPOTENCE=${IDEMPOTENCE:-1}
BIN=${BIN_DIR:-target/release}
BASE=${BENCH_DIR:-target/cluster-bench}
SIZE=1024

for b in strom kafka_bench examples/ceilings; do
  [ -x "$BIN/$b" ] || { echo "missing $BIN/$b: cargo build --release -p strom -p strom-bench && cargo build --release -p strom-cluster --examples" >&2; exit 1; }
done
. "$(dirname "$0")/engines.sh"
check_engines || exit 1

mkdir -p "$BASE"
BASE=$(cd "$BASE" && pwd)
SUMMARY=$BASE/summary.txt
: >"$SUMMARY"
SCRATCH=$(mktemp -d /tmp/strom-cbench.XXXXXX)
PIDS=()
cleanup() {
  # Brokers first, so they stop while PostgreSQL and moto still answer.
  stop_pids "${PIDS[@]}"
  stop_engines
  rm -rf "$SCRATCH"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "# cluster benchmarks, $(date -u +%FT%TZ), runs=$RUNS, count=$COUNT x $SIZE B, partitions=$PARTITIONS, idempotence=$IDEMPOTENCE, flush delay $FLUSH_DELAY_MS ms, $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"

# --- 1. ceilings -------------------------------------------------------------------------------
echo "## ceilings (load: $(cut -d' ' -f1-3 /proc/loadavg))"
"$BIN/examples/ceilings" | tee "$BASE/ceilings.log"

# --- 2. servers --------------------------------------------------------------------------------
start_engines "$BASE" "$SCRATCH" bench || exit 1

export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test
BROKERS=()
for i in 1 2 3; do
  "$BIN/strom" serve --cluster-postgres "$PG_URL" --cluster-object-store s3://bench/strom \
    --cluster-s3-endpoint "http://127.0.0.1:$MOTO_PORT" --cluster-s3-allow-http --cluster-s3-region us-east-1 \
    --cluster-flush-delay-ms "$FLUSH_DELAY_MS" \
    --data-dir "$SCRATCH/broker$i" --kafka-listen "127.0.0.1:197${i}2" \
    --kinesis-listen "127.0.0.1:197${i}7" --http-listen "127.0.0.1:197${i}4" --log warn \
    >"$BASE/broker$i.log" 2>&1 &
  PIDS+=($!)
  BROKERS+=("127.0.0.1:197${i}2")
  wait_port "197${i}2" || { tail "$BASE/broker$i.log" >&2; exit 1; }
done
"$BIN/strom" serve --data-dir "$SCRATCH/single" --kafka-listen 127.0.0.1:19702 \
  --kinesis-listen 127.0.0.1:19707 --http-listen 127.0.0.1:19704 --log warn >"$BASE/single.log" 2>&1 &
SINGLE_PID=$!
PIDS+=("$SINGLE_PID")
wait_port 19702 || exit 1
# Let every broker see the other two in its live list (re-read every second).
sleep 3

# --- 3. runs -----------------------------------------------------------------------------------
IDEMP=()
[ "$IDEMPOTENCE" = 1 ] && IDEMP=(--idempotence)
COMMON=(--size "$SIZE" --count "$COUNT" --runs "$RUNS" --partitions "$PARTITIONS" --acks all
  --linger-ms 5 "${IDEMP[@]}" --consumer both)

echo "## single node, fsync=always (load: $(cut -d' ' -f1-3 /proc/loadavg))"
"$BIN/kafka_bench" --bootstrap 127.0.0.1:19702 --topic single "${COMMON[@]}" \
  --broker-pid "$SINGLE_PID" >"$BASE/single-bench.log" 2>&1
grep -E '^\||^run' "$BASE/single-bench.log"
grep '^summary' "$BASE/single-bench.log" | sed 's/^summary/mode=single/' | tee -a "$SUMMARY"
lat_run() { # $1 label, rest: kafka_bench flags
  local label=$1; shift
  "$BIN/kafka_bench" "$@" --topic "lat-$label" --size "$SIZE" --count $((RATE * RATE_SECS)) --runs "$RUNS" \
    --partitions "$PARTITIONS" --acks all --linger-ms 5 "${IDEMP[@]}" --consume-passes 0 --rate "$RATE" \
    >"$BASE/$label-latency.log" 2>&1
  grep -E '^\|' "$BASE/$label-latency.log"
  grep '^summary' "$BASE/$label-latency.log" | sed "s/^summary/mode=$label-at-rate/" | tee -a "$SUMMARY"
}
echo "## single node at $RATE records/s"
lat_run single --bootstrap 127.0.0.1:19702
# The single node is done: stop it so it does not share the machine with the cluster runs.
kill "$SINGLE_PID"; wait "$SINGLE_PID" 2>/dev/null

SNAP=$BASE/pg-snapshots.txt
: >"$SNAP"
# CPU seconds of each process group around each cluster produce (benches/cpu.py).
CPU_PY=$(cd "$(dirname "$0")" && pwd)/cpu.py
CPU_SNAP=$BASE/cpu-snapshots.txt
: >"$CPU_SNAP"
snapshot="sleep 1.2; psql -X -q -At -F ' ' -h 127.0.0.1 -p $PG_PORT -U postgres -d postgres -c \
\"select extract(epoch from clock_timestamp()), (select xact_commit from pg_stat_database where datname='postgres'), \
count(*), coalesce(sum(size),0) from strom_objects where state='committed'\" >>$SNAP; \
python3 $CPU_PY moto=${ENGINE_PIDS[1]} postgres=$PG_PID+ brokers=$(IFS=,; echo "${PIDS[*]:0:3}") client=\$PPID >>$CPU_SNAP"
# Background commits (heartbeats, live-list and metadata polls, each in its own transaction).
eval "$snapshot"; sleep 10; eval "$snapshot"
cp "$SNAP" "$BASE/idle-snapshots.txt"; : >"$SNAP"; : >"$CPU_SNAP"

echo "## cluster, 3 brokers, flush delay $FLUSH_DELAY_MS ms (load: $(cut -d' ' -f1-3 /proc/loadavg))"
BOOT=$(IFS=,; echo "${BROKERS[*]}")
"$BIN/kafka_bench" --bootstrap "$BOOT" --consume-bootstrap "${BROKERS[2]}" --topic cluster "${COMMON[@]}" \
  --before-produce "$snapshot" --after-produce "$snapshot" >"$BASE/cluster-bench.log" 2>&1
grep -E '^\||^run' "$BASE/cluster-bench.log"
grep '^summary' "$BASE/cluster-bench.log" | sed 's/^summary/mode=cluster/' | tee -a "$SUMMARY"
echo "## cluster at $RATE records/s"
lat_run cluster --bootstrap "$BOOT"
echo "## cluster, transactional: $TXN_SIZE records per transaction (load: $(cut -d' ' -f1-3 /proc/loadavg))"
"$BIN/kafka_bench" --bootstrap "$BOOT" --topic cluster-txn --size "$SIZE" --count "$COUNT" --runs "$RUNS" \
  --partitions "$PARTITIONS" --acks all --linger-ms 5 --transaction-size "$TXN_SIZE" --consume-passes 0 \
  >"$BASE/cluster-txn-bench.log" 2>&1
grep -E '^\||^run' "$BASE/cluster-txn-bench.log"
grep '^summary' "$BASE/cluster-txn-bench.log" | sed 's/^summary/mode=cluster-txn/' | tee -a "$SUMMARY"
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "objects by state: $(sql "select state, count(*) from strom_objects group by state" | tr '\n' ' ')"
echo "batch index rows: $(sql "select count(*) from strom_batches")"

python3 - "$SUMMARY" "$BASE/ceilings.log" "$BASE/idle-snapshots.txt" "$SNAP" "$SIZE" "$FLUSH_DELAY_MS" "$CPU_SNAP" "$(nproc)" <<'EOF'
import re, statistics, sys
summary, ceil_log, idle_f, snap_f, size, delay, cpu_f, cores = sys.argv[1:9]
size, delay = int(size), float(delay)
rows = {}
for line in open(summary):
    f = dict(x.split("=", 1) for x in line.split())
    rows[f["mode"]] = {k: float(v) for k, v in f.items() if k not in ("mode",)}
ceil = {}
for line in open(ceil_log):
    cells = [c.strip() for c in line.strip().strip("|").split("|")]
    if len(cells) == 6 and cells[1].isdigit():
        ceil[cells[0]] = dict(ops_s=float(cells[2]), mib_s=float(cells[3]), p50=float(cells[4]), p99=float(cells[5]))
def snaps(path):
    return [tuple(float(x) for x in l.split()) for l in open(path) if l.strip()]
idle = snaps(idle_f)
idle_rate = (idle[1][1] - idle[0][1]) / (idle[1][0] - idle[0][0]) if len(idle) == 2 else 0.0
runs = snaps(snap_f)
per_run = []
for a, b in zip(runs[0::2], runs[1::2]):
    secs = b[0] - a[0]
    commits = b[1] - a[1]
    objects = b[2] - a[2]
    gib = (b[3] - a[3]) / 2**30
    net = commits - idle_rate * secs
    per_run.append(dict(secs=secs, commits=commits, net=net, objects=objects, gib=gib,
                        commits_gib=commits / gib if gib else 0, net_gib=net / gib if gib else 0,
                        obj_mib=(b[3] - a[3]) / objects / 2**20 if objects else 0))
med = lambda k: statistics.median(r[k] for r in per_run) if per_run else float("nan")
put = max((v for k, v in ceil.items() if k.startswith("moto PUT")), key=lambda v: v["mib_s"], default=None)
put_1m = ceil.get("moto PUT 1024 KiB x1") or put
pg1 = next((v for k, v in ceil.items() if k.startswith("postgres commit") and k.endswith("x1")), None)
flush = next((v for k, v in ceil.items() if k.startswith("writer flush")), None)
s, c = rows.get("single", {}), rows.get("cluster", {})
print("\n# Medians")
for k, v in ceil.items():
    print(f"ceiling {k}: {v['ops_s']:.0f} ops/s, {v['mib_s']:.1f} MiB/s, p50 {v['p50']:.1f} ms, p99 {v['p99']:.1f} ms")
print(f"idle PostgreSQL commits: {idle_rate:.1f}/s (3 brokers' background)")
print("| mode | produce MB/s | produce rec/s | p99 ms | librdkafka consume MB/s | raw consume MB/s |")
print("|---|---|---|---|---|---|")
for m in ("single", "cluster", "single-at-rate", "cluster-at-rate", "cluster-txn"):
    r = rows.get(m, {})
    print(f"| {m} | {r.get('produce_mb_s', 0):.1f} | {r.get('produce_rec_s', 0):.0f} | {r.get('produce_p99_ms', 0):.1f} | "
          f"{r.get('consume_mb_s', 0):.1f} | {r.get('raw_consume_mb_s', 0):.1f} |")
for i, r in enumerate(per_run):
    print(f"cluster run {i}: {r['secs']:.1f} s between snapshots, {r['commits']:.0f} commits ({r['net']:.0f} net of idle), "
          f"{r['objects']:.0f} objects ({r['obj_mib']:.2f} MiB each), {r['gib']:.3f} GiB, "
          f"{r['commits_gib']:.0f} commits/GiB ({r['net_gib']:.0f} net), {r['net'] / r['objects'] if r['objects'] else 0:.2f} net commits/object")
print(f"median: {med('commits_gib'):.0f} commits/GiB ({med('net_gib'):.0f} net of idle), {med('objects') / med('gib') if med('gib') else 0:.0f} objects/GiB")
# CPU seconds per GB produced, by process group, and the produce rate the cores allow at that cost.
cpu = []
for line in open(cpu_f):
    f = line.split()
    if f:
        cpu.append((float(f[0]), {k: float(v) for k, v in (x.split("=", 1) for x in f[1:])}))
cpu_runs = []
for (ta, a), (tb, b), r in zip(cpu[0::2], cpu[1::2], per_run):
    gb = r["gib"] * 2**30 / 1e9
    if gb > 0:
        cpu_runs.append({k: (b[k] - a.get(k, 0.0)) / gb for k in b})
if cpu_runs:
    groups = list(cpu_runs[0])
    per = {k: statistics.median(r[k] for r in cpu_runs) for k in groups}
    total = sum(per.values())
    print("CPU s/GB produced (median of runs): " + ", ".join(f"{k} {v:.2f}" for k, v in per.items())
          + f"; total {total:.2f} -> {int(cores)} cores allow at most {1000 * int(cores) / total:.0f} MB/s")
t = rows.get("cluster-txn", {})
if t and c:
    print(f"transactional produce in the cluster: {t['produce_mb_s']:.1f} MB/s = "
          f"{100 * t['produce_mb_s'] / c['produce_mb_s']:.0f} % of plain produce ({c['produce_mb_s']:.1f} MB/s)")
mb = 1e6 / 2**20  # MB -> MiB
if put and s and c:
    put_mb = put["mib_s"] / mb
    goal_tp = min(0.7 * put_mb, 0.5 * s["produce_mb_s"])
    print(f"goal produce >= min(70 % of PUT {put_mb:.0f} MB/s, 50 % of single {s['produce_mb_s']:.1f} MB/s) = {goal_tp:.1f} MB/s: "
          f"{c['produce_mb_s']:.1f} MB/s = {100 * c['produce_mb_s'] / put_mb:.0f} % of PUT, "
          f"{100 * c['produce_mb_s'] / s['produce_mb_s']:.0f} % of single: {'met' if c['produce_mb_s'] >= goal_tp else 'NOT met'}")
if put_1m and pg1:
    bound = delay + 2 * (put_1m["p99"] + pg1["p99"])
    for m in ("cluster-at-rate", "cluster"):
        r = rows.get(m, {})
        print(f"goal p99 <= {delay:.0f} + 2 x ({put_1m['p99']:.1f} PUT 1 MiB p99 + {pg1['p99']:.1f} commit p99) = {bound:.1f} ms, {m}: "
              f"{r.get('produce_p99_ms', 0):.1f} ms: {'met' if r.get('produce_p99_ms', 1e9) <= bound else 'NOT met'}")
if s and c:
    for k, name in (("consume_mb_s", "librdkafka"), ("raw_consume_mb_s", "raw fetch")):
        if s.get(k):
            print(f"goal tail consume >= 70 % of single ({name}): {c.get(k, 0):.1f} / {s[k]:.1f} MB/s = "
                  f"{100 * c.get(k, 0) / s[k]:.0f} %: {'met' if c.get(k, 0) >= 0.7 * s[k] else 'NOT met'}")
EOF
