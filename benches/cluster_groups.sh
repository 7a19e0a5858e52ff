#!/usr/bin/env bash
# Consumer groups across brokers (issue 18, "Performance") in one command, on one machine:
#
# 1. Rebalance time after a coordinator failover, against the lease TTL: three librdkafka
#    consumers (bootstrapped on all three brokers) share a 6-partition topic; the broker that
#    coordinates the group (FindCoordinator) is killed with `kill -9`; the time until every
#    partition is assigned again and each consumer's commit is accepted by the new
#    coordinator. Then the broker is restarted. (`group_bench --mode failover`.)
# 2. Offset commits per second across the cluster: CLIENTS consumers in as many groups (spread
#    over the coordinator shards, so over the three brokers) commit synchronously at once
#    (`group_bench --mode commit --clients`), with PostgreSQL's transactions counted over the
#    same interval (pg_stat_database.xact_commit), against PostgreSQL's own commit rate
#    measured in the same run (pgbench, one UPDATE per transaction, 1 and 8 connections).
#
#   benches/cluster_groups.sh [RUNS]                 (default: 3 failover runs per protocol)
#   env: LEASE_TTL_MS (2000; also try the default 10000), FLUSH_DELAY_MS (250), CLIENTS (8),
#        COMMITS (500 per client), PROTOCOLS (range,consumer), BENCH_DIR (target/cluster-groups-bench),
#        BIN_DIR (target/release)
#
# Run from the workspace root after `cargo build --release -p strom -p strom-bench`.
# Smoke run: `RUNS=1 COMMITS=50 benches/cluster_groups.sh 1`.
# Every process is killed on exit (trap) and the scratch directory removed.
set -u
RUNS=${1:-3}
LEASE_TTL_MS=${LEASE_TTL_MS:-2000}
FLUSH_DELAY_MS=${FLUSH_DELAY_MS:-250}
CLIENTS=${CLIENTS:-8}
COMMITS=${COMMITS:-500}
PROTOCOLS=${PROTOCOLS:-range,consumer}
BIN=${BIN_DIR:-target/release}
BASE=${BENCH_DIR:-target/cluster-groups-bench}

for b in strom group_bench; do
  [ -x "$BIN/$b" ] || { echo "missing $BIN/$b: cargo build --release -p strom -p strom-bench" >&2; exit 1; }
done
. "$(dirname "$0")/engines.sh"
check_engines || exit 1

