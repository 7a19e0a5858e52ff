"""Real clients across the three brokers of a cluster (issue 17), run by compat/cluster.sh.

COMPAT_CLUSTER_BROKERS is "host:port,host:port,host:port" (brokers 1, 2, 3). Every client is
bootstrapped on ONE broker, and a different one for the reading side; a client still sends each
partition's requests to that partition's leader, which the cluster spreads over all brokers, so
every broker serves some of the traffic.

- admin: a topic created with confluent-kafka through broker 1 is seen with kafka-python
  through broker 2; a config altered with confluent-kafka through broker 2 is read back with
  kafka-python through broker 3; a topic created with kafka-python through broker 3 is seen
  with confluent-kafka through broker 1; every broker lists all three brokers.
- confluent-kafka produces (idempotent, acks=all) through broker 1 and consumes through
  broker 2; kafka-python produces through broker 2 and consumes through broker 3; kcat
  produces through broker 3 and consumes through broker 1. Each time: every record exactly
  once, in producer order per partition.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid

from compat_check import Suite, expect, expect_eq, wait_until

BROKERS = os.environ["COMPAT_CLUSTER_BROKERS"].split(",")
os.environ["COMPAT_BOOTSTRAP"] = ",".join(BROKERS)  # what the suite's banner names
RUN = uuid.uuid4().hex[:8]
PARTITIONS = 3
COUNT = 300
TIMEOUT = 60.0

suite = Suite("cluster")
suite.info(f"brokers {BROKERS}")


def records(client: str) -> list[tuple[int, str, str]]:
    """(partition, key, value) for record i, in production order."""
    return [(i % PARTITIONS, f"k{i}", f"{client}-{i}") for i in range(COUNT)]


def check_in_order_once(client: str, got: dict[int, list[tuple[str, str]]]) -> None:
    """Every record of `records(client)` exactly once, in order per partition."""
    want: dict[int, list[tuple[str, str]]] = {}
    for p, k, v in records(client):
        want.setdefault(p, []).append((k, v))
    for p in range(PARTITIONS):
        expect_eq(got.get(p, []), want.get(p, []), f"partition {p} as read")


# --- admin --------------------------------------------------------------------------------------


def brokers_listed() -> None:
    from confluent_kafka.admin import AdminClient

    # Each broker re-reads the live brokers every second: all three within a few.
    for b in BROKERS:
        admin = AdminClient({"bootstrap.servers": b})
        listed = wait_until(lambda: len(admin.list_topics(timeout=15).brokers) == 3, TIMEOUT)
        expect(listed, f"{b} lists {len(admin.list_topics(timeout=15).brokers)} brokers, not 3")


def topic_created_through_one_seen_through_another() -> None:
    from confluent_kafka.admin import AdminClient, NewTopic
    from kafka import KafkaAdminClient

    topic = f"cluster-admin-{RUN}"
    admin = AdminClient({"bootstrap.servers": BROKERS[0]})
    for f in admin.create_topics([NewTopic(topic, PARTITIONS, 1)]).values():
        f.result(timeout=TIMEOUT)
    other = KafkaAdminClient(bootstrap_servers=BROKERS[1], request_timeout_ms=15000)
    try:

        def seen() -> bool:
            described = other.describe_topics([topic])
            return bool(described) and len(described[0].get("partitions", [])) == PARTITIONS

        expect(wait_until(seen, TIMEOUT), f"{topic} not seen through {BROKERS[1]}")
    finally:
        other.close()


def config_altered_through_one_seen_through_another() -> None:
    from confluent_kafka.admin import (
        AdminClient,
        AlterConfigOpType,
        ConfigEntry,
        ConfigResource,
        ResourceType,
    )
    from kafka import KafkaAdminClient
    from kafka.admin import ConfigResource as KpResource
    from kafka.admin import ConfigResourceType

    topic = f"cluster-admin-{RUN}"
    admin = AdminClient({"bootstrap.servers": BROKERS[1]})
    resource = ConfigResource(
        ResourceType.TOPIC,
        topic,
        incremental_configs=[
            ConfigEntry("retention.ms", "7200000", incremental_operation=AlterConfigOpType.SET)
        ],
    )
    for f in admin.incremental_alter_configs([resource]).values():
        f.result(timeout=TIMEOUT)
    other = KafkaAdminClient(bootstrap_servers=BROKERS[2], request_timeout_ms=15000)
    try:

        def seen() -> bool:
            response = other.describe_configs([KpResource(ConfigResourceType.TOPIC, topic)])
            for r in response:
                for res in r.resources:
                    for entry in res[4]:
                        if entry[0] == "retention.ms" and entry[1] == "7200000":
                            return True
            return False

        expect(wait_until(seen, TIMEOUT), f"retention.ms not seen through {BROKERS[2]}")
    finally:
        other.close()


def topic_created_by_kafka_python_seen_by_confluent() -> None:
    from confluent_kafka.admin import AdminClient
    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic

    topic = f"cluster-admin-kp-{RUN}"
    admin = KafkaAdminClient(bootstrap_servers=BROKERS[2], request_timeout_ms=15000)
    try:
        admin.create_topics([NewTopic(topic, 2, 1)])
    finally:
        admin.close()
    other = AdminClient({"bootstrap.servers": BROKERS[0]})

    def seen() -> bool:
        t = other.list_topics(topic=topic, timeout=10).topics.get(topic)
        return t is not None and t.error is None and len(t.partitions) == 2

    expect(wait_until(seen, TIMEOUT), f"{topic} not seen through {BROKERS[0]}")


# --- data ---------------------------------------------------------------------------------------


def create_topic(name: str) -> None:
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": BROKERS[0]})
    for f in admin.create_topics([NewTopic(name, PARTITIONS, 1)]).values():
        f.result(timeout=TIMEOUT)
    for b in BROKERS:
        md_ok = wait_until(
            lambda b=b: (
                (t := AdminClient({"bootstrap.servers": b}).list_topics(topic=name, timeout=10).topics.get(name))
                is not None
                and t.error is None
                and len(t.partitions) == PARTITIONS
            ),
            TIMEOUT,
        )
        expect(md_ok, f"{name} not in {b}'s metadata")


def confluent_produce_one_consume_another() -> None:
    from confluent_kafka import Consumer, Producer, TopicPartition

    topic = f"cluster-confluent-{RUN}"
    create_topic(topic)
    producer = Producer(
        {"bootstrap.servers": BROKERS[0], "enable.idempotence": True, "acks": "all", "linger.ms": 5}
    )
    errors: list[str] = []

    def delivered(err, _msg) -> None:
        if err is not None:
            errors.append(str(err))

    for p, k, v in records("confluent"):
        producer.produce(topic, v.encode(), k.encode(), partition=p, on_delivery=delivered)
    left = producer.flush(TIMEOUT)
    expect_eq(left, 0, "records not delivered")
    expect(not errors, f"delivery errors: {errors[:3]}")

    consumer = Consumer(
        {
            "bootstrap.servers": BROKERS[1],
            "group.id": f"unused-{RUN}",
            "enable.auto.commit": False,
        }
    )
    try:
        consumer.assign([TopicPartition(topic, p, 0) for p in range(PARTITIONS)])
        got: dict[int, list[tuple[str, str]]] = {}
        n = 0
        deadline = time.monotonic() + TIMEOUT
        while n < COUNT and time.monotonic() < deadline:
            m = consumer.poll(0.5)
            if m is None:
                continue
            expect(m.error() is None, f"consume error {m.error()}")
            got.setdefault(m.partition(), []).append((m.key().decode(), m.value().decode()))
            n += 1
        # Nothing more arrives (no duplicate shows up late).
        extra = consumer.poll(2.0)
        expect(extra is None or extra.error() is not None, "an extra record arrived")
    finally:
        consumer.close()
    check_in_order_once("confluent", got)


def kafka_python_produce_one_consume_another() -> None:
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition

    topic = f"cluster-kafka-python-{RUN}"
    create_topic(topic)
    producer = KafkaProducer(
        bootstrap_servers=BROKERS[1], acks="all", enable_idempotence=True, linger_ms=5
    )
    try:
        futures = [
            producer.send(topic, key=k.encode(), value=v.encode(), partition=p)
            for p, k, v in records("kafka-python")
        ]
        producer.flush(timeout=TIMEOUT)
        for f in futures:
            f.get(timeout=TIMEOUT)
    finally:
        producer.close(timeout=10)
    consumer = KafkaConsumer(
        bootstrap_servers=BROKERS[2], enable_auto_commit=False, consumer_timeout_ms=3000
    )
    try:
        consumer.assign([TopicPartition(topic, p) for p in range(PARTITIONS)])
        consumer.seek_to_beginning()
        got: dict[int, list[tuple[str, str]]] = {}
        n = 0
        deadline = time.monotonic() + TIMEOUT
        while n < COUNT and time.monotonic() < deadline:
            for tp, messages in consumer.poll(timeout_ms=500).items():
                for m in messages:
                    got.setdefault(tp.partition, []).append((m.key.decode(), m.value.decode()))
                    n += 1
        extra = consumer.poll(timeout_ms=2000)
        expect(not any(extra.values()), "an extra record arrived")
    finally:
        consumer.close()
    check_in_order_once("kafka-python", got)


def kcat_produce_one_consume_another() -> None:
    topic = f"cluster-kcat-{RUN}"
    create_topic(topic)
    kcat = ["kcat", "-q", "-m", "15", "-X", "socket.timeout.ms=15000"]
    for p in range(PARTITIONS):
        lines = "".join(f"{k}:{v}\n" for q, k, v in records("kcat") if q == p)
        done = subprocess.run(
            kcat + ["-b", BROKERS[2], "-P", "-t", topic, "-p", str(p), "-K:", "-X", "acks=all"],
            input=lines.encode(),
            capture_output=True,
            timeout=TIMEOUT,
        )
        expect_eq(done.returncode, 0, f"kcat -P exit ({done.stderr.decode()[-300:]})")
    got: dict[int, list[tuple[str, str]]] = {}
    done = subprocess.run(
        kcat + ["-b", BROKERS[0], "-C", "-t", topic, "-e", "-J"],
        capture_output=True,
        timeout=TIMEOUT,
    )
    expect_eq(done.returncode, 0, f"kcat -C exit ({done.stderr.decode()[-300:]})")
    for line in done.stdout.decode().splitlines():
        m = json.loads(line)
        got.setdefault(m["partition"], []).append((m["key"], m["payload"]))
    check_in_order_once("kcat", got)


suite.check("brokers_listed", brokers_listed, what="every broker lists all three")
suite.check(
    "admin_create_seen_elsewhere",
    topic_created_through_one_seen_through_another,
    what="confluent-kafka creates through broker 1, kafka-python sees it through broker 2",
)
suite.check(
    "admin_alter_config_seen_elsewhere",
    config_altered_through_one_seen_through_another,
    needs=["admin_create_seen_elsewhere"],
    what="confluent-kafka alters retention.ms through broker 2, kafka-python reads it through broker 3",
)
suite.check(
    "admin_kafka_python_create_seen_elsewhere",
    topic_created_by_kafka_python_seen_by_confluent,
    what="kafka-python creates through broker 3, confluent-kafka sees it through broker 1",
)
suite.check(
    "confluent_produce_consume_across_brokers",
    confluent_produce_one_consume_another,
    what=f"{COUNT} idempotent acks=all records through broker 1, read through broker 2",
)
suite.check(
    "kafka_python_produce_consume_across_brokers",
    kafka_python_produce_one_consume_another,
    what=f"{COUNT} records through broker 2, read through broker 3",
)
suite.check(
    "kcat_produce_consume_across_brokers",
    kcat_produce_one_consume_another,
    what=f"{COUNT} records through broker 3, read through broker 1",
)
suite.finish()
