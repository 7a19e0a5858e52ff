#!/usr/bin/env python3
"""Strom's transactions (issue #6) against confluent-kafka (the librdkafka in the wheel).

Covers: a transactional producer whose committed transaction over 3 partitions is read by
read_committed consumers while its aborted one is not (read_uncommitted sees both); a
consume-transform-produce step with send_offsets_to_transaction whose offsets become visible
only on commit; zombie fencing by a second producer with the same transactional.id.

Run by compat/run.sh with COMPAT_BOOTSTRAP=host:port. Exits 1 if a check failed.
"""

from __future__ import annotations

import uuid

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from compat_check import Suite, expect, expect_eq

s = Suite("transactions")
B = s.bootstrap
RUN = uuid.uuid4().hex[:8]
TOPIC = f"compat-txn-{RUN}"
OUT = f"compat-txn-out-{RUN}"
PARTITIONS = 3
TIMEOUT = 20.0

admin = AdminClient({"bootstrap.servers": B})


def txn_producer(tid: str) -> Producer:
    p = Producer({"bootstrap.servers": B, "transactional.id": tid, "linger.ms": 2})
    p.init_transactions(TIMEOUT)
    return p


def read_all(topic: str, isolation: str, idle: float = 2.0) -> list[str]:
    c = Consumer({
        "bootstrap.servers": B,
        "group.id": f"unused-{uuid.uuid4().hex[:6]}",
        "enable.auto.commit": False,
        "isolation.level": isolation,
    })
    c.assign([TopicPartition(topic, p, 0) for p in range(PARTITIONS)])
    out = []
    while True:
        m = c.poll(idle)
        if m is None:
            break
        if m.error():
            continue
        out.append(m.value().decode())
    c.close()
    return sorted(out)


def check_setup() -> None:
    fs = admin.create_topics(
        [NewTopic(TOPIC, PARTITIONS, 1), NewTopic(OUT, PARTITIONS, 1)], request_timeout=TIMEOUT
    )
    for f in fs.values():
        f.result(timeout=TIMEOUT)


def check_commit_and_abort() -> None:
    p = txn_producer(f"tx-vis-{RUN}")
    p.begin_transaction()
    for part in range(PARTITIONS):
        for i in range(10):
            p.produce(TOPIC, value=f"c-{part}-{i}".encode(), partition=part)
    p.commit_transaction(TIMEOUT)
    p.begin_transaction()
    for part in range(PARTITIONS):
        p.produce(TOPIC, value=f"a-{part}".encode(), partition=part)
    p.flush(TIMEOUT)
    p.abort_transaction(TIMEOUT)
    committed = read_all(TOPIC, "read_committed")
    expected = sorted(f"c-{part}-{i}" for part in range(PARTITIONS) for i in range(10))
    expect_eq(committed, expected, "read_committed records")
    everything = read_all(TOPIC, "read_uncommitted")
    expect_eq(everything, sorted(expected + [f"a-{part}" for part in range(PARTITIONS)]),
              "read_uncommitted records")


def check_send_offsets() -> None:
    group = f"ctp-{RUN}"
    c = Consumer({
        "bootstrap.servers": B,
        "group.id": group,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "isolation.level": "read_committed",
    })
    c.assign([TopicPartition(TOPIC, part, 0) for part in range(PARTITIONS)])
    msgs = []
    while len(msgs) < 30:
        m = c.poll(5.0)
        expect(m is not None, f"only {len(msgs)} of 30 inputs")
        if not m.error():
            msgs.append(m)
    p = txn_producer(f"tx-ctp-{RUN}")
    p.begin_transaction()
    for m in msgs:
        p.produce(OUT, value=b"out-" + m.value(), partition=m.partition())
    positions = c.position([TopicPartition(TOPIC, part) for part in range(PARTITIONS)])
    p.send_offsets_to_transaction(positions, c.consumer_group_metadata(), TIMEOUT)
    # A read_committed consumer asks for stable offsets (KIP-447) and would wait for the
    # transaction; a read_uncommitted one sees that nothing is committed yet.
    peek = Consumer({"bootstrap.servers": B, "group.id": group, "isolation.level": "read_uncommitted"})
    before = peek.committed([TopicPartition(TOPIC, part) for part in range(PARTITIONS)], TIMEOUT)
    peek.close()
    expect(all(tp.offset < 0 for tp in before), f"offsets visible before the commit: {before}")
    p.commit_transaction(TIMEOUT)
    after = c.committed([TopicPartition(TOPIC, part) for part in range(PARTITIONS)], TIMEOUT)
    # Positions are past the 10 committed records, and past the markers and the aborted
    # records when the consumer already fetched them.
    expect_eq([tp.offset for tp in after], [tp.offset for tp in positions],
              "committed offsets after the commit (the positions sent)")
    expect(all(tp.offset >= 10 for tp in after), f"positions {positions}")
    c.close()
    expect_eq(len(read_all(OUT, "read_committed")), 30, "outputs")


def check_fencing() -> None:
    tid = f"tx-zombie-{RUN}"
    old = txn_producer(tid)
    old.begin_transaction()
    old.produce(TOPIC, value=b"zombie", partition=0)
    old.flush(TIMEOUT)
    new = txn_producer(tid)
    new.begin_transaction()
    new.produce(TOPIC, value=b"new", partition=0)
    new.commit_transaction(TIMEOUT)
    try:
        old.commit_transaction(TIMEOUT)
    except KafkaException as e:
        err = e.args[0]
        expect(err.fatal() or err.txn_requires_abort(), f"unexpected error {err}")
    else:
        raise AssertionError("the zombie's commit succeeded")
    committed = read_all(TOPIC, "read_committed")
    expect("new" in committed and "zombie" not in committed, "only the new producer's record")


s.check("setup", check_setup, what=f"topics {TOPIC}, {OUT}")
s.check("commit_and_abort", check_commit_and_abort, needs=["setup"],
        what="committed transaction over 3 partitions visible to read_committed, aborted one only to read_uncommitted")
s.check("send_offsets_to_transaction", check_send_offsets, needs=["commit_and_abort"],
        what="consume-transform-produce: offsets committed with the transaction, invisible before")
s.check("zombie_fencing", check_fencing, needs=["setup"],
        what="a second producer with the same transactional.id fences the first")
s.finish()
