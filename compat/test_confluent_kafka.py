#!/usr/bin/env python3
"""Strom against confluent-kafka (the librdkafka shipped inside the wheel).

Covers: AdminClient CreateTopics (partitions + configs, and the duplicate error), Metadata,
DescribeTopics, DescribeConfigs, DescribeCluster; a keyed acks=all Producer of 1000 records with
headers and explicit timestamps; a Consumer with assign() (no consumer group: they are not
implemented) reading everything back from the beginning; watermarks; offsets_for_times; every
compression codec; the idempotent producer (InitProducerId, issue #6); DeleteTopics.

Run by compat/run.sh with COMPAT_BOOTSTRAP=host:port. Exits 1 if a check failed.
"""

from __future__ import annotations

import time
import uuid
from collections import defaultdict

import confluent_kafka
from confluent_kafka import (
    OFFSET_BEGINNING,
    OFFSET_END,
    TIMESTAMP_CREATE_TIME,
    Consumer,
    KafkaError,
    KafkaException,
    Producer,
    TopicCollection,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, ConfigResource, ConfigSource, NewTopic

from compat_check import CheckFailed, Suite, expect, expect_eq, wait_until

s = Suite("confluent-kafka")
s.info(
    f"confluent-kafka {confluent_kafka.__version__}, librdkafka {confluent_kafka.libversion()[0]}"
)

B = s.bootstrap
RUN = uuid.uuid4().hex[:8]
TOPIC = f"compat-ck-{RUN}"
PARTITIONS = 3
N = 1000
RETENTION_MS = "86400000"  # one day: the timestamps below must stay inside retention
MAX_MESSAGE_BYTES = "2000000"
# Ten minutes ago, one millisecond apart: offsets_for_times then has exact answers.
TS0 = int(time.time() * 1000) - 600_000
CODECS = ("gzip", "snappy", "lz4", "zstd")
TIMEOUT = 20.0

admin = AdminClient({"bootstrap.servers": B})
created_topics: list[str] = []


def unwrap(e: BaseException) -> BaseException:
    """confluent-kafka sometimes surfaces a KafkaException as the cause of a SystemError."""
    while not isinstance(e, KafkaException) and e.__cause__ is not None:
        e = e.__cause__
    return e


def create(topic: str, partitions: int, config: dict[str, str] | None = None) -> None:
    futures = admin.create_topics(
        [NewTopic(topic, partitions, 1, config=config or {})], request_timeout=TIMEOUT
    )
    futures[topic].result(timeout=TIMEOUT)
    created_topics.append(topic)


def consumer() -> Consumer:
    # group.id is required by the client even though nothing here uses a group.
    return Consumer(
        {
            "bootstrap.servers": B,
            "group.id": f"compat-unused-{RUN}",
            "enable.auto.commit": False,
            "enable.partition.eof": False,
        }
    )


def consume(c: Consumer, count: int, timeout: float = 30.0) -> list:
    """Polls until `count` messages arrived; raises on a message error or on timeout."""
    got: list = []
    deadline = time.monotonic() + timeout
    while len(got) < count and time.monotonic() < deadline:
        for m in c.consume(num_messages=500, timeout=0.5):
            if m.error():
                raise CheckFailed(f"consumer error: {m.error()}")
            got.append(m)
    expect(len(got) >= count, f"only {len(got)} of {count} messages arrived in {timeout:.0f}s")
    return got


# --- admin -------------------------------------------------------------------------------------


def check_create_topic() -> None:
    create(TOPIC, PARTITIONS, {"retention.ms": RETENTION_MS, "max.message.bytes": MAX_MESSAGE_BYTES})


def check_create_duplicate() -> None:
    futures = admin.create_topics([NewTopic(TOPIC, PARTITIONS, 1)], request_timeout=TIMEOUT)
    try:
        futures[TOPIC].result(timeout=TIMEOUT)
    except KafkaException as e:
        expect_eq(e.args[0].code(), KafkaError.TOPIC_ALREADY_EXISTS, "error code")
        return
    raise CheckFailed("creating the topic a second time succeeded")


def check_list_topics() -> None:
    md = admin.list_topics(timeout=TIMEOUT)
    expect(bool(md.cluster_id), f"no cluster id: {md.cluster_id!r}")
    expect(md.controller_id in md.brokers, f"controller {md.controller_id} not among {md.brokers}")
    t = md.topics.get(TOPIC)
    expect(t is not None, f"{TOPIC} not listed; topics: {sorted(md.topics)}")
    expect(t.error is None, f"topic error {t.error}")
    expect_eq(sorted(t.partitions), list(range(PARTITIONS)), "partition ids")
    for p in t.partitions.values():
        expect(p.error is None, f"partition {p.id} error {p.error}")
        expect(p.leader in md.brokers, f"partition {p.id} leader {p.leader} not a broker")
        expect_eq(p.replicas, [p.leader], f"partition {p.id} replicas")
        expect_eq(p.isrs, [p.leader], f"partition {p.id} isrs")


def check_describe_topics() -> None:
    futures = admin.describe_topics(TopicCollection([TOPIC]), request_timeout=TIMEOUT)
    d = futures[TOPIC].result(timeout=TIMEOUT)
    expect_eq(d.name, TOPIC, "name")
    expect(d.topic_id is not None, "no topic id")
    expect_eq(d.is_internal, False, "is_internal")
    expect_eq([p.id for p in d.partitions], list(range(PARTITIONS)), "partition ids")
    for p in d.partitions:
        expect(p.leader is not None, f"partition {p.id} has no leader")


def check_authorized_operations() -> None:
    # Without an authorizer Kafka answers with every operation the resource supports; the value
    # -2147483648 means "not requested" and librdkafka reports it as None.
    topic = admin.describe_topics(
        TopicCollection([TOPIC]), request_timeout=TIMEOUT, include_authorized_operations=True
    )[TOPIC].result(timeout=TIMEOUT)
    ops = {op.name for op in topic.authorized_operations or []}
    for op in ("READ", "WRITE", "DESCRIBE"):
        expect(op in ops, f"topic authorized_operations {topic.authorized_operations} lacks {op}")
    cluster = admin.describe_cluster(
        request_timeout=TIMEOUT, include_authorized_operations=True
    ).result(timeout=TIMEOUT)
    ops = {op.name for op in cluster.authorized_operations or []}
    expect("DESCRIBE" in ops, f"cluster authorized_operations {cluster.authorized_operations} lacks DESCRIBE")


def check_describe_configs() -> None:
    futures = admin.describe_configs(
        [ConfigResource(ConfigResource.Type.TOPIC, TOPIC)], request_timeout=TIMEOUT
    )
    (entries,) = [f.result(timeout=TIMEOUT) for f in futures.values()]
    for name, value in (("retention.ms", RETENTION_MS), ("max.message.bytes", MAX_MESSAGE_BYTES)):
        expect(name in entries, f"{name} missing; got {sorted(entries)}")
        expect_eq(entries[name].value, value, name)
        expect_eq(entries[name].source, ConfigSource.DYNAMIC_TOPIC_CONFIG.value, f"{name} source")
    expect_eq(entries["segment.bytes"].value, "1073741824", "segment.bytes (default)")
    expect_eq(entries["segment.bytes"].source, ConfigSource.DEFAULT_CONFIG.value, "segment.bytes source")


def check_describe_cluster() -> None:
    d = admin.describe_cluster(request_timeout=TIMEOUT).result(timeout=TIMEOUT)
    expect(bool(d.cluster_id), f"no cluster id: {d.cluster_id!r}")
    expect_eq(len(d.nodes), 1, "number of nodes")
    expect(d.controller is not None, "no controller")


# --- produce and consume -----------------------------------------------------------------------


def key_of(i: int) -> bytes:
    return f"key-{i % 97}".encode()  # repeated keys: the partitioner spreads them, keeps each put


def value_of(i: int) -> bytes:
    return f"value-{i}-".encode() + b"x" * (i % 50)


def headers_of(i: int) -> list[tuple[str, bytes | None]]:
    return [("idx", str(i).encode()), ("run", RUN.encode()), ("empty", b""), ("null", None)]


# Filled by check_produce: record index -> (partition, offset).
delivered: dict[int, tuple[int, int]] = {}


def check_produce() -> None:
    errors: list[str] = []

    def on_delivery(err, msg) -> None:
        # Delivery reports carry no headers: the index is in the value. An exception raised
        # here would surface as a confusing SystemError from flush(), so record it instead.
        try:
            i = int(msg.value().split(b"-")[1])
        except Exception as e:  # noqa: BLE001
            errors.append(f"unparsable delivery report {msg.value()!r}: {e!r}")
            return
        if err is not None:
            errors.append(f"record {i}: {err}")
            return
        if msg.timestamp() != (TIMESTAMP_CREATE_TIME, TS0 + i):
            errors.append(f"record {i}: report timestamp {msg.timestamp()}")
        delivered[i] = (msg.partition(), msg.offset())

    p = Producer({"bootstrap.servers": B, "acks": "all", "linger.ms": 5})
    for i in range(N):
        p.produce(
            TOPIC,
            key=key_of(i),
            value=value_of(i),
            headers=headers_of(i),
            timestamp=TS0 + i,
            on_delivery=on_delivery,
        )
        p.poll(0)
    left = p.flush(TIMEOUT)
    expect_eq(left, 0, "messages still queued after flush")
    expect(not errors, f"{len(errors)} failed deliveries, first: {errors[:3]}")
    expect_eq(len(delivered), N, "delivery reports")
    by_partition: dict[int, list[int]] = defaultdict(list)
    partition_of_key: dict[bytes, int] = {}
    for i, (part, off) in delivered.items():
        by_partition[part].append(off)
        expect(
            partition_of_key.setdefault(key_of(i), part) == part,
            f"key {key_of(i)!r} went to two partitions",
        )
    expect_eq(sorted(by_partition), list(range(PARTITIONS)), "partitions that got records")
    for part, offsets in by_partition.items():
        expect_eq(sorted(offsets), list(range(len(offsets))), f"offsets in partition {part}")
    s.info("records per partition: " + ", ".join(f"{p}={len(o)}" for p, o in sorted(by_partition.items())))


def check_consume() -> None:
    c = consumer()
    try:
        c.assign([TopicPartition(TOPIC, p, OFFSET_BEGINNING) for p in range(PARTITIONS)])
        msgs = consume(c, N)
        # Nothing beyond what was produced.
        extra = c.consume(num_messages=10, timeout=1.0)
        expect(not extra, f"{len(extra)} unexpected extra messages")
    finally:
        c.close()
    expect_eq(len(msgs), N, "messages read")
    index_at = {po: i for i, po in delivered.items()}
    last_offset: dict[int, int] = {}
    last_index: dict[int, int] = {}
    for m in msgs:
        part, off = m.partition(), m.offset()
        i = index_at.get((part, off))
        expect(i is not None, f"read unknown record at {part}/{off}")
        where = f"record {i} at {part}/{off}"
        expect_eq(m.topic(), TOPIC, f"{where} topic")
        expect_eq(m.key(), key_of(i), f"{where} key")
        expect_eq(m.value(), value_of(i), f"{where} value")
        expect_eq(m.headers(), headers_of(i), f"{where} headers")
        expect_eq(m.timestamp(), (TIMESTAMP_CREATE_TIME, TS0 + i), f"{where} timestamp")
        expect_eq(off, last_offset.get(part, -1) + 1, f"{where}: offset after {last_offset.get(part)}")
        expect(i > last_index.get(part, -1), f"{where} read after record {last_index.get(part)}")
        last_offset[part], last_index[part] = off, i


def check_watermarks() -> None:
    counts: dict[int, int] = defaultdict(int)
    for part, _ in delivered.values():
        counts[part] += 1
    c = consumer()
    try:
        for part in range(PARTITIONS):
            marks = c.get_watermark_offsets(TopicPartition(TOPIC, part), timeout=TIMEOUT, cached=False)
            expect_eq(marks, (0, counts[part]), f"partition {part} (low, high)")
    finally:
        c.close()


def check_offsets_for_times() -> None:
    def first_offset_at_or_after(part: int, ts: int) -> int:
        candidates = [off for i, (p, off) in delivered.items() if p == part and TS0 + i >= ts]
        return min(candidates) if candidates else OFFSET_END

    c = consumer()
    try:
        for label, ts in (("first", TS0), ("middle", TS0 + N // 2), ("after last", TS0 + N + 1000)):
            query = [TopicPartition(TOPIC, p, ts) for p in range(PARTITIONS)]
            answer = c.offsets_for_times(query, timeout=TIMEOUT)
            for tp in answer:
                expect(tp.error is None, f"{label}: partition {tp.partition} error {tp.error}")
                expect_eq(
                    tp.offset,
                    first_offset_at_or_after(tp.partition, ts),
                    f"{label} timestamp {ts}: offset in partition {tp.partition}",
                )
    finally:
        c.close()


def check_compression(codec: str) -> None:
    topic = f"{TOPIC}-{codec}"
    create(topic, 1)
    count = 300
    errors: list[str] = []

    def on_delivery(err, msg) -> None:
        if err is not None:
            errors.append(str(err))

    p = Producer(
        {"bootstrap.servers": B, "acks": "all", "compression.type": codec, "linger.ms": 50}
    )
    values = [f"{codec}-{i}-".encode() + b"compressible " * (1 + i % 40) for i in range(count)]
    for i, v in enumerate(values):
        p.produce(topic, key=str(i).encode(), value=v, headers=[("i", str(i).encode())],
                  timestamp=TS0 + i, on_delivery=on_delivery)
        p.poll(0)
    expect_eq(p.flush(TIMEOUT), 0, "messages still queued after flush")
    expect(not errors, f"{len(errors)} failed deliveries, first: {errors[:3]}")
    c = consumer()
    try:
        c.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
        msgs = consume(c, count)
    finally:
        c.close()
    for i, m in enumerate(msgs[:count]):
        expect_eq(m.offset(), i, "offset")
        expect_eq((m.key(), m.value()), (str(i).encode(), values[i]), f"record {i}")
        expect_eq(m.headers(), [("i", str(i).encode())], f"record {i} headers")
        expect_eq(m.timestamp(), (TIMESTAMP_CREATE_TIME, TS0 + i), f"record {i} timestamp")


def check_idempotent_producer() -> None:
    topic = f"{TOPIC}-idempotent"
    create(topic, 1)
    results: list = []

    def on_delivery(err, msg) -> None:
        results.append(err)

    p = Producer(
        {
            "bootstrap.servers": B,
            "enable.idempotence": True,
            "acks": "all",
            "message.timeout.ms": 10000,
        }
    )
    for i in range(10):
        p.produce(topic, key=str(i).encode(), value=f"idempotent-{i}".encode(), on_delivery=on_delivery)
    fatal = None
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            if p.flush(1.0) == 0:
                break
        except Exception as e:  # noqa: BLE001 - see unwrap()
            fatal = unwrap(e)
    if fatal is not None:
        raise CheckFailed(f"producer raised {fatal}")
    failed = [str(r) for r in results if r is not None]
    expect(not failed, f"{len(failed)} failed deliveries, first: {failed[:3]}")
    expect_eq(len(results), 10, "delivery reports")
    c = consumer()
    try:
        c.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
        msgs = consume(c, 10)
    finally:
        c.close()
    expect_eq([m.value() for m in msgs], [f"idempotent-{i}".encode() for i in range(10)], "values")


def check_delete_topics() -> None:
    futures = admin.delete_topics(list(created_topics), request_timeout=TIMEOUT)
    for topic, f in futures.items():
        f.result(timeout=TIMEOUT)

    def gone() -> bool:
        names = admin.list_topics(timeout=TIMEOUT).topics
        return not any(t in names for t in created_topics)

    expect(wait_until(gone, 10), f"topics still listed after delete: {created_topics}")


s.check("admin.create_topic", check_create_topic,
        what=f"CreateTopics {TOPIC} with {PARTITIONS} partitions, retention.ms and max.message.bytes")
s.check("admin.create_topic_duplicate", check_create_duplicate, needs=["admin.create_topic"],
        what="creating it again fails with TOPIC_ALREADY_EXISTS")
s.check("admin.list_topics", check_list_topics, needs=["admin.create_topic"],
        what="Metadata lists the topic, 3 partitions, leaders, replicas, cluster id")
s.check("admin.describe_topics", check_describe_topics, needs=["admin.create_topic"],
        what="DescribeTopics: name, topic id, partitions and leaders")
s.check("admin.authorized_operations", check_authorized_operations, needs=["admin.create_topic"],
        what="DescribeTopics/DescribeCluster with include_authorized_operations=True")
s.check("admin.describe_configs", check_describe_configs, needs=["admin.create_topic"],
        what="DescribeConfigs: the two set configs (dynamic) and a default")
s.check("admin.describe_cluster", check_describe_cluster,
        what="DescribeCluster: cluster id, one node, a controller")
s.check("producer.acks_all_1000", check_produce, needs=["admin.create_topic"],
        what=f"{N} keyed records with headers and explicit timestamps, acks=all, all reports ok")
s.check("consumer.assign_read_back", check_consume, needs=["producer.acks_all_1000"],
        what="assign() from OFFSET_BEGINNING: keys, values, headers, timestamps, per-partition order")
s.check("consumer.watermarks", check_watermarks, needs=["producer.acks_all_1000"],
        what="get_watermark_offsets(cached=False) = (0, records in partition)")
s.check("consumer.offsets_for_times", check_offsets_for_times, needs=["producer.acks_all_1000"],
        what="offsets_for_times at the first, a middle and a future timestamp")
for codec in CODECS:
    s.check(f"compression.{codec}", lambda codec=codec: check_compression(codec),
            what=f"produce 300 records with compression.type={codec}, read them back")
s.check("producer.idempotent", check_idempotent_producer,
        what="enable.idempotence=True (needs InitProducerId, issue #6) produces and reads back")
s.check("admin.delete_topics", check_delete_topics,
        what="DeleteTopics of every topic created here; they leave the metadata")
s.finish()
