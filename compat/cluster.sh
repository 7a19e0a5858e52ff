#!/usr/bin/env bash
# Real clients across the brokers of a cluster (issue 17): starts PostgreSQL (Debian's package,
# as the postgres user when root, scratch directory, free port), moto (S3 on loopback) and three
# `strom serve` brokers in cluster mode, then runs compat/cluster_clients.py: confluent-kafka,
# kafka-python and kcat each produce through one broker and consume through another (exactly
# once, in order), and admin operations (create topic, alter config) made through one broker
# are seen through another; then compat/cluster_kinesis.py: boto3 and the AWS CLI against
# different brokers' Kinesis endpoints (streams, iterators and resharding across brokers); last
# compat/cluster_kafkajs_txn.js (issue 18): kafkajs consume-transform-produce transactions while
# the transactional id's coordinator broker is killed and restarted ($SCRATCH/broker.sh starts
# and kills a broker on its ports), the output read read_committed once per input.
#
# Run by compat/run.sh (bounded by its timeout) with COMPAT_STROM_BIN and the venv's python as
# COMPAT_VENV_PYTHON; prints PASS/FAIL/SKIP lines like the other compat scripts. Every process it
# started is stopped on exit (trap) and the scratch directory removed. SKIPs (does not fail)
# when PostgreSQL or moto is not installed: .ci/run installs both.
set -uo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
BIN=${COMPAT_STROM_BIN:?COMPAT_STROM_BIN must name the strom binary}
PYTHON=${COMPAT_VENV_PYTHON:-python3}

PG_BIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
if [[ -z $PG_BIN || ! -x $PG_BIN/initdb ]]; then
    echo "SKIP cluster/start: no PostgreSQL under /usr/lib/postgresql (apt-get install postgresql)"
    exit 0
fi
if ! python3 -c 'import moto.server' 2>/dev/null; then
    echo "SKIP cluster/start: moto is not installed (pip install 'moto[server]')"
    exit 0
fi

