#!/usr/bin/env python3
"""Listeners and TLS of `strom serve`, with certificates made here by the openssl CLI.

Starts its own broker ($COMPAT_STROM_BIN, flags as an operator would write them): an SSL
listener with client certificates requested, a PLAINTEXT listener named INTERNAL, and the
Kinesis and admin ports over HTTPS. Then: confluent-kafka (librdkafka in the wheel, OpenSSL)
and kafka-python (Python's ssl module) produce and consume over SSL; a client trusting another
CA is refused; Metadata on each listener advertises that listener; boto3 reaches Kinesis over
HTTPS; /health answers over HTTPS; after the certificate files are replaced and SIGHUP is
sent, new connections get the new certificate.

Exits 1 if a check failed.
"""

from __future__ import annotations

import os
import shutil
import signal
import ssl
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

from compat_check import Suite, expect, expect_eq, wait_until
from strom_setup import Broker, Tls, free_port

s = Suite("tls")
RUN = uuid.uuid4().hex[:8]
TIMEOUT = 20.0
WORK = Path(tempfile.mkdtemp(prefix="strom-tls-"))
tls = Tls(WORK)
broker = Broker(os.environ.get("COMPAT_STROM_BIN", ""), WORK)

SSL_PORT, INTERNAL_PORT, KINESIS_PORT, HTTP_PORT = (free_port() for _ in range(4))
SSL_BOOTSTRAP = f"localhost:{SSL_PORT}"


def ca_path(name: str = "ca") -> str:
    return tls.path(name)


def ck_start() -> None:
    tls.make_ca("ca")
    tls.make_ca("other-ca")
    tls.issue("ca", "server", "/CN=localhost", server=True)
    tls.issue("ca", "alice", "/O=Strom/CN=alice", server=False)
    up = broker.start(
        ["--listeners", f"SSL://127.0.0.1:{SSL_PORT},INTERNAL://127.0.0.1:{INTERNAL_PORT}",
         "--advertised-listeners", f"SSL://localhost:{SSL_PORT}",
         "--listener-security-protocol-map", "SSL:SSL,INTERNAL:PLAINTEXT",
         "--tls-cert", tls.path("server"), "--tls-key", tls.key("server"),
         "--tls-client-ca", ca_path(), "--tls-client-auth", "requested",
         "--kinesis-listen", f"127.0.0.1:{KINESIS_PORT}", "--kinesis-tls",
         "--http-listen", f"127.0.0.1:{HTTP_PORT}", "--http-tls"],
        ports=[SSL_PORT, INTERNAL_PORT])
    expect(up, "broker did not listen")


def ssl_conf(ca: str | None = None) -> dict[str, str]:
    return {"bootstrap.servers": SSL_BOOTSTRAP, "security.protocol": "SSL",
            "ssl.ca.location": ca or ca_path()}


def ck_confluent_roundtrip() -> None:
    from confluent_kafka import Consumer, Producer

    topic = f"tls-ck-{RUN}"
    p = Producer({**ssl_conf(), "acks": "all"})
    for i in range(20):
        p.produce(topic, key=b"k", value=f"v{i}".encode())
    expect_eq(p.flush(TIMEOUT), 0, "messages left unflushed")
    c = Consumer({**ssl_conf(), "group.id": f"g-{RUN}", "auto.offset.reset": "earliest"})
    c.subscribe([topic])
    got: list[bytes] = []
    deadline = time.monotonic() + TIMEOUT
    while len(got) < 20 and time.monotonic() < deadline:
        m = c.poll(1.0)
        if m is not None and m.error() is None:
            got.append(m.value())
    c.close()
    expect_eq(got, [f"v{i}".encode() for i in range(20)], "records read back over SSL")


def ck_confluent_untrusted() -> None:
    from confluent_kafka import KafkaError, KafkaException
    from confluent_kafka.admin import AdminClient

    errors: list = []
    admin = AdminClient({**ssl_conf(ca_path("other-ca")), "log_level": 0,
                         "error_cb": errors.append})
    try:
        admin.list_topics(timeout=5)
    except KafkaException:
        pass
    else:
        raise AssertionError("metadata over SSL with an untrusted server certificate succeeded")

    def ssl_errors_seen() -> list:
        admin.poll(0.2)  # serves error_cb
        return [e for e in errors if e.code() == KafkaError._SSL]

    wait_until(lambda: bool(ssl_errors_seen()), TIMEOUT)
    ssl_errors = ssl_errors_seen()
    expect(ssl_errors, f"no _SSL error reported: {[e.str() for e in errors]}")
    expect("certificate verify failed" in ssl_errors[0].str(), ssl_errors[0].str())


