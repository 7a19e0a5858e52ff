# Sourced by the cluster bench scripts (benches/cluster.sh, benches/cluster_groups.sh): loopback
# ports, and the two engines cluster mode runs on — PostgreSQL from Debian's package (fsync on,
# as the postgres user when root, a scratch data directory, a free port) and moto with a bucket.
#
#   start_engines BASE SCRATCH BUCKET   logs to BASE/{initdb,postgres,moto}.log; data under SCRATCH
#     sets PG_BIN PG_PORT PG_URL PG_PID (the postmaster) MOTO_PORT, and ENGINE_PIDS
#   stop_engines                        moto, then PostgreSQL (SIGQUIT to the postmaster: its
#                                       backends call setsid(), so killing the runuser parent
#                                       does not reach them), each bounded to 10 s then SIGKILL
#   stop_pids PID...                    SIGTERM, up to 15 s each, then SIGKILL and reap
#   sql STATEMENT                       one statement through psql, unaligned
#   free_port, wait_port PORT, as_pg CMD..., median (stdin numbers -> one decimal)

ENGINE_PIDS=()
PG_PID=""

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { # $1 port
  for _ in $(seq 300); do
    (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0
    sleep 0.1
  done
  echo "nothing listening on port $1 after 30 s" >&2
  return 1
}
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
median() { python3 -c 'import sys,statistics; v=[float(x) for x in sys.stdin.read().split()]; print(f"{statistics.median(v):.1f}" if v else "n/a")'; }

# Fails (returns 1, with the reason on stderr) when an engine is missing.
check_engines() {
  PG_BIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
  [ -n "$PG_BIN" ] || { echo "no PostgreSQL under /usr/lib/postgresql (apt-get install postgresql)" >&2; return 1; }
  python3 -c 'import moto' 2>/dev/null || { echo "moto is needed (python3 -m moto.server)" >&2; return 1; }
  command -v psql >/dev/null || { echo "psql is needed" >&2; return 1; }
}

start_engines() { # $1 BASE (logs), $2 SCRATCH (data), $3 bucket
  local base=$1 scratch=$2 bucket=$3
  check_engines || return 1
  chmod 0755 "$scratch"
  mkdir -p "$scratch/pg" "$scratch/sock"
  [ "$(id -u)" = 0 ] && chown postgres:postgres "$scratch/pg" "$scratch/sock"
  as_pg "$PG_BIN/initdb" -U postgres --auth=trust -E UTF8 --no-sync -D "$scratch/pg" >"$base/initdb.log" 2>&1 ||
    { cat "$base/initdb.log" >&2; return 1; }
  PG_PORT=$(free_port)
  as_pg "$PG_BIN/postgres" -D "$scratch/pg" -p "$PG_PORT" -k "$scratch/sock" \
    -c listen_addresses=127.0.0.1 -c fsync=on -c max_connections=200 >"$base/postgres.log" 2>&1 &
  ENGINE_PIDS+=($!)
  for _ in $(seq 300); do "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT" && break; sleep 0.1; done
  PG_PID=$(head -1 "$scratch/pg/postmaster.pid")
  PG_URL="postgres://postgres@127.0.0.1:$PG_PORT/postgres"

  MOTO_PORT=$(free_port)
  python3 -m moto.server -H 127.0.0.1 -p "$MOTO_PORT" >"$base/moto.log" 2>&1 &
  ENGINE_PIDS+=($!)
  wait_port "$MOTO_PORT" || return 1
  curl -s -X PUT "http://127.0.0.1:$MOTO_PORT/$bucket" >/dev/null || { echo "cannot create the bucket" >&2; return 1; }
}

sql() { psql -X -q -At -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres -c "$1"; }

stop_pids() { # PID...
  local p
  for p in "$@"; do kill "$p" 2>/dev/null; done
  for p in "$@"; do
    for _ in $(seq 150); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$p" 2>/dev/null
    wait "$p" 2>/dev/null
  done
}

stop_engines() {
  local p
  for p in "${ENGINE_PIDS[@]}"; do kill "$p" 2>/dev/null; done
  for p in "${ENGINE_PIDS[@]}"; do
    for _ in $(seq 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$p" 2>/dev/null
    wait "$p" 2>/dev/null
  done
  if [ -n "$PG_PID" ]; then
    kill -QUIT "$PG_PID" 2>/dev/null
    for _ in $(seq 100); do kill -0 "$PG_PID" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$PG_PID" 2>/dev/null
  fi
}
