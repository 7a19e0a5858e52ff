#!/usr/bin/env python3
"""Consumer groups against Strom with confluent-kafka (librdkafka in the wheel) and kafka-python.

Covers (issue #4): three confluent-kafka consumers sharing six partitions with the classic
protocol, each partition assigned exactly once, and the survivors taking over when one closes
or when one is killed with SIGKILL (after its session timeout);
the same with group.protocol=consumer (KIP-848, server-side assignor); commits and a restarted
consumer resuming from them; AdminClient list_consumer_groups, describe_consumer_groups,
list_consumer_group_offsets, alter_consumer_group_offsets and delete_consumer_groups; a
kafka-python group consumer (its own protocol implementation) committing and resuming.

Run by compat/run.sh with COMPAT_BOOTSTRAP=host:port. Exits 1 if a check failed.
"""

from __future__ import annotations

import os
import time
import uuid

from confluent_kafka import Consumer, ConsumerGroupTopicPartitions, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from kafka import KafkaConsumer

from compat_check import Suite, expect, expect_eq

s = Suite("groups")
B = s.bootstrap
RUN = uuid.uuid4().hex[:8]
TOPIC = f"compat-groups-{RUN}"
PARTITIONS = 6
N = 600
TIMEOUT = 20.0

admin = AdminClient({"bootstrap.servers": B})


def new_consumer(group: str, **extra: str) -> Consumer:
    config = {
        "bootstrap.servers": B,
        "group.id": group,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
    }
    config.update(extra)
    return Consumer(config)


def classic(group: str) -> Consumer:
    return new_consumer(group, **{"session.timeout.ms": "6000", "heartbeat.interval.ms": "300"})


def next_gen(group: str) -> Consumer:
    return new_consumer(group, **{"group.protocol": "consumer"})


def settle(consumers: list[Consumer], timeout: float = 45.0) -> list[set[int]]:
    """Polls until the consumers' assignments cover every partition exactly once, balanced."""
    deadline = time.monotonic() + timeout
    while True:
        for c in consumers:
            c.poll(0.05)
        sets = [{tp.partition for tp in c.assignment()} for c in consumers]
        total = sum(len(x) for x in sets)
        union = set().union(*sets)
        sizes = [len(x) for x in sets]
        balanced = max(sizes) - min(sizes) <= 1
        if total == PARTITIONS and union == set(range(PARTITIONS)) and all(sets) and balanced:
            return sets
        if time.monotonic() > deadline:
            raise AssertionError(f"assignments never settled: {sets}")


def check_setup() -> None:
    futures = admin.create_topics([NewTopic(TOPIC, PARTITIONS, 1)], request_timeout=TIMEOUT)
    futures[TOPIC].result(timeout=TIMEOUT)
    p = Producer({"bootstrap.servers": B, "acks": "all"})
    for i in range(N):
        p.produce(TOPIC, key=f"k{i}".encode(), value=f"v{i}".encode(), partition=i % PARTITIONS)
    expect_eq(p.flush(TIMEOUT), 0, "records still queued after flush")


def share_and_take_over(make) -> None:
    group = f"g-{make.__name__}-{RUN}"
    consumers = [make(group) for _ in range(3)]
    try:
        for c in consumers:
            c.subscribe([TOPIC])
        sets = settle(consumers)
        expect(all(len(x) == 2 for x in sets), f"uneven assignment {sets}")
        consumers.pop().close()
        after = settle(consumers)
        expect(all(len(x) == 3 for x in after), f"uneven assignment after a leave {after}")
    finally:
        for c in consumers:
            c.close()


def check_classic_share() -> None:
    share_and_take_over(classic)


def check_next_gen_share() -> None:
    share_and_take_over(next_gen)


KILLED_CHILD = r"""
import sys, time
from confluent_kafka import Consumer
c = Consumer({"bootstrap.servers": sys.argv[1], "group.id": sys.argv[2],
              "session.timeout.ms": "6000", "heartbeat.interval.ms": "300",
              "enable.auto.commit": False, "auto.offset.reset": "earliest"})
c.subscribe([sys.argv[3]])
while True:
    c.poll(0.1)
    if c.assignment():
        print("assigned", flush=True)
"""


def check_killed_member() -> None:
    """A member killed with SIGKILL (no LeaveGroup) loses its partitions after its session."""
    import signal
    import subprocess
    import sys

    group = f"g-killed-{RUN}"
    child = subprocess.Popen(
        [sys.executable, "-c", KILLED_CHILD, B, group, TOPIC],
        stdout=subprocess.PIPE,
        text=True,
    )
    survivor = classic(group)
    try:
        survivor.subscribe([TOPIC])
        deadline = time.monotonic() + 45
        line = ""
        while "assigned" not in line:
            expect(time.monotonic() < deadline, "the child consumer never got partitions")
            survivor.poll(0.05)
            line = child.stdout.readline() if child.stdout else ""
        # Both in the group, then the child dies without a word.
        while len(survivor.assignment()) == PARTITIONS or not survivor.assignment():
            expect(time.monotonic() < deadline, "the two members never shared the partitions")
            survivor.poll(0.05)
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
        killed_at = time.monotonic()
        while len(survivor.assignment()) != PARTITIONS:
            expect(time.monotonic() - killed_at < 30, "the survivor never took over")
            survivor.poll(0.05)
        took = time.monotonic() - killed_at
        s.info(f"takeover {took:.1f}s after SIGKILL (session.timeout.ms=6000)")
        expect(took < 6.0 + 10.0, f"takeover took {took:.1f}s")
    finally:
        survivor.close()
        if child.poll() is None:
            child.kill()