def ck_kafka_python_roundtrip() -> None:
    from kafka import KafkaConsumer, KafkaProducer

    topic = f"tls-kp-{RUN}"
    common = {"bootstrap_servers": SSL_BOOTSTRAP, "security_protocol": "SSL",
              "ssl_cafile": ca_path(), "ssl_certfile": tls.path("alice"),
              "ssl_keyfile": tls.key("alice")}
    p = KafkaProducer(**common, acks="all")
    for i in range(10):
        p.send(topic, f"kp{i}".encode()).get(timeout=TIMEOUT)
    p.close()
    c = KafkaConsumer(topic, **common, auto_offset_reset="earliest",
                      consumer_timeout_ms=int(TIMEOUT * 1000))
    got = []
    for m in c:
        got.append(m.value)
        if len(got) == 10:
            break
    c.close()
    expect_eq(got, [f"kp{i}".encode() for i in range(10)], "records read back over SSL")


def ck_metadata_per_listener() -> None:
    from confluent_kafka.admin import AdminClient

    over_ssl = AdminClient(ssl_conf()).list_topics(timeout=TIMEOUT)
    expect_eq([(b.host, b.port) for b in over_ssl.brokers.values()], [("localhost", SSL_PORT)],
              "brokers advertised on the SSL listener")
    internal = AdminClient({"bootstrap.servers": f"127.0.0.1:{INTERNAL_PORT}"}).list_topics(
        timeout=TIMEOUT)
    expect_eq([(b.host, b.port) for b in internal.brokers.values()],
              [("127.0.0.1", INTERNAL_PORT)], "brokers advertised on the INTERNAL listener")


def ck_boto3_https() -> None:
    import boto3

    k = boto3.client("kinesis", endpoint_url=f"https://localhost:{KINESIS_PORT}",
                     region_name="us-east-1", aws_access_key_id="AKIDTEST",
                     aws_secret_access_key="secret", verify=ca_path())
    name = f"tls-{RUN}"
    k.create_stream(StreamName=name, ShardCount=1)
    k.put_record(StreamName=name, Data=b"over https", PartitionKey="p")
    it = k.get_shard_iterator(StreamName=name, ShardId="shardId-000000000000",
                              ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
    records = k.get_records(ShardIterator=it)["Records"]
    expect_eq([r["Data"] for r in records], [b"over https"], "records over HTTPS")


def ck_health_https() -> None:
    ctx = ssl.create_default_context(cafile=ca_path())
    with urllib.request.urlopen(f"https://localhost:{HTTP_PORT}/health", context=ctx,
                                timeout=TIMEOUT) as r:
        expect_eq(r.read(), b"ok\n", "/health over HTTPS")


def ck_sighup_reload() -> None:
    from confluent_kafka.admin import AdminClient

    tls.make_ca("new-ca")
    tls.issue("new-ca", "server", "/CN=localhost", server=True)
    broker.signal(signal.SIGHUP)

    def new_cert_served() -> bool:
        try:
            AdminClient({**ssl_conf(ca_path("new-ca")), "log_level": 0}).list_topics(timeout=3)
            return True
        except Exception:  # noqa: BLE001
            return False

    expect(wait_until(new_cert_served, TIMEOUT), "the new certificate was not served after SIGHUP")


try:
    s.check("start", ck_start, what="strom serve with SSL + PLAINTEXT listeners, HTTPS")
    started = ["start"]
    s.check("confluent_kafka_ssl", ck_confluent_roundtrip, needs=started,
            what="confluent-kafka produce/consume over SSL")
    s.check("confluent_kafka_untrusted_refused", ck_confluent_untrusted, needs=started,
            what="a client trusting another CA gets no metadata")
    s.check("kafka_python_ssl_client_cert", ck_kafka_python_roundtrip, needs=started,
            what="kafka-python produce/consume over SSL with a client certificate")
    s.check("metadata_per_listener", ck_metadata_per_listener, needs=started,
            what="Metadata advertises the listener the client came in on")
    s.check("boto3_https", ck_boto3_https, needs=started, what="boto3 over HTTPS")
    s.check("health_https", ck_health_https, needs=started, what="/health over HTTPS")
    s.check("sighup_reload", ck_sighup_reload, needs=started,
            what="SIGHUP reloads a replaced certificate")
finally:
    broker.stop()
    if s.results.get("start") != "PASS" or "FAIL" in s.results.values():
        print(broker.log_tail())
    shutil.rmtree(WORK, ignore_errors=True)
s.finish()
