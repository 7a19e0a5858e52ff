#!/usr/bin/env python3
"""Client quotas against Strom: producers over a produce byte-rate quota for their client id.

The quota is set with `strom quota set --client-id ID producer_byte_rate=RATE`
($COMPAT_STROM_BIN), one client id per client so their rates are measured apart, and removed
at the end. Each producer sends as fast as the broker lets it for RUN_S seconds (a bounded
number of bytes unacknowledged, so nothing piles up behind the quota), then:

- the bytes acknowledged stay within the quota's allowance: Kafka measures a rate over at least
  10 one-second samples, so up to 10 s worth passes before the first throttle, then RATE a
  second; the check allows twice that (loose: seconds, not milliseconds, on a loaded machine);
- the client reports the broker's throttling: confluent-kafka's statistics (`brokers[].throttle`,
  librdkafka's window of `throttle_time_ms`), kafka-python's `throttle-time-max` metric.

Run by compat/run.sh with COMPAT_BOOTSTRAP=host:port and COMPAT_STROM_BIN. Exits 1 if a check
failed.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic
from kafka import KafkaProducer
from kafka.errors import KafkaTimeoutError

from compat_check import Suite, expect

s = Suite("quotas")
RUN = uuid.uuid4().hex[:8]
TOPIC = f"quota-{RUN}"
# Low enough that either client, unthrottled, passes the 10 s allowance within a second.
RATE = 10_000  # bytes per second
RUN_S = 6.0
PAYLOAD = b"q" * 1000
# Unacknowledged bytes a producer may have out (a few requests' worth).
OUTSTANDING = 64 * 1024
BIN = os.environ.get("COMPAT_STROM_BIN", "")
CLIENT_IDS = {"confluent": f"quota-ck-{RUN}", "kafka_python": f"quota-kp-{RUN}"}


def allowance() -> float:
    """Bytes the broker lets through in RUN_S seconds under RATE, doubled for slack."""
    return 2.0 * RATE * (RUN_S + 10.0)


def strom(*args: str) -> str:
    """Runs `strom ARGS --bootstrap COMPAT_BOOTSTRAP`; its output (raises if it failed)."""
    if not BIN:
        raise RuntimeError("COMPAT_STROM_BIN is not set (run through compat/run.sh)")
    done = subprocess.run([BIN, *args, "--bootstrap", s.bootstrap], capture_output=True,
                          text=True, timeout=60, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"strom {' '.join(args)}: exit {done.returncode}: {done.stderr}")
    return done.stdout


def ck_setup() -> None:
    for client_id in CLIENT_IDS.values():
        strom("quota", "set", "--client-id", client_id, f"producer_byte_rate={RATE}")
        described = strom("quota", "describe", "--client-id", client_id)
        expect(any(line.split() == [client_id, "producer_byte_rate", str(RATE)]
                   for line in described.splitlines()),
               f"the quota is described: {described!r}")
    admin = AdminClient({"bootstrap.servers": s.bootstrap})
    admin.create_topics([NewTopic(TOPIC, num_partitions=1, replication_factor=1)],
                        request_timeout=20)[TOPIC].result()


def ck_confluent() -> None:
    throttle_max = [0]
    delivered = [0]
    outstanding = [0]

    def on_stats(raw: str) -> None:
        for broker in json.loads(raw).get("brokers", {}).values():
            throttle_max[0] = max(throttle_max[0], broker.get("throttle", {}).get("max", 0))

    def on_delivery(err, msg) -> None:
        outstanding[0] -= len(msg.value())
        if err is None:
            delivered[0] += len(msg.value())

    producer = Producer({
        "bootstrap.servers": s.bootstrap,
        "client.id": CLIENT_IDS["confluent"],
        "linger.ms": 5,
        "batch.size": 16384,
        "statistics.interval.ms": 500,
        "stats_cb": on_stats,
        "message.timeout.ms": 60000,
    })
    started = time.monotonic()
    while time.monotonic() - started < RUN_S:
        if outstanding[0] < OUTSTANDING:
            producer.produce(TOPIC, PAYLOAD, on_delivery=on_delivery)
            outstanding[0] += len(PAYLOAD)
            producer.poll(0)
        else:
            producer.poll(0.05)
    sent = delivered[0]
    # Let one more statistics report arrive, then drop what is still queued.
    wait = time.monotonic() + 1.5
    while time.monotonic() < wait:
        producer.poll(0.1)
    producer.purge()
    producer.flush(10)
    s.info(f"confluent-kafka: {sent} bytes acknowledged in {RUN_S:.0f}s, "
           f"largest throttle {throttle_max[0]} ms")
    expect(sent > RATE, f"the producer makes progress: {sent} bytes")
    expect(sent < allowance(), f"{sent} bytes in {RUN_S}s exceed the allowance {allowance()}")
    expect(throttle_max[0] > 0, "librdkafka's statistics report no throttle time")


def ck_kafka_python() -> None:
    delivered = [0]
    outstanding = [0]

    def on_success(_metadata) -> None:
        outstanding[0] -= len(PAYLOAD)
        delivered[0] += len(PAYLOAD)

    def on_error(_e) -> None:
        outstanding[0] -= len(PAYLOAD)

    producer = KafkaProducer(bootstrap_servers=s.bootstrap,
                             client_id=CLIENT_IDS["kafka_python"],
                             linger_ms=5, batch_size=16384, request_timeout_ms=60000)
    started = time.monotonic()
    while time.monotonic() - started < RUN_S:
        if outstanding[0] < OUTSTANDING:
            outstanding[0] += len(PAYLOAD)
            producer.send(TOPIC, PAYLOAD).add_callback(on_success).add_errback(on_error)
        else:
            time.sleep(0.02)
    sent = delivered[0]
    throttle_max = 0.0
    for group, metrics in producer.metrics().items():
        for name, value in metrics.items():
            if name == "throttle-time-max" and isinstance(value, (int, float)):
                throttle_max = max(throttle_max, value)
    # What is still queued is what the quota holds back (the throttle can keep it for longer
    # than any fixed wait, as confluent-kafka's purge above drops it): not part of the check.
    try:
        producer.close(timeout=5)
    except KafkaTimeoutError:
        s.info("kafka-python: its queue did not drain within 5 s under the quota; left behind")
    s.info(f"kafka-python: {sent} bytes acknowledged in {RUN_S:.0f}s, "
           f"throttle-time-max {throttle_max} ms")
    expect(sent > RATE, f"the producer makes progress: {sent} bytes")
    expect(sent < allowance(), f"{sent} bytes in {RUN_S}s exceed the allowance {allowance()}")
    expect(throttle_max > 0, "kafka-python's throttle-time-max metric is 0")


def ck_cleanup() -> None:
    for client_id in CLIENT_IDS.values():
        strom("quota", "remove", "--client-id", client_id, "producer_byte_rate")
    admin = AdminClient({"bootstrap.servers": s.bootstrap})
    admin.delete_topics([TOPIC], request_timeout=20)[TOPIC].result()


s.check("setup", ck_setup,
        what=f"strom quota set producer_byte_rate={RATE} for two client ids, topic {TOPIC}")
s.check("confluent_kafka.produce_throttled", ck_confluent, needs=["setup"],
        what=f"confluent-kafka producing for {RUN_S:.0f}s: bounded bytes, stats report throttle")
s.check("kafka_python.produce_throttled", ck_kafka_python, needs=["setup"],
        what=f"kafka-python producing for {RUN_S:.0f}s: bounded bytes, throttle-time-max > 0")
s.check("cleanup", ck_cleanup, needs=["setup"], what="quotas removed, topic deleted")
s.finish()