SCRATCH=$(mktemp -d "${TMPDIR:-/tmp}/strom-compat-cluster.XXXXXX")
# The brokers' --log filter (COMPAT_CLUSTER_LOG, e.g. "warn,strom_broker::group=debug" to
# diagnose); COMPAT_CLUSTER_LOG_DIR keeps their logs there after the run.
BROKER_LOG=${COMPAT_CLUSTER_LOG:-warn}
BROKER_PIDS=()
MOTO_PID=
PG_PID=
cleanup() {
    local p f
    if [[ -n ${COMPAT_CLUSTER_LOG_DIR:-} ]]; then
        mkdir -p "$COMPAT_CLUSTER_LOG_DIR" && cp "$SCRATCH"/broker*.log "$COMPAT_CLUSTER_LOG_DIR"/ 2>/dev/null
    fi
    # Brokers are started by $SCRATCH/broker.sh (also when a test restarts one): their pid files.
    for f in "$SCRATCH"/broker*.pid; do [[ -f $f ]] && BROKER_PIDS+=("$(cat "$f")"); done
    for p in "${BROKER_PIDS[@]}"; do kill "$p" 2>/dev/null; done
    for p in "${BROKER_PIDS[@]}"; do
        for _ in $(seq 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$p" 2>/dev/null
    done
    if [[ -n $MOTO_PID ]]; then
        kill "$MOTO_PID" 2>/dev/null
        for _ in $(seq 50); do kill -0 "$MOTO_PID" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$MOTO_PID" 2>/dev/null
        wait "$MOTO_PID" 2>/dev/null
    fi
    local postmaster
    postmaster=$(head -1 "$SCRATCH/pg/postmaster.pid" 2>/dev/null)
    if [[ -n $postmaster ]]; then
        # Immediate shutdown; its backends (own sessions) follow the postmaster.
        kill -QUIT "$postmaster" 2>/dev/null
        for _ in $(seq 100); do kill -0 "$postmaster" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$postmaster" 2>/dev/null
    fi
    [[ -n $PG_PID ]] && wait "$PG_PID" 2>/dev/null
    rm -rf "$SCRATCH"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { # PORT PID: 0 once PORT accepts connections, 1 if PID died or 30 s passed
    for _ in $(seq 300); do
        kill -0 "$2" 2>/dev/null || return 1
        (: <>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.1
    done
    return 1
}
as_pg() { if [[ $(id -u) == 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi; }

start_servers() {
    chmod 0755 "$SCRATCH"
    mkdir -p "$SCRATCH/pg" "$SCRATCH/sock"
    [[ $(id -u) == 0 ]] && chown postgres:postgres "$SCRATCH/pg" "$SCRATCH/sock"
    as_pg "$PG_BIN/initdb" -U postgres --auth=trust -E UTF8 --no-sync -D "$SCRATCH/pg" \
        >"$SCRATCH/initdb.log" 2>&1 || { tail "$SCRATCH/initdb.log"; echo "initdb failed"; return 1; }
    local pg_port
    pg_port=$(free_port)
    as_pg "$PG_BIN/postgres" -D "$SCRATCH/pg" -p "$pg_port" -k "$SCRATCH/sock" \
        -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200 \
        >"$SCRATCH/postgres.log" 2>&1 &
    PG_PID=$!
    local ready=
    for _ in $(seq 300); do
        "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$pg_port" && { ready=1; break; }
        sleep 0.1
    done
    [[ -n $ready ]] || { tail "$SCRATCH/postgres.log"; echo "postgres not ready"; return 1; }

    local moto_port
    moto_port=$(free_port)
    python3 -m moto.server -H 127.0.0.1 -p "$moto_port" >"$SCRATCH/moto.log" 2>&1 &
    MOTO_PID=$!
    wait_port "$moto_port" "$MOTO_PID" || { tail "$SCRATCH/moto.log"; echo "moto not ready"; return 1; }
    "$PYTHON" -c 'import sys, urllib.request
r = urllib.request.urlopen(urllib.request.Request(sys.argv[1], method="PUT"), timeout=10)
assert r.status == 200, r.status' "http://127.0.0.1:$moto_port/compat" ||
        { echo "cannot create the bucket"; return 1; }

    local i kafka kinesis brokers=() endpoints=() kafka_ports=(-) kinesis_ports=(-)
    for i in 1 2 3; do
        kafka_ports+=("$(free_port)")
        kinesis_ports+=("$(free_port)")
        brokers+=("127.0.0.1:${kafka_ports[i]}")
        endpoints+=("http://127.0.0.1:${kinesis_ports[i]}")
    done
    # `broker.sh start N` starts broker N (on its ports, pid in broker<N>.pid), `broker.sh kill N`
    # kills it with SIGKILL: used here and by tests that restart a broker.
    {
        echo '#!/usr/bin/env bash'
        echo 'set -u'
        declare -p SCRATCH BIN pg_port moto_port kafka_ports kinesis_ports BROKER_LOG
        declare -f wait_port
        cat <<'BROKER'
i=$2
case $1 in
kill)
    kill -9 "$(cat "$SCRATCH/broker$i.pid")" 2>/dev/null
    sleep 0.5
    ;;
start)
    # STROM_* variables of the caller must not change what the brokers do.
    # shellcheck disable=SC2046  # one "-u NAME" pair per variable
    env $(compgen -e | grep '^STROM_' | sed 's/^/-u /') \
        AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test \
        "$BIN" serve --data-dir "$SCRATCH/broker$i" \
        --kafka-listen "127.0.0.1:${kafka_ports[i]}" --kinesis-listen "127.0.0.1:${kinesis_ports[i]}" \
        --http-listen 127.0.0.1:0 \
        --cluster-postgres "postgres://postgres@127.0.0.1:$pg_port/postgres?connect_timeout=5" \
        --cluster-object-store s3://compat/strom \
        --cluster-s3-endpoint "http://127.0.0.1:$moto_port" --cluster-s3-allow-http \
        --cluster-s3-region us-east-1 --cluster-flush-delay-ms 20 --cluster-lease-ttl-ms 3000 \
        --group-initial-rebalance-delay-ms 0 --log "$BROKER_LOG" \
        >>"$SCRATCH/broker$i.log" 2>&1 &
    echo $! >"$SCRATCH/broker$i.pid"
    wait_port "${kafka_ports[i]}" "$!" || { tail "$SCRATCH/broker$i.log"; echo "broker $i did not start"; exit 1; }
    wait_port "${kinesis_ports[i]}" "$!" || { tail "$SCRATCH/broker$i.log"; echo "broker $i: no Kinesis endpoint"; exit 1; }
    ;;
*) echo "usage: broker.sh start|kill N" >&2; exit 2 ;;
esac
BROKER
    } >"$SCRATCH/broker.sh"
    chmod +x "$SCRATCH/broker.sh"
    for i in 1 2 3; do
        "$SCRATCH/broker.sh" start "$i" || return 1
    done
    COMPAT_CLUSTER_BROKERS=$(IFS=,; echo "${brokers[*]}")
    COMPAT_CLUSTER_KINESIS=$(IFS=,; echo "${endpoints[*]}")
}

echo "== cluster: PostgreSQL + moto + three brokers"
start=$SECONDS
# In this shell (not a subshell), so that the EXIT trap sees the pids.
if ! start_servers >"$SCRATCH/start.log" 2>&1; then
    sed 's/^/     | /' "$SCRATCH/start.log"
    echo "FAIL cluster/start: $(tail -n1 "$SCRATCH/start.log")"
    exit 1
fi
echo "PASS cluster/start ($((SECONDS - start))s): brokers $COMPAT_CLUSTER_BROKERS"

export COMPAT_CLUSTER_BROKERS COMPAT_CLUSTER_KINESIS
"$PYTHON" "$HERE/cluster_clients.py"
rc=$?
"$PYTHON" "$HERE/cluster_kinesis.py" || rc=1
if command -v node >/dev/null 2>&1 && [[ -d $HERE/node_modules/kafkajs || -n ${NODE_PATH:-} ]]; then
    # Kills and restarts a broker: last, so the other clients see a steady cluster.
    (cd "$HERE" && COMPAT_CLUSTER_RESTART="$SCRATCH/broker.sh" timeout 180 node cluster_kafkajs_txn.js) || rc=1
else
    echo "SKIP kafkajs-cluster: kafkajs is not installed (compat/install.sh needs npm)"
fi
if ((rc != 0)); then
    for i in 1 2 3; do
        echo "   last lines of broker $i's log:"
        tail -n 15 "$SCRATCH/broker$i.log" | sed 's/^/   | /'
    done
fi
for i in 1 2 3; do
    if grep -q "panicked" "$SCRATCH/broker$i.log"; then
        echo "FAIL cluster/no_panic: broker $i panicked"
        rc=1
    fi
done
exit "$rc"
