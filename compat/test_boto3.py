#!/usr/bin/env python3
"""Strom's Kinesis API against boto3 (botocore's JSON 1.1 protocol).

Covers: CreateStream (provisioned and on-demand), DescribeStream / DescribeStreamSummary,
ListStreams and ListShards with pagination, PutRecord / PutRecords (ExplicitHashKey),
GetShardIterator (TRIM_HORIZON, AT_SEQUENCE_NUMBER, AFTER_SEQUENCE_NUMBER, LATEST,
AT_TIMESTAMP), GetRecords, SubscribeToShard (HTTP/1.1 event stream), SplitShard with every ListShards
ShardFilter type, tags, retention, the error codes boto3 raises, DeleteStream.

Run by compat/run.sh with COMPAT_KINESIS_ENDPOINT=http://host:port. Exits 1 if a check failed.
"""

from __future__ import annotations

import datetime
import os
import time
import uuid

import boto3
import botocore
from botocore.config import Config

from compat_check import CheckFailed, Suite, expect, expect_eq

s = Suite("boto3")
ENDPOINT = os.environ.get("COMPAT_KINESIS_ENDPOINT", "http://127.0.0.1:4567")
s.info(f"boto3 {boto3.__version__}, botocore {botocore.__version__}, endpoint {ENDPOINT}")

k = boto3.client(
    "kinesis",
    endpoint_url=ENDPOINT,
    region_name="us-east-1",
    aws_access_key_id="AKIDCOMPAT",
    aws_secret_access_key="secret",
    config=Config(retries={"max_attempts": 1}, connect_timeout=5, read_timeout=30),
)
RUN = uuid.uuid4().hex[:8]
STREAM = f"compat-boto3-{RUN}"


def error_code(fn) -> str:
    try:
        fn()
    except botocore.exceptions.ClientError as e:
        return e.response["Error"]["Code"]
    raise CheckFailed("expected an error, the call succeeded")


def create() -> None:
    k.create_stream(StreamName=STREAM, ShardCount=3)
    k.get_waiter("stream_exists").wait(StreamName=STREAM, WaiterConfig={"Delay": 1, "MaxAttempts": 10})
    d = k.describe_stream(StreamName=STREAM)["StreamDescription"]
    expect_eq(d["StreamStatus"], "ACTIVE", "status")
    expect_eq(len(d["Shards"]), 3, "shards")
    expect_eq(d["Shards"][2]["HashKeyRange"]["EndingHashKey"], str(2**128 - 1), "last hash key")
    expect_eq(d["StreamARN"], f"arn:aws:kinesis:us-east-1:000000000000:stream/{STREAM}", "ARN")
    expect(isinstance(d["StreamCreationTimestamp"], datetime.datetime), "creation timestamp is a datetime")
    summary = k.describe_stream_summary(StreamARN=d["StreamARN"])["StreamDescriptionSummary"]
    expect_eq(summary["OpenShardCount"], 3, "open shards")


def paginate() -> None:
    names = []
    for page in k.get_paginator("list_streams").paginate(PaginationConfig={"PageSize": 1}):
        names.extend(page["StreamNames"])
    expect(STREAM in names, f"{STREAM} listed in {names}")
    shards = []
    for page in k.get_paginator("list_shards").paginate(StreamName=STREAM, PaginationConfig={"PageSize": 2}):
        shards.extend(sh["ShardId"] for sh in page["Shards"])
    expect_eq(shards, [f"shardId-{i:012d}" for i in range(3)], "ListShards pages")


written: dict[str, list[tuple[str, str, bytes]]] = {}


def put() -> None:
    entries = [{"Data": f"rec-{i}".encode(), "PartitionKey": f"pk-{i % 7}"} for i in range(60)]
    out = k.put_records(StreamName=STREAM, Records=entries)
    expect_eq(out["FailedRecordCount"], 0, "failed records")
    for e, r in zip(entries, out["Records"]):
        written.setdefault(r["ShardId"], []).append((r["SequenceNumber"], e["PartitionKey"], e["Data"]))
    r = k.put_record(StreamName=STREAM, Data=b"\x00\xff binary", PartitionKey="any", ExplicitHashKey="0")
    expect_eq(r["ShardId"], "shardId-000000000000", "ExplicitHashKey 0 goes to the first shard")
    written.setdefault(r["ShardId"], []).append((r["SequenceNumber"], "any", b"\x00\xff binary"))


