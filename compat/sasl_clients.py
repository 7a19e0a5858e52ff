#!/usr/bin/env python3
"""SASL (SASL_PLAINTEXT) against Strom with confluent-kafka and kafka-python.

Run by compat/test_sasl.sh against a broker it started with PLAIN, SCRAM-SHA-256 and
SCRAM-SHA-512 enabled and users created beforehand (COMPAT_SASL_USER / COMPAT_SASL_PASSWORD).
For each client and mechanism: produce a record and read it back; a wrong password is refused
with the error that client reports for an authentication failure.

Exits 1 if a check failed.
"""

from __future__ import annotations

import logging
import os
import time
import uuid

from confluent_kafka import Consumer, KafkaError, Producer
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.errors import KafkaError as KPError

from compat_check import Suite, expect, expect_eq

s = Suite("sasl")
RUN = uuid.uuid4().hex[:8]
USER = os.environ.get("COMPAT_SASL_USER", "alice")
PASSWORD = os.environ.get("COMPAT_SASL_PASSWORD", "alice-secret")
MECHANISMS = ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]


def ck_config(mechanism: str, password: str) -> dict:
    return {
        "bootstrap.servers": s.bootstrap,
        "security.protocol": "SASL_PLAINTEXT",
        "sasl.mechanisms": mechanism,
        "sasl.username": USER,
        "sasl.password": password,
    }


def confluent_round_trip(mechanism: str) -> None:
    topic = f"sasl-ck-{mechanism.lower()}-{RUN}"
    errors: list = []
    p = Producer({**ck_config(mechanism, PASSWORD), "error_cb": errors.append})
    delivered: list = []
    p.produce(topic, key=b"k", value=b"v-" + mechanism.encode(),
              on_delivery=lambda err, msg: delivered.append((err, msg)))
    expect_eq(p.flush(20), 0, "messages left unflushed")
    err, msg = delivered[0]
    expect(err is None, f"delivery error {err}")
    c = Consumer({**ck_config(mechanism, PASSWORD), "group.id": f"g-{topic}",
                  "auto.offset.reset": "earliest"})
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


def confluent_wrong_password() -> None:
    errors: list = []
    p = Producer({**ck_config("SCRAM-SHA-256", "wrong"), "error_cb": errors.append})
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and not errors:
        p.poll(0.2)
    expect(errors, "no error reported")
    expect_eq(errors[0].code(), KafkaError._AUTHENTICATION, "error code")
    expect("invalid credentials" in errors[0].str(), f"message: {errors[0].str()}")


def kp_config(mechanism: str, password: str) -> dict:
    return {
        "bootstrap_servers": s.bootstrap,
        "security_protocol": "SASL_PLAINTEXT",
        "sasl_mechanism": mechanism,
        "sasl_plain_username": USER,
        "sasl_plain_password": password,
        "request_timeout_ms": 20000,
    }


def kafka_python_round_trip(mechanism: str) -> None:
    topic = f"sasl-kp-{mechanism.lower()}-{RUN}"
    p = KafkaProducer(**kp_config(mechanism, PASSWORD))
    try:
        md = p.send(topic, key=b"k", value=b"v").get(timeout=20)
    finally:
        p.close()
    c = KafkaConsumer(topic, group_id=f"g-{topic}", auto_offset_reset="earliest",
                      consumer_timeout_ms=15000, **kp_config(mechanism, PASSWORD))
    try:
        values = []
        for m in c:
            values.append(m.value)
            break
    finally:
        c.close()
    expect_eq(values[:1], [b"v"], f"consumed values (offset {md.offset})")


def kafka_python_wrong_password() -> None:
    # kafka-python logs the broker's SaslAuthenticate error (and then fails to bootstrap).
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
        a = KafkaAdminClient(**kp_config("PLAIN", "wrong"))
        a.close()
        raise AssertionError("a wrong password was accepted")
    except KPError:
        pass
    finally:
        log.removeHandler(handler)
        log.setLevel(old_level)
    expect(any("Invalid username or password" in m for m in seen),
           f"no authentication failure logged: {[m for m in seen if 'auth' in m.lower()][:3]}")


for mech in MECHANISMS:
    s.check(f"confluent_kafka/{mech}", lambda m=mech: confluent_round_trip(m),
            what=f"confluent-kafka produces and consumes with {mech}")
s.check("confluent_kafka/wrong_password", confluent_wrong_password,
        what="confluent-kafka with a wrong SCRAM password gets _AUTHENTICATION")
for mech in MECHANISMS:
    s.check(f"kafka_python/{mech}", lambda m=mech: kafka_python_round_trip(m),
            what=f"kafka-python produces and consumes with {mech}")
s.check("kafka_python/wrong_password", kafka_python_wrong_password,
        what="kafka-python with a wrong PLAIN password is refused with the broker's message")
s.finish()
