#!/usr/bin/env python3
"""SASL over SASL_PLAINTEXT and SASL_SSL against Strom with confluent-kafka and kafka-python.

Run by compat/test_sasl.sh against a broker it started with PLAIN, SCRAM-SHA-256,
SCRAM-SHA-512 and OAUTHBEARER enabled and users created beforehand (COMPAT_SASL_USER /
COMPAT_SASL_PASSWORD). With COMPAT_SASL_SSL_BOOTSTRAP and COMPAT_TLS_DIR (the CA, a CA the broker
does not use, and the key that signs OAUTHBEARER tokens; see strom_setup.py) the checks run over
SASL_SSL too. For each client, protocol and mechanism: produce a record and read it back. Refused
with the error each client reports: a wrong password (both clients), an expired OAUTHBEARER token
(confluent-kafka's oauth_cb), a server certificate from an untrusted CA (both clients).

Exits 1 if a check failed.
"""

from __future__ import annotations

import logging
import os
import ssl
import time
import uuid

from confluent_kafka import Consumer, KafkaError, Producer
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.errors import KafkaError as KPError

from compat_check import Suite, expect, expect_eq
from strom_setup import Jwt

s = Suite("sasl")
RUN = uuid.uuid4().hex[:8]
USER = os.environ.get("COMPAT_SASL_USER", "alice")
PASSWORD = os.environ.get("COMPAT_SASL_PASSWORD", "alice-secret")
MECHANISMS = ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]
SASL_SSL_BOOTSTRAP = os.environ.get("COMPAT_SASL_SSL_BOOTSTRAP", "")
TLS_DIR = os.environ.get("COMPAT_TLS_DIR", "")
PROTOCOLS = ["SASL_PLAINTEXT"] + (["SASL_SSL"] if SASL_SSL_BOOTSTRAP and TLS_DIR else [])


def ca(name: str = "ca") -> str:
    return os.path.join(TLS_DIR, f"{name}.pem")


def ck_config(mechanism: str, password: str, protocol: str = "SASL_PLAINTEXT",
              trust: str = "ca") -> dict:
    conf = {
        "bootstrap.servers": s.bootstrap,
        "security.protocol": protocol,
        "sasl.mechanisms": mechanism,
        "sasl.username": USER,
        "sasl.password": password,
    }
    if protocol == "SASL_SSL":
        conf.update({"bootstrap.servers": SASL_SSL_BOOTSTRAP, "ssl.ca.location": ca(trust)})
    return conf


def oauth_config(protocol: str, token_lifetime_s: int) -> dict:
    """confluent-kafka with OAUTHBEARER: `oauth_cb` hands librdkafka a token signed by the key of
    the broker's JWKS file, for USER, expiring `token_lifetime_s` from now (librdkafka is told
    it lives a minute, so an expired one is still sent for the broker to refuse)."""
    jwt = Jwt(TLS_DIR)

    def oauth_cb(_config: str) -> tuple[str, float]:
        return jwt.token(USER, token_lifetime_s), time.time() + 60

    conf = ck_config("OAUTHBEARER", "", protocol)
    for k in ("sasl.username", "sasl.password"):
        conf.pop(k)
    conf["oauth_cb"] = oauth_cb
    return conf


def confluent_round_trip(mechanism: str, protocol: str = "SASL_PLAINTEXT") -> None:
    conf = (oauth_config(protocol, 600) if mechanism == "OAUTHBEARER"
            else ck_config(mechanism, PASSWORD, protocol))
    topic = f"sasl-ck-{protocol.lower()}-{mechanism.lower()}-{RUN}"
    errors: list = []
    p = Producer({**conf, "error_cb": errors.append})
    delivered: list = []
    p.produce(topic, key=b"k", value=b"v-" + mechanism.encode(),
              on_delivery=lambda err, msg: delivered.append((err, msg)))
    expect_eq(p.flush(20), 0, "messages left unflushed")
    err, msg = delivered[0]
    expect(err is None, f"delivery error {err}")
    c = Consumer({**conf, "group.id": f"g-{topic}", "auto.offset.reset": "earliest"})
    try:
        c.subscribe([topic])
        got = None
        for _ in range(60):
            m = c.poll(0.5)
            if m is not None and m.error() is None:
                got = m.value()
                break
        expect_eq(got, b"v-" + mechanism.encode(), "consumed value")
    finally:
        c.close()
    expect(not errors, f"client errors {errors}")


def confluent_errors(conf: dict, want: int) -> list:
    """The errors a producer with `conf` reports (error_cb) until one has code `want` (15 s)."""
    errors: list = []
    p = Producer({**conf, "error_cb": errors.append, "log_level": 0})
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and not any(e.code() == want for e in errors):
        p.poll(0.2)
    expect(errors, "no error reported")
    return errors


def confluent_wrong_password(protocol: str = "SASL_PLAINTEXT") -> None:
    errors = confluent_errors(ck_config("SCRAM-SHA-256", "wrong", protocol),
                              KafkaError._AUTHENTICATION)
    expect_eq(errors[0].code(), KafkaError._AUTHENTICATION, "error code")
    expect("invalid credentials" in errors[0].str(), f"message: {errors[0].str()}")


def confluent_expired_token(protocol: str) -> None:
    # The same key and claims as the OAUTHBEARER round trip, only expired ten minutes ago. The
    # broker answers with RFC 7628's error, as Kafka does for any token it does not accept.
    errors = confluent_errors(oauth_config(protocol, -600), KafkaError._AUTHENTICATION)
    expect_eq(errors[0].code(), KafkaError._AUTHENTICATION, "error code")
    expect('{"status":"invalid_token"}' in errors[0].str(), f"message: {errors[0].str()}")


