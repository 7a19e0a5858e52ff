# shellcheck shell=bash
# Starting and stopping a `strom serve` for the compat scripts: sourced by compat/run.sh and
# compat/librdkafka_tests.sh, not run.
#
# The caller sets:
#   BIN            the strom binary
#   WORK           a scratch directory it owns (the data lives in $WORK/data)
#   BROKER_LOG     where the broker's output goes
#   BROKER_EXTRA   (optional array) more `strom serve` flags
#   BROKER_PARTITIONS (optional) partitions of auto-created topics (default 1, Kafka's default)
#   BROKER_SASL    (optional) 1: $PORT is a SASL_PLAINTEXT listener (BROKER_EXTRA then names
#                  the mechanisms), and a PLAINTEXT listener on $ADMIN_PORT serves the CLI
#   BROKER_TLS_DIR (optional, with BROKER_SASL=1) a directory with server.pem and server.key
#                  (compat/strom_setup.py tls DIR): SASL_SSL on $SASL_SSL_PORT and SSL on
#                  $SSL_PORT too, both advertised as localhost (the certificate's name)
# and gets, after broker_start:
#   BROKER_PID, PORT (Kafka), ADMIN_PORT (Kafka, PLAINTEXT; = PORT unless BROKER_SASL=1),
#   SASL_SSL_PORT and SSL_PORT (with BROKER_TLS_DIR), KINESIS_PORT, HTTP_PORT
# The ACL authorizer is on (so the ACL APIs answer rather than SECURITY_DISABLED) with
# allow.everyone.if.no.acl.found, as librdkafka's own test clusters run it: a resource without
# ACLs stays open to every client.
# Every listener is on a free loopback port, so several brokers (several compat runs, several
# worktrees) can run on one machine.

BROKER_PID=
BROKER_PYTHON=${BROKER_PYTHON:-python3}

# free_port: prints a loopback port that was free a moment ago.
free_port() {
    "$BROKER_PYTHON" -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])'
}

