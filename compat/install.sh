#!/usr/bin/env bash
# Installs what compat/run.sh needs, idempotently:
#   - compat/.venv: a Python venv with the pinned clients of compat/requirements.txt
#     (reinstalled only when requirements.txt changed or the venv cannot import them);
#   - kcat from Debian (it links Debian's librdkafka, 2.0.2 on Debian 12), only if missing;
#   - a C/C++ toolchain (gcc, g++, make) for compat/librdkafka_tests.sh, which builds librdkafka's
#     test runner from the rdkafka-sys crate source, only if missing (zlib1g-dev is optional:
#     librdkafka's configure leaves gzip out without it).
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
VENV=$HERE/.venv
REQUIREMENTS=$HERE/requirements.txt
STAMP=$VENV/.installed-requirements.txt
PYTHON=${COMPAT_PYTHON:-python3}

venv_ok() {
    [[ -x $VENV/bin/python ]] &&
        cmp -s "$REQUIREMENTS" "$STAMP" &&
        "$VENV/bin/python" -c 'import confluent_kafka, kafka, lz4, zstandard, snappy, boto3, awscli' 2>/dev/null
}

if venv_ok; then
    echo "compat/install: venv up to date ($VENV)"
else
    echo "compat/install: creating $VENV with $(tr '\n' ' ' < <(grep -v '^#' "$REQUIREMENTS"))"
    rm -rf "$VENV"
    "$PYTHON" -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check --no-input -r "$REQUIREMENTS"
    cp "$REQUIREMENTS" "$STAMP"
    venv_ok || { echo "compat/install: the venv still cannot import the clients" >&2; exit 1; }
fi

apt_install() {
    local SUDO=()
    if [[ $(id -u) -ne 0 ]]; then
        SUDO=(sudo -n)
    fi
    export DEBIAN_FRONTEND=noninteractive
    "${SUDO[@]}" apt-get update -qq
    "${SUDO[@]}" apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

missing=()
for tool in gcc g++ make; do
    command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
if ((${#missing[@]})); then
    echo "compat/install: installing ${missing[*]} with apt-get (to build librdkafka's test runner)"
    apt_install "${missing[@]}"
else
    echo "compat/install: C/C++ toolchain present"
fi

if command -v openssl >/dev/null 2>&1; then
    echo "compat/install: openssl present (test_tls.py makes its certificates with it)"
else
    echo "compat/install: installing openssl with apt-get (test_tls.py makes its certificates with it)"
    apt_install openssl
fi

if command -v kcat >/dev/null 2>&1; then
    echo "compat/install: kcat present ($(command -v kcat))"
else
    echo "compat/install: installing kcat with apt-get"
    apt_install kcat
    command -v kcat >/dev/null 2>&1 || { echo "compat/install: kcat still missing" >&2; exit 1; }
fi

# kafkajs for compat/test_sasl.sh (pinned in compat/package.json; no lock file is written).
if command -v npm >/dev/null 2>&1; then
    if [[ -f $HERE/node_modules/kafkajs/package.json ]] &&
        grep -q '"version": "2.2.4"' "$HERE/node_modules/kafkajs/package.json"; then
        echo "compat/install: kafkajs present"
    else
        echo "compat/install: installing kafkajs with npm"
        (cd "$HERE" && npm install --no-package-lock --no-audit --no-fund --silent) ||
            echo "compat/install: kafkajs could not be installed; its checks will be skipped" >&2
    fi
else
    echo "compat/install: no npm, kafkajs checks will be skipped"
fi