def confluent_untrusted() -> None:
    # The broker's certificate is signed by "ca"; the client trusts only "other-ca".
    errors = confluent_errors(ck_config("PLAIN", PASSWORD, "SASL_SSL", trust="other-ca"),
                              KafkaError._SSL)
    ssl_errors = [e for e in errors if e.code() == KafkaError._SSL]
    expect(ssl_errors, f"no SSL error among {[e.str() for e in errors]}")
    expect("certificate verify failed" in ssl_errors[0].str(),
           f"message: {ssl_errors[0].str()}")


def kp_config(mechanism: str, password: str, protocol: str = "SASL_PLAINTEXT",
              trust: str = "ca") -> dict:
    conf = {
        "bootstrap_servers": s.bootstrap,
        "security_protocol": protocol,
        "sasl_mechanism": mechanism,
        "sasl_plain_username": USER,
        "sasl_plain_password": password,
        "request_timeout_ms": 20000,
    }
    if protocol == "SASL_SSL":
        conf.update({"bootstrap_servers": SASL_SSL_BOOTSTRAP, "ssl_cafile": ca(trust)})
    return conf


def kafka_python_round_trip(mechanism: str, protocol: str = "SASL_PLAINTEXT") -> None:
    topic = f"sasl-kp-{protocol.lower()}-{mechanism.lower()}-{RUN}"
    p = KafkaProducer(**kp_config(mechanism, PASSWORD, protocol))
    try:
        md = p.send(topic, key=b"k", value=b"v").get(timeout=20)
    finally:
        p.close()
    c = KafkaConsumer(topic, group_id=f"g-{topic}", auto_offset_reset="earliest",
                      consumer_timeout_ms=15000, **kp_config(mechanism, PASSWORD, protocol))
    try:
        values = []
        for m in c:
            values.append(m.value)
            break
    finally:
        c.close()
    expect_eq(values[:1], [b"v"], f"consumed values (offset {md.offset})")


def kafka_python_refused(conf: dict) -> list[str]:
    """What kafka-python logs while it fails to bootstrap with `conf`, and the exception it
    raises (NoBrokersAvailable with the reason in its log, or the ssl module's error)."""
    seen: list[str] = []

    class Capture(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record.getMessage())

    handler = Capture(level=logging.DEBUG)
    log = logging.getLogger("kafka")
    log.addHandler(handler)
    old_level = log.level
    log.setLevel(logging.DEBUG)
    try:
        a = KafkaAdminClient(**conf)
        a.close()
        raise AssertionError("the client was accepted")
    except (KPError, ssl.SSLError) as e:
        seen.append(f"{type(e).__name__}: {e}")
    finally:
        log.removeHandler(handler)
        log.setLevel(old_level)
    return seen


def kafka_python_wrong_password(protocol: str = "SASL_PLAINTEXT") -> None:
    # kafka-python logs the broker's SaslAuthenticate error (and then fails to bootstrap).
    seen = kafka_python_refused(kp_config("PLAIN", "wrong", protocol))
    expect(any("Invalid username or password" in m for m in seen),
           f"no authentication failure logged: {[m for m in seen if 'auth' in m.lower()][:3]}")


def kafka_python_untrusted() -> None:
    seen = kafka_python_refused(kp_config("PLAIN", PASSWORD, "SASL_SSL", trust="other-ca"))
    expect(any("CERTIFICATE_VERIFY_FAILED" in m for m in seen),
           f"no certificate failure logged: {[m for m in seen if 'ssl' in m.lower()][:3]}")


for proto in PROTOCOLS:
    tag = "" if proto == "SASL_PLAINTEXT" else "sasl_ssl/"
    for mech in MECHANISMS:
        s.check(f"confluent_kafka/{tag}{mech}", lambda m=mech, p=proto: confluent_round_trip(m, p),
                what=f"confluent-kafka produces and consumes with {mech} over {proto}")
    s.check(f"confluent_kafka/{tag}wrong_password", lambda p=proto: confluent_wrong_password(p),
            what=f"confluent-kafka with a wrong SCRAM password over {proto} gets _AUTHENTICATION")
    if TLS_DIR:
        s.check(f"confluent_kafka/{tag}OAUTHBEARER",
                lambda p=proto: confluent_round_trip("OAUTHBEARER", p),
                what=f"confluent-kafka produces and consumes with OAUTHBEARER (oauth_cb) over {proto}")
        s.check(f"confluent_kafka/{tag}expired_token", lambda p=proto: confluent_expired_token(p),
                what=f"confluent-kafka with an expired OAUTHBEARER token over {proto} gets _AUTHENTICATION (invalid_token)")
    for mech in MECHANISMS:
        s.check(f"kafka_python/{tag}{mech}", lambda m=mech, p=proto: kafka_python_round_trip(m, p),
                what=f"kafka-python produces and consumes with {mech} over {proto}")
    s.check(f"kafka_python/{tag}wrong_password", lambda p=proto: kafka_python_wrong_password(p),
            what=f"kafka-python with a wrong PLAIN password over {proto} is refused with the broker's message")
if "SASL_SSL" in PROTOCOLS:
    s.check("confluent_kafka/sasl_ssl/untrusted_certificate", confluent_untrusted,
            what="confluent-kafka trusting another CA gets _SSL (certificate verify failed)")
    s.check("kafka_python/sasl_ssl/untrusted_certificate", kafka_python_untrusted,
            what="kafka-python trusting another CA fails the handshake (CERTIFICATE_VERIFY_FAILED)")
s.finish()