# broker_start_once: starts strom in the background on $PORT; returns 0 once the port accepts
# connections.
broker_start_once() {
    local i kafka
    if [[ ${BROKER_SASL:-0} == 1 && -n ${BROKER_TLS_DIR:-} ]]; then
        kafka=(--listeners "SASL_PLAINTEXT://127.0.0.1:$PORT,PLAINTEXT://127.0.0.1:$ADMIN_PORT,SASL_SSL://127.0.0.1:$SASL_SSL_PORT,SSL://127.0.0.1:$SSL_PORT"
            --advertised-listeners "SASL_SSL://localhost:$SASL_SSL_PORT,SSL://localhost:$SSL_PORT"
            --tls-cert "$BROKER_TLS_DIR/server.pem" --tls-key "$BROKER_TLS_DIR/server.key")
    elif [[ ${BROKER_SASL:-0} == 1 ]]; then
        kafka=(--listeners "SASL_PLAINTEXT://127.0.0.1:$PORT,PLAINTEXT://127.0.0.1:$ADMIN_PORT")
    else
        kafka=(--kafka-listen "127.0.0.1:$PORT" --advertised-host 127.0.0.1 --advertised-port "$PORT")
    fi
    # STROM_* variables of the caller must not change what the broker under test does.
    # shellcheck disable=SC2046  # one "-u NAME" pair per variable
    env $(compgen -e | grep '^STROM_' | sed 's/^/-u /') \
        "$BIN" serve \
        --data-dir "$WORK/data" \
        "${kafka[@]}" \
        --kinesis-listen "127.0.0.1:$KINESIS_PORT" \
        --http-listen "127.0.0.1:$HTTP_PORT" \
        --auto-create-topics true --num-partitions "${BROKER_PARTITIONS:-1}" \
        --authorizer --allow-everyone-if-no-acl-found \
        --log info \
        "${BROKER_EXTRA[@]}" \
        >>"$BROKER_LOG" 2>&1 &
    BROKER_PID=$!
    for ((i = 0; i < 300; i++)); do
        if ! kill -0 "$BROKER_PID" 2>/dev/null; then
            wait "$BROKER_PID"
            echo "   broker exited with status $? before accepting connections"
            BROKER_PID=
            return 1
        fi
        if (: <>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then
            return 0
        fi
        sleep 0.1
    done
    echo "   broker did not accept connections on port $PORT within 30s"
    return 1
}

# broker_start: up to three attempts on fresh free ports (a port may be taken between
# free_port and the bind). Returns 1 if the broker never came up.
broker_start() {
    local attempt
    [[ -n ${BROKER_EXTRA+x} ]] || BROKER_EXTRA=()
    for attempt in 1 2 3; do
        PORT=$(free_port)
        ADMIN_PORT=$PORT
        [[ ${BROKER_SASL:-0} == 1 ]] && ADMIN_PORT=$(free_port)
        SASL_SSL_PORT=$(free_port)
        SSL_PORT=$(free_port)
        KINESIS_PORT=$(free_port)
        HTTP_PORT=$(free_port)
        if broker_start_once; then
            return 0
        fi
        [[ -n $BROKER_PID ]] && kill -KILL "$BROKER_PID" 2>/dev/null
        BROKER_PID=
        echo "   attempt $attempt failed; broker log:"
        tail -n 20 "$BROKER_LOG" | sed 's/^/   | /'
    done
    return 1
}

# broker_kill: for EXIT traps; stops a broker that is still running, politely then not.
broker_kill() {
    if [[ -n $BROKER_PID ]] && kill -0 "$BROKER_PID" 2>/dev/null; then
        kill -TERM "$BROKER_PID" 2>/dev/null
        sleep 2
        kill -KILL "$BROKER_PID" 2>/dev/null
    fi
    BROKER_PID=
}

# broker_stop: SIGTERM, then waits up to 30s. Sets BROKER_STOP_WHY (why it was not clean) and
# returns:
#   0 stopped cleanly (exit 0 and "strom stopped cleanly" in the log)
#   1 the broker was already dead   2 still running after 30s (killed)
#   3 exited non-zero               4 exited 0 without the clean-stop line
# Call it directly, not in $(...): a subshell cannot wait for the broker.
broker_stop() {
    local i status
    BROKER_STOP_WHY=
    if ! kill -0 "$BROKER_PID" 2>/dev/null; then
        wait "$BROKER_PID"
        BROKER_STOP_WHY="the broker died during the run (status $?)"
        BROKER_PID=
        return 1
    fi
    kill -TERM "$BROKER_PID"
    for ((i = 0; i < 300; i++)); do
        kill -0 "$BROKER_PID" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$BROKER_PID" 2>/dev/null; then
        kill -KILL "$BROKER_PID"
        wait "$BROKER_PID" 2>/dev/null
        BROKER_PID=
        BROKER_STOP_WHY="still running 30s after SIGTERM (killed)"
        return 2
    fi
    wait "$BROKER_PID"
    status=$?
    BROKER_PID=
    if ((status != 0)); then
        BROKER_STOP_WHY="exited with status $status after SIGTERM"
        return 3
    fi
    if ! grep -q "strom stopped cleanly" "$BROKER_LOG"; then
        BROKER_STOP_WHY="exited 0 but did not print 'strom stopped cleanly'"
        return 4
    fi
    return 0
}

# broker_log_report: prints the broker's warnings and errors (how a client-visible problem shows
# up on its side, for example a connection closed on an unsupported request); returns 1 if the
# log has a panic.
broker_log_report() {
    if grep -Eq ' (WARN|ERROR) |panicked' "$BROKER_LOG"; then
        echo "   broker warnings and errors (full log: $(wc -l <"$BROKER_LOG") lines):"
        grep -E ' (WARN|ERROR) |panicked' "$BROKER_LOG" | head -n 40 | sed 's/^/   | /'
    fi
    ! grep -q "panicked" "$BROKER_LOG"
}