def read_all(iterator: str) -> list[dict]:
    out = []
    for _ in range(50):
        page = k.get_records(ShardIterator=iterator, Limit=25)
        out.extend(page["Records"])
        iterator = page["NextShardIterator"]
        if not page["Records"]:
            return out
    raise CheckFailed("shard did not drain")


def get() -> None:
    for shard, want in written.items():
        it = k.get_shard_iterator(StreamName=STREAM, ShardId=shard, ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
        got = [(r["SequenceNumber"], r["PartitionKey"], r["Data"]) for r in read_all(it)]
        expect_eq(got, want, f"records of {shard}")
        for r in read_all(it)[:1]:
            expect(isinstance(r["ApproximateArrivalTimestamp"], datetime.datetime), "arrival is a datetime")
            age = time.time() - r["ApproximateArrivalTimestamp"].timestamp()
            expect(-60 < age < 600, f"arrival timestamp plausible (age {age:.1f}s)")


def iterator_types() -> None:
    shard, want = next(iter(written.items()))
    seq = want[1][0]
    at = k.get_shard_iterator(StreamName=STREAM, ShardId=shard, ShardIteratorType="AT_SEQUENCE_NUMBER", StartingSequenceNumber=seq)
    expect_eq([r["SequenceNumber"] for r in read_all(at["ShardIterator"])], [w[0] for w in want[1:]], "AT_SEQUENCE_NUMBER")
    after = k.get_shard_iterator(StreamName=STREAM, ShardId=shard, ShardIteratorType="AFTER_SEQUENCE_NUMBER", StartingSequenceNumber=seq)
    expect_eq([r["SequenceNumber"] for r in read_all(after["ShardIterator"])], [w[0] for w in want[2:]], "AFTER_SEQUENCE_NUMBER")
    latest = k.get_shard_iterator(StreamName=STREAM, ShardId=shard, ShardIteratorType="LATEST")["ShardIterator"]
    expect_eq(k.get_records(ShardIterator=latest)["Records"], [], "LATEST starts empty")
    ts = k.get_shard_iterator(
        StreamName=STREAM, ShardId=shard, ShardIteratorType="AT_TIMESTAMP",
        Timestamp=datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(hours=1),
    )["ShardIterator"]
    expect_eq(len(read_all(ts)), len(want), "AT_TIMESTAMP an hour ago reads everything")


def tags_and_retention() -> None:
    k.add_tags_to_stream(StreamName=STREAM, Tags={"team": "compat"})
    tags = k.list_tags_for_stream(StreamName=STREAM)["Tags"]
    expect_eq(tags, [{"Key": "team", "Value": "compat"}], "tags")
    k.increase_stream_retention_period(StreamName=STREAM, RetentionPeriodHours=36)
    d = k.describe_stream_summary(StreamName=STREAM)["StreamDescriptionSummary"]
    expect_eq(d["RetentionPeriodHours"], 36, "retention")


def errors() -> None:
    expect_eq(error_code(lambda: k.describe_stream(StreamName=f"nope-{RUN}")), "ResourceNotFoundException", "unknown stream")
    expect_eq(error_code(lambda: k.create_stream(StreamName=STREAM, ShardCount=1)), "ResourceInUseException", "duplicate")
    expect_eq(error_code(lambda: k.get_records(ShardIterator="bm90IGFuIGl0ZXJhdG9y")), "InvalidArgumentException", "bad iterator")
    expect_eq(
        error_code(lambda: k.put_record(StreamName=STREAM, Data=b"x" * (1024 * 1024 + 1), PartitionKey="k")),
        "ValidationException",
        "oversized record",
    )


def subscribe_to_shard() -> None:
    arn = k.describe_stream_summary(StreamName=STREAM)["StreamDescriptionSummary"]["StreamARN"]
    consumer = k.register_stream_consumer(StreamARN=arn, ConsumerName="compat")["Consumer"]
    shard, want = next(iter(written.items()))
    resp = k.subscribe_to_shard(
        ConsumerARN=consumer["ConsumerARN"],
        ShardId=shard,
        StartingPosition={"Type": "TRIM_HORIZON"},
    )
    got = []
    stream = resp["EventStream"]
    try:
        for event in stream:
            records = event["SubscribeToShardEvent"]["Records"]
            got.extend(r["SequenceNumber"] for r in records)
            if len(got) >= len(want):
                break
    finally:
        stream.close()
    expect_eq(got[: len(want)], [w[0] for w in want], "SubscribeToShard records")
    k.deregister_stream_consumer(ConsumerARN=consumer["ConsumerARN"])


def shard_filters() -> None:
    """ListShards' ShardFilter types around a split, on a stream of its own."""
    name = f"{STREAM}-filters"
    k.create_stream(StreamName=name, ShardCount=1)
    k.get_waiter("stream_exists").wait(StreamName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 10})
    # botocore may send whole seconds (it truncates timestamps unless the model asks for
    # milliseconds), so the instants are more than a second apart.
    time.sleep(1.1)
    before_split = datetime.datetime.now(datetime.timezone.utc)
    time.sleep(1.1)
    k.split_shard(StreamName=name, ShardToSplit="shardId-000000000000", NewStartingHashKey=str(2**127))
    time.sleep(1.1)
    after_split = datetime.datetime.now(datetime.timezone.utc)

    def ids(**filt) -> list[int]:
        kwargs = {"ShardFilter": filt} if filt else {}
        out = []
        for page in k.get_paginator("list_shards").paginate(StreamName=name, **kwargs):
            out.extend(int(sh["ShardId"].split("-")[1]) for sh in page["Shards"])
        return out

    expect_eq(ids(), [0, 1, 2], "no filter")
    expect_eq(ids(Type="AT_LATEST"), [1, 2], "AT_LATEST")
    expect_eq(ids(Type="AT_TRIM_HORIZON"), [0], "AT_TRIM_HORIZON")
    expect_eq(ids(Type="FROM_TRIM_HORIZON"), [0, 1, 2], "FROM_TRIM_HORIZON")
    expect_eq(ids(Type="AFTER_SHARD_ID", ShardId="shardId-000000000001"), [2], "AFTER_SHARD_ID")
    expect_eq(ids(Type="AT_TIMESTAMP", Timestamp=before_split), [0], "AT_TIMESTAMP before the split")
    expect_eq(ids(Type="AT_TIMESTAMP", Timestamp=after_split), [1, 2], "AT_TIMESTAMP after the split")
    expect_eq(ids(Type="FROM_TIMESTAMP", Timestamp=before_split), [0, 1, 2], "FROM_TIMESTAMP before")
    expect_eq(ids(Type="FROM_TIMESTAMP", Timestamp=after_split), [1, 2], "FROM_TIMESTAMP after")
    expect_eq(
        error_code(lambda: k.list_shards(StreamName=name, ShardFilter={"Type": "AT_TIMESTAMP"})),
        "InvalidArgumentException",
        "AT_TIMESTAMP without a Timestamp",
    )
    k.delete_stream(StreamName=name)


def on_demand_and_delete() -> None:
    name = f"{STREAM}-od"
    k.create_stream(StreamName=name, StreamModeDetails={"StreamMode": "ON_DEMAND"})
    d = k.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]
    expect_eq(d["OpenShardCount"], 4, "on-demand shards")
    k.delete_stream(StreamName=name)
    k.delete_stream(StreamName=STREAM)
    expect_eq(error_code(lambda: k.describe_stream(StreamName=STREAM)), "ResourceNotFoundException", "deleted")


s.check("create_describe", create)
s.check("paginate", paginate, needs=["create_describe"])
s.check("put", put, needs=["create_describe"])
s.check("get_in_order", get, needs=["put"])
s.check("iterator_types", iterator_types, needs=["put"])
s.check("tags_and_retention", tags_and_retention, needs=["create_describe"])
s.check("errors", errors, needs=["create_describe"])
s.check("subscribe_to_shard", subscribe_to_shard, needs=["put"])
s.check("shard_filters", shard_filters)
s.check("on_demand_and_delete", on_demand_and_delete, needs=["create_describe"])
s.finish()
