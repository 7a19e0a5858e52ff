#!/usr/bin/env python3
"""Strom against kafka-python (a pure-Python client with its own protocol code).

Covers: KafkaAdminClient CreateTopics (with a config, and the duplicate error), list_topics,
describe_topics, describe_cluster, describe_configs, DeleteTopics; KafkaProducer sends with keys,
headers and explicit timestamps (acks=all) and with every compression codec; KafkaConsumer with
assign() + seek_to_beginning() (no group) reading everything back; end_offsets,
beginning_offsets, offsets_for_times; a compacted topic (updates and tombstones) read back as the
latest value per key once the broker's cleaner ran (run.sh starts it with a short
--log-cleaner-backoff-ms).

Run by compat/run.sh with COMPAT_BOOTSTRAP=host:port. Exits 1 if a check failed.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections import defaultdict

import kafka
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import ConfigResource, ConfigResourceType, NewTopic
from kafka.errors import TopicAlreadyExistsError

from compat_check import CheckFailed, Suite, expect, expect_eq, wait_until

# kafka-python logs reconnects and metadata refreshes at WARNING; keep only real errors.
logging.basicConfig(level=logging.ERROR)

s = Suite("kafka-python")
s.info(f"kafka-python {kafka.__version__}")

B = s.bootstrap
RUN = uuid.uuid4().hex[:8]
TOPIC = f"compat-kp-{RUN}"
PARTITIONS = 2
N = 500
RETENTION_MS = "86400000"
TS0 = int(time.time() * 1000) - 600_000
CODECS = ("gzip", "snappy", "lz4", "zstd")
TIMEOUT_MS = 20_000

admin = KafkaAdminClient(bootstrap_servers=B, client_id="strom-compat", request_timeout_ms=TIMEOUT_MS)
created_topics: list[str] = []


def create(topic: str, partitions: int, configs: dict[str, str] | None = None) -> None:
    # Raises the matching kafka.errors exception on a topic error code.
    admin.create_topics([NewTopic(topic, partitions, 1, topic_configs=configs or {})])
    created_topics.append(topic)


def consumer() -> KafkaConsumer:
    return KafkaConsumer(
        bootstrap_servers=B,
        group_id=None,  # no consumer group: assign() only
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        request_timeout_ms=TIMEOUT_MS + 10_000,
    )


def read(c: KafkaConsumer, count: int, timeout: float = 30.0) -> list:
    got: list = []
    deadline = time.monotonic() + timeout
    while len(got) < count and time.monotonic() < deadline:
        for records in c.poll(timeout_ms=500).values():
            got.extend(records)
    expect(len(got) >= count, f"only {len(got)} of {count} records arrived in {timeout:.0f}s")
    return got


def key_of(i: int) -> bytes:
    return f"key-{i % 31}".encode()


def value_of(i: int) -> bytes:
    return f"value-{i}-".encode() + b"y" * (i % 40)


def headers_of(i: int) -> list[tuple[str, bytes]]:
    return [("idx", str(i).encode()), ("run", RUN.encode())]


# --- admin -------------------------------------------------------------------------------------


def check_create_topic() -> None:
    create(TOPIC, PARTITIONS, {"retention.ms": RETENTION_MS})


def check_create_duplicate() -> None:
    try:
        admin.create_topics([NewTopic(TOPIC, PARTITIONS, 1)])
    except TopicAlreadyExistsError:
        return
    raise CheckFailed("creating the topic a second time succeeded")


def check_admin_list_topics() -> None:
    topics = admin.list_topics()
    expect(TOPIC in topics, f"{TOPIC} not in {topics}")


def check_admin_describe_topics() -> None:
    (d,) = admin.describe_topics([TOPIC])
    expect_eq(d["error_code"], 0, "error code")
    expect_eq(sorted(p["partition"] for p in d["partitions"]), list(range(PARTITIONS)), "partitions")


def check_admin_describe_cluster() -> None:
    d = admin.describe_cluster()
    expect(bool(d.get("cluster_id")), f"no cluster id in {d}")
    expect_eq(len(d["brokers"]), 1, "brokers")


def check_describe_configs() -> None:
    (response,) = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, TOPIC)])
    (resource,) = response.resources
    error_code, _message, _type, name, entries = resource[:5]
    expect_eq(error_code, 0, "error code")
    expect_eq(name, TOPIC, "resource name")
    values = {e[0]: e[1] for e in entries}
    expect_eq(values.get("retention.ms"), RETENTION_MS, "retention.ms")
    expect_eq(values.get("cleanup.policy"), "delete", "cleanup.policy (default)")


def check_consumer_metadata() -> None:
    c = consumer()
    try:
        expect(TOPIC in c.topics(), f"{TOPIC} not in the consumer's topics()")
        expect_eq(c.partitions_for_topic(TOPIC), set(range(PARTITIONS)), "partitions_for_topic")
    finally:
        c.close()


# --- produce and consume -----------------------------------------------------------------------

# Filled by check_produce: record index -> (partition, offset).
delivered: dict[int, tuple[int, int]] = {}


def check_produce() -> None:
    p = KafkaProducer(bootstrap_servers=B, acks="all", linger_ms=5, request_timeout_ms=TIMEOUT_MS)
    try:
        futures = [
            p.send(TOPIC, key=key_of(i), value=value_of(i), headers=headers_of(i), timestamp_ms=TS0 + i)
            for i in range(N)
        ]
        p.flush(timeout=TIMEOUT_MS / 1000)
        for i, f in enumerate(futures):
            md = f.get(timeout=TIMEOUT_MS / 1000)
            expect_eq(md.timestamp, TS0 + i, f"record {i} timestamp in metadata")
            delivered[i] = (md.partition, md.offset)
    finally:
        p.close(timeout=5)
    by_partition: dict[int, list[int]] = defaultdict(list)
    for part, off in delivered.values():
        by_partition[part].append(off)
    expect_eq(sorted(by_partition), list(range(PARTITIONS)), "partitions that got records")
    for part, offsets in by_partition.items():
        expect_eq(sorted(offsets), list(range(len(offsets))), f"offsets in partition {part}")
    s.info("records per partition: " + ", ".join(f"{p}={len(o)}" for p, o in sorted(by_partition.items())))


def check_consume() -> None:
    c = consumer()
    try:
        c.assign([TopicPartition(TOPIC, p) for p in range(PARTITIONS)])
        c.seek_to_beginning()
        msgs = read(c, N)
        extra = [r for rs in c.poll(timeout_ms=1000).values() for r in rs]
        expect(not extra, f"{len(extra)} unexpected extra records")
    finally:
        c.close()
    expect_eq(len(msgs), N, "records read")
    index_at = {po: i for i, po in delivered.items()}
    last_offset: dict[int, int] = {}
    for m in msgs:
        i = index_at.get((m.partition, m.offset))
        expect(i is not None, f"read unknown record at {m.partition}/{m.offset}")
        where = f"record {i} at {m.partition}/{m.offset}"
        expect_eq(m.key, key_of(i), f"{where} key")
        expect_eq(m.value, value_of(i), f"{where} value")
        expect_eq(list(m.headers), headers_of(i), f"{where} headers")
        expect_eq((m.timestamp_type, m.timestamp), (0, TS0 + i), f"{where} (timestamp type, timestamp)")
        expect_eq(m.offset, last_offset.get(m.partition, -1) + 1, f"{where}: per-partition order")
        last_offset[m.partition] = m.offset


def check_offsets() -> None:
    counts: dict[int, int] = defaultdict(int)
    for part, _ in delivered.values():
        counts[part] += 1
    tps = [TopicPartition(TOPIC, p) for p in range(PARTITIONS)]
    c = consumer()
    try:
        expect_eq(c.beginning_offsets(tps), {tp: 0 for tp in tps}, "beginning_offsets")
        expect_eq(c.end_offsets(tps), {tp: counts[tp.partition] for tp in tps}, "end_offsets")
    finally:
        c.close()


def check_offsets_for_times() -> None:
    def first_at_or_after(part: int, ts: int):
        found = [(off, TS0 + i) for i, (p, off) in delivered.items() if p == part and TS0 + i >= ts]
        return min(found) if found else None

    tps = [TopicPartition(TOPIC, p) for p in range(PARTITIONS)]
    c = consumer()
    try:
        for label, ts in (("first", TS0), ("middle", TS0 + N // 2), ("after last", TS0 + N + 1000)):
            answer = c.offsets_for_times({tp: ts for tp in tps})
            for tp in tps:
                got = answer.get(tp)
                got = None if got is None else (got.offset, got.timestamp)
                expect_eq(got, first_at_or_after(tp.partition, ts), f"{label} timestamp, partition {tp.partition}")
    finally:
        c.close()


def check_compression(codec: str) -> None:
    topic = f"{TOPIC}-{codec}"
    create(topic, 1)
    count = 200
    values = [f"{codec}-{i}-".encode() + b"compressible " * (1 + i % 40) for i in range(count)]
    p = KafkaProducer(bootstrap_servers=B, acks="all", compression_type=codec, linger_ms=50,
                      request_timeout_ms=TIMEOUT_MS)
    try:
        futures = [p.send(topic, key=str(i).encode(), value=v, timestamp_ms=TS0 + i) for i, v in enumerate(values)]
        p.flush(timeout=TIMEOUT_MS / 1000)
        offsets = [f.get(timeout=TIMEOUT_MS / 1000).offset for f in futures]
    finally:
        p.close(timeout=5)
    expect_eq(offsets, list(range(count)), "offsets from the produce responses")
    c = consumer()
    try:
        c.assign([TopicPartition(topic, 0)])
        c.seek_to_beginning()
        msgs = read(c, count)
    finally:
        c.close()
    for i, m in enumerate(msgs[:count]):
        expect_eq((m.offset, m.key, m.value, m.timestamp), (i, str(i).encode(), values[i], TS0 + i), f"record {i}")


def check_idempotent_producer() -> None:
    topic = f"{TOPIC}-idempotent"
    create(topic, 1)
    p = KafkaProducer(bootstrap_servers=B, enable_idempotence=True, acks="all",
                      request_timeout_ms=TIMEOUT_MS)
    try:
        futures = [p.send(topic, value=f"idempotent-{i}".encode()) for i in range(10)]
        p.flush(timeout=TIMEOUT_MS / 1000)
        offsets = [f.get(timeout=TIMEOUT_MS / 1000).offset for f in futures]
    finally:
        p.close(timeout=5)
    expect_eq(offsets, list(range(10)), "offsets from the produce responses")
    c = consumer()
    try:
        c.assign([TopicPartition(topic, 0)])
        c.seek_to_beginning()
        msgs = read(c, 10)
    finally:
        c.close()
    expect_eq([m.value for m in msgs], [f"idempotent-{i}".encode() for i in range(10)], "values")


def check_compacted_topic() -> None:
    topic = f"{TOPIC}-compacted"
    create(topic, 1, {
        "cleanup.policy": "compact",
        "segment.ms": "200",
        "min.cleanable.dirty.ratio": "0.01",
        "delete.retention.ms": "0",
    })
    keys, updates = 1000, 100000
    latest: dict[bytes, bytes | None] = {}
    p = KafkaProducer(bootstrap_servers=B, acks="all", linger_ms=5, request_timeout_ms=TIMEOUT_MS)
    try:
        for i in range(updates):
            key, value = f"k{i % keys}".encode(), f"v{i}".encode()
            p.send(topic, key=key, value=value)
            latest[key] = value
        for k in range(0, keys, 5):  # every fifth key is deleted (a tombstone: null value)
            key = f"k{k}".encode()
            p.send(topic, key=key, value=None)
            latest[key] = None
        p.flush(timeout=TIMEOUT_MS / 1000)
        # Once segment.ms has passed, one more record rolls the segment holding the rest: only
        # closed segments are cleaned.
        time.sleep(0.3)
        p.send(topic, key=b"roll", value=b"roll").get(timeout=TIMEOUT_MS / 1000)
        latest[b"roll"] = b"roll"
    finally:
        p.close(timeout=5)
    want = {k: v for k, v in latest.items() if v is not None}
    tp = TopicPartition(topic, 0)

    def read_back() -> list:
        c = consumer()
        try:
            c.assign([tp])
            c.seek_to_beginning()
            end = c.end_offsets([tp])[tp]
            got: list = []
            deadline = time.monotonic() + 20
            while (not got or got[-1].offset < end - 1) and time.monotonic() < deadline:
                for records in c.poll(timeout_ms=500).values():
                    got.extend(records)
            return got
        finally:
            c.close()

    got: list = []

    def compacted() -> bool:
        nonlocal got
        got = read_back()
        return len(got) == len(want)

    expect(wait_until(compacted, 60, interval=0.5),
           f"{len(got)} records still there after 60s, want one per live key ({len(want)})")
    offsets = [m.offset for m in got]
    expect_eq(offsets, sorted(set(offsets)), "offsets increase")
    expect_eq({m.key: m.value for m in got}, want, "latest value per key, deleted keys gone")


def check_delete_topics() -> None:
    admin.delete_topics(list(created_topics))
    c = consumer()
    try:
        def gone() -> bool:
            return not set(created_topics) & c.topics()

        expect(wait_until(gone, 10), f"topics still listed after delete: {sorted(set(created_topics) & c.topics())}")
    finally:
        c.close()


s.check("admin.create_topic", check_create_topic,
        what=f"CreateTopics {TOPIC} with {PARTITIONS} partitions and retention.ms")
s.check("admin.create_topic_duplicate", check_create_duplicate, needs=["admin.create_topic"],
        what="creating it again raises TopicAlreadyExistsError")
s.check("admin.list_topics", check_admin_list_topics, needs=["admin.create_topic"],
        what="KafkaAdminClient.list_topics (Metadata v8 asking for authorized operations)")
s.check("admin.describe_topics", check_admin_describe_topics, needs=["admin.create_topic"],
        what="KafkaAdminClient.describe_topics (Metadata v8 asking for authorized operations)")
s.check("admin.describe_cluster", check_admin_describe_cluster,
        what="KafkaAdminClient.describe_cluster (Metadata v8 asking for authorized operations)")
s.check("admin.describe_configs", check_describe_configs, needs=["admin.create_topic"],
        what="DescribeConfigs: retention.ms as set, cleanup.policy default")
s.check("consumer.metadata", check_consumer_metadata, needs=["admin.create_topic"],
        what="KafkaConsumer.topics() and partitions_for_topic()")
s.check("producer.send", check_produce, needs=["admin.create_topic"],
        what=f"{N} keyed records with headers and explicit timestamps, acks=all")
s.check("consumer.assign_seek_to_beginning", check_consume, needs=["producer.send"],
        what="assign() + seek_to_beginning(): keys, values, headers, timestamps, per-partition order")
s.check("consumer.beginning_end_offsets", check_offsets, needs=["producer.send"],
        what="beginning_offsets = 0, end_offsets = records per partition")
s.check("consumer.offsets_for_times", check_offsets_for_times, needs=["producer.send"],
        what="offsets_for_times at the first, a middle and a future timestamp")
for codec in CODECS:
    s.check(f"compression.{codec}", lambda codec=codec: check_compression(codec),
            what=f"send 200 records with compression_type={codec}, read them back")
s.check("producer.idempotent", check_idempotent_producer,
        what="enable_idempotence=True (InitProducerId, sequence numbers) sends and reads back")
s.check("compaction.latest_value_per_key", check_compacted_topic,
        what="cleanup.policy=compact: 100000 updates over 1000 keys and 200 tombstones read back as "
             "the latest value per key once cleaned")
s.check("admin.delete_topics", check_delete_topics,
        what="DeleteTopics of every topic created here; they leave the metadata")
admin.close()
s.finish()