mkdir -p "$BASE"
BASE=$(cd "$BASE" && pwd)
SCRATCH=$(mktemp -d /tmp/strom-gbench.XXXXXX)
declare -A BROKER_PID
cleanup() {
  # Brokers first, so they stop while PostgreSQL and moto still answer.
  stop_pids "${BROKER_PID[@]}"
  stop_engines
  rm -rf "$SCRATCH"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "# cluster group benchmarks, $(date -u +%FT%TZ), lease TTL $LEASE_TTL_MS ms, flush delay $FLUSH_DELAY_MS ms, $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"

# --- servers -----------------------------------------------------------------------------------
start_engines "$BASE" "$SCRATCH" bench || exit 1

export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test
start_broker() { # $1 = 1..3; Kafka on 198${1}2
  "$BIN/strom" serve --cluster-postgres "$PG_URL" --cluster-object-store s3://bench/strom \
    --cluster-s3-endpoint "http://127.0.0.1:$MOTO_PORT" --cluster-s3-allow-http --cluster-s3-region us-east-1 \
    --cluster-flush-delay-ms "$FLUSH_DELAY_MS" --cluster-lease-ttl-ms "$LEASE_TTL_MS" \
    --group-initial-rebalance-delay-ms 0 \
    --data-dir "$SCRATCH/broker$1" --kafka-listen "127.0.0.1:198${1}2" \
    --kinesis-listen "127.0.0.1:198${1}7" --http-listen "127.0.0.1:198${1}4" --log warn \
    >>"$BASE/broker$1.log" 2>&1 &
  BROKER_PID[$1]=$!
  wait_port "198${1}2" || { tail "$BASE/broker$1.log" >&2; exit 1; }
}
for i in 1 2 3; do start_broker "$i"; done
BOOT=127.0.0.1:19812,127.0.0.1:19822,127.0.0.1:19832
# Let every broker see the others live, and the coordinator shards settle on their preferred
# brokers (handed over once a broker has been live for two lease TTLs).
sleep $(( 2 + 3 * LEASE_TTL_MS / 1000 ))

# --- 1. failover -------------------------------------------------------------------------------
# The hooks run inside group_bench; they reach this shell's state through files and signals.
cat >"$SCRATCH/kill.sh" <<KILL
#!/usr/bin/env bash
# \$COORDINATOR = 127.0.0.1:198N2 -> broker N
n=\${COORDINATOR#127.0.0.1:198}; n=\${n%2}
kill -9 "\$(cat "$SCRATCH/pid\$n")"
KILL
cat >"$SCRATCH/restore.sh" <<RESTORE
#!/usr/bin/env bash
n=\${COORDINATOR#127.0.0.1:198}; n=\${n%2}
echo "\$n" >"$SCRATCH/restart-request"
while [ -e "$SCRATCH/restart-request" ]; do sleep 0.1; done
RESTORE
chmod +x "$SCRATCH/kill.sh" "$SCRATCH/restore.sh"
for i in 1 2 3; do echo "${BROKER_PID[$i]}" >"$SCRATCH/pid$i"; done

echo "## failover: kill -9 of the group's coordinator -> group served again (lease TTL $LEASE_TTL_MS ms; load $(cut -d' ' -f1-3 /proc/loadavg))"
"$BIN/group_bench" --mode failover --bootstrap "$BOOT" --runs "$RUNS" --protocols "$PROTOCOLS" \
  --kill-command "$SCRATCH/kill.sh" --restore-command "$SCRATCH/restore.sh" \
  >"$BASE/failover.log" 2>&1 &
BENCH=$!
# Restart brokers on request (the broker's pid must be this shell's child to be reaped here).
while kill -0 "$BENCH" 2>/dev/null; do
  if [ -e "$SCRATCH/restart-request" ]; then
    n=$(cat "$SCRATCH/restart-request")
    wait "${BROKER_PID[$n]}" 2>/dev/null
    start_broker "$n"
    echo "${BROKER_PID[$n]}" >"$SCRATCH/pid$n"
    # Let it register and take its preferred shards back before the next run.
    sleep $(( 2 + 3 * LEASE_TTL_MS / 1000 ))
    rm -f "$SCRATCH/restart-request"
  fi
  sleep 0.1
done
wait "$BENCH"
cat "$BASE/failover.log"

# --- 2. commits/s -------------------------------------------------------------------------------
echo "## PostgreSQL commit rate (pgbench, one UPDATE per transaction, 5 s; load $(cut -d' ' -f1-3 /proc/loadavg))"
sql "CREATE TABLE IF NOT EXISTS bench_counter (id int PRIMARY KEY, n bigint); INSERT INTO bench_counter VALUES (1, 0) ON CONFLICT DO NOTHING" >/dev/null
echo "UPDATE bench_counter SET n = n + 1 WHERE id = 1 + (random() * 0)::int;" >"$SCRATCH/pgbench.sql"
for conns in 1 8; do
  tps=$("$PG_BIN/pgbench" -n -h 127.0.0.1 -p "$PG_PORT" -U postgres -c "$conns" -j "$conns" -T 5 \
    -f "$SCRATCH/pgbench.sql" postgres 2>/dev/null | sed -n 's/^tps = \([0-9.]*\).*/\1/p')
  echo "postgres commits/s with $conns connection(s): ${tps:-n/a}"
done

echo "## offset commits across the cluster: $CLIENTS clients x $COMMITS sync commits (load $(cut -d' ' -f1-3 /proc/loadavg))"
x0=$(sql "select xact_commit from pg_stat_database where datname='postgres'"); t0=$(date +%s.%N)
"$BIN/group_bench" --mode commit --bootstrap "$BOOT" --clients "$CLIENTS" --commits "$COMMITS" \
  >"$BASE/commit.log" 2>&1
x1=$(sql "select xact_commit from pg_stat_database where datname='postgres'"); t1=$(date +%s.%N)
grep -E '^\|' "$BASE/commit.log"
commits=$(sed -n 's/^summary commits=\([0-9]*\).*/\1/p' "$BASE/commit.log")
python3 -c "
x0, x1, t0, t1, c = $x0, $x1, $t0, $t1, ${commits:-0}
print(f'postgres transactions during the run: {x1 - x0} in {t1 - t0:.1f} s = {(x1 - x0) / (t1 - t0):.0f}/s'
      f' (all brokers, background included); {((x1 - x0) / c) if c else float(\"nan\"):.2f} per offset commit')
"
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
