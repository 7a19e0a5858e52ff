#!/usr/bin/env bash
# SASL and TLS with confluent-kafka, kafka-python (compat/sasl_clients.py) and kafkajs
# (compat/sasl_kafkajs.js): PLAIN and SCRAM-SHA-256/512 over SASL_PLAINTEXT and SASL_SSL,
# OAUTHBEARER (confluent-kafka), plain SSL (kafkajs; test_tls.py covers the others), and the
# refusals each client reports: wrong password, expired token, untrusted server certificate.
#
# The script runs a broker of its own (compat/broker.sh) with four listeners: SASL_PLAINTEXT on
# $PORT, SASL_SSL on $SASL_SSL_PORT and SSL on $SSL_PORT, where the clients run, and PLAINTEXT on
# loopback $ADMIN_PORT, where `strom user scram set` creates the user first (both mechanisms;
# PLAIN checks the same credentials). Its certificate, a CA it does not use and the key that
# signs OAUTHBEARER tokens (with the JWKS file the broker validates them against) are made by
# compat/strom_setup.py in the scratch directory.
#
# Run by compat/run.sh (COMPAT_STROM_BIN is the broker binary). Prints PASS/FAIL lines and exits 1
# if a check failed.
set -uo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
BIN=${COMPAT_STROM_BIN:?COMPAT_STROM_BIN must name the strom binary}
PY=$HERE/.venv/bin/python
WORK=$(mktemp -d "${TMPDIR:-/tmp}/strom-compat-sasl.XXXXXX")
BROKER_LOG=$WORK/broker.log
BROKER_PYTHON=$PY
# shellcheck source=compat/broker.sh
source "$HERE/broker.sh"
# shellcheck disable=SC2317  # called by the EXIT trap
cleanup() {
    broker_kill
    rm -rf "$WORK"
}
trap cleanup EXIT
export COMPAT_SASL_USER=alice COMPAT_SASL_PASSWORD=alice-secret
FAILED=0

echo "== sasl: setting up a broker with SASL (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512, OAUTHBEARER) and TLS"
if ! (cd "$HERE" && "$PY" strom_setup.py tls "$WORK/tls"); then
    echo "FAIL sasl/setup: compat/strom_setup.py could not make the certificates"
    exit 1
fi
BROKER_SASL=1
BROKER_TLS_DIR=$WORK/tls
# No initial rebalance delay: every check joins a consumer group of its own, and waiting 3 s
# for more members each time would double this script's run time.
BROKER_EXTRA=(--sasl-enabled-mechanisms PLAIN,SCRAM-SHA-256,SCRAM-SHA-512,OAUTHBEARER
    --sasl-oauthbearer-jwks-file "$WORK/tls/jwks.json" --group-initial-rebalance-delay-ms 0)
if ! broker_start; then
    echo "FAIL sasl/setup: the SASL broker did not start"
    exit 1
fi
for mech in SCRAM-SHA-256 SCRAM-SHA-512; do
    if ! STROM_SCRAM_PASSWORD=$COMPAT_SASL_PASSWORD "$BIN" user scram set "$COMPAT_SASL_USER" \
        --mechanism "$mech" -b "127.0.0.1:$ADMIN_PORT" >/dev/null; then
        echo "FAIL sasl/setup: strom user scram set $mech failed"
        exit 1
    fi
done
echo "PASS sasl/setup"
export COMPAT_BOOTSTRAP=127.0.0.1:$PORT
export COMPAT_SASL_SSL_BOOTSTRAP=localhost:$SASL_SSL_PORT COMPAT_SSL_BOOTSTRAP=localhost:$SSL_PORT
export COMPAT_TLS_DIR=$WORK/tls

"$PY" "$HERE/sasl_clients.py" || FAILED=1

if command -v node >/dev/null 2>&1 && [[ -d $HERE/node_modules/kafkajs ]]; then
    (cd "$HERE" && timeout 120 node sasl_kafkajs.js) || FAILED=1
else
    echo "SKIP kafkajs-sasl: kafkajs is not installed (compat/install.sh needs npm)"
fi

if ! broker_stop; then
    echo "FAIL sasl/shutdown: $BROKER_STOP_WHY"
    FAILED=1
fi
if ! broker_log_report; then
    echo "FAIL sasl/no_panic: the broker log has a panic"
    FAILED=1
fi
exit "$FAILED"