def read(c: Consumer, count: int, timeout: float = 45.0) -> list:
    out = []
    deadline = time.monotonic() + timeout
    while len(out) < count:
        expect(time.monotonic() < deadline, f"only {len(out)} of {count} records")
        m = c.poll(0.2)
        if m is None or m.error():
            continue
        out.append(m)
    return out


def commit_and_resume(make, group: str) -> None:
    c = make(group)
    c.subscribe([TOPIC])
    first = read(c, 100)
    c.commit(asynchronous=False)
    # What was committed is exactly what was read (per partition: last offset + 1).
    read_upto: dict[int, int] = {}
    for m in first:
        read_upto[m.partition()] = max(read_upto.get(m.partition(), 0), m.offset() + 1)
    committed = c.committed([TopicPartition(TOPIC, p) for p in range(PARTITIONS)], timeout=TIMEOUT)
    c.close()
    for tp in committed:
        expect_eq(tp.offset, read_upto.get(tp.partition, -1001), f"committed offset of {tp.partition}")
    c = make(group)
    c.subscribe([TOPIC])
    try:
        rest = read(c, N - len(first))
        seen = {(m.partition(), m.offset()) for m in first + rest}
        expect_eq(len(seen), N, "distinct records over both consumers")
        c.commit(asynchronous=False)
    finally:
        c.close()


def check_classic_commit_resume() -> None:
    commit_and_resume(classic, f"g-resume-{RUN}")


def check_next_gen_commit_resume() -> None:
    commit_and_resume(next_gen, f"g-resume848-{RUN}")


def check_admin_groups() -> None:
    group = f"g-resume-{RUN}"
    listed = admin.list_consumer_groups(request_timeout=TIMEOUT).result(timeout=TIMEOUT)
    ids = {g.group_id for g in listed.valid}
    expect(group in ids and f"g-resume848-{RUN}" in ids, f"groups missing from {sorted(ids)}")
    described = admin.describe_consumer_groups([group], request_timeout=TIMEOUT)[group].result(
        timeout=TIMEOUT
    )
    expect_eq(described.group_id, group, "described group id")
    expect_eq(len(described.members), 0, "members of a group whose consumers closed")
    offsets = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group)])[group].result(
        timeout=TIMEOUT
    )
    by_partition = {tp.partition: tp.offset for tp in offsets.topic_partitions}
    expect_eq(by_partition, {p: N // PARTITIONS for p in range(PARTITIONS)}, "committed offsets")
    # Rewind partition 0 to 7, as an operator would.
    admin.alter_consumer_group_offsets(
        [ConsumerGroupTopicPartitions(group, [TopicPartition(TOPIC, 0, 7)])]
    )[group].result(timeout=TIMEOUT)
    offsets = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group)])[group].result(
        timeout=TIMEOUT
    )
    expect_eq({tp.partition: tp.offset for tp in offsets.topic_partitions}[0], 7, "rewound offset")
    admin.delete_consumer_groups([group], request_timeout=TIMEOUT)[group].result(timeout=TIMEOUT)
    listed = admin.list_consumer_groups(request_timeout=TIMEOUT).result(timeout=TIMEOUT)
    expect(group not in {g.group_id for g in listed.valid}, "group still listed after delete")


def check_kafka_python_group() -> None:
    group = f"g-kp-{RUN}"

    def consumer() -> KafkaConsumer:
        return KafkaConsumer(
            TOPIC,
            bootstrap_servers=B,
            group_id=group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            consumer_timeout_ms=15000,
            session_timeout_ms=6000,
            heartbeat_interval_ms=300,
        )

    c = consumer()
    got = []
    for m in c:
        got.append((m.partition, m.offset))
        if len(got) == 250:
            break
    c.commit()
    c.close()
    c = consumer()
    for m in c:
        got.append((m.partition, m.offset))
        if len(got) == N:
            break
    c.close()
    expect_eq(len(set(got)), N, "distinct records over both kafka-python consumers")
    expect_eq(len(got), N, "records read (none twice)")


s.check("setup", check_setup, what=f"topic {TOPIC} with {PARTITIONS} partitions, {N} records")
s.check("classic.share_and_take_over", check_classic_share, needs=["setup"],
        what="3 classic consumers share 6 partitions exactly once; 2 take over after a close")
s.check("consumer_protocol.share_and_take_over", check_next_gen_share, needs=["setup"],
        what="the same with group.protocol=consumer (KIP-848)")
s.check("classic.killed_member", check_killed_member, needs=["setup"],
        what="a member killed with SIGKILL (no leave): the survivor owns everything after the session timeout")
s.check("classic.commit_resume", check_classic_commit_resume, needs=["setup"],
        what="commit after 100 records, committed() agrees, a new consumer reads the rest")
s.check("consumer_protocol.commit_resume", check_next_gen_commit_resume, needs=["setup"],
        what="the same with group.protocol=consumer")
s.check("admin.groups", check_admin_groups, needs=["classic.commit_resume", "consumer_protocol.commit_resume"],
        what="list/describe consumer groups, list/alter group offsets, delete the group")
s.check("kafka_python.group_commit_resume", check_kafka_python_group, needs=["setup"],
        what="kafka-python group consumer commits after 250 records; a new one reads the rest")
s.finish()
