"""The Kinesis API across the three brokers of a cluster (issue 18), run by compat/cluster.sh.

COMPAT_CLUSTER_KINESIS is "http://host:port,..." (the Kinesis endpoints of brokers 1, 2, 3).

- boto3 creates a stream through broker 1; it is described through brokers 2 and 3.
- boto3 puts records through every broker; an iterator got on broker 2 reads them, in order, on
  broker 3, and the next iterator it returns reads on broker 1.
- boto3 splits the shard through broker 2; broker 3 lists the children with their parent, and
  reading the parent through broker 1 ends with the children (ChildShards, no next iterator).
- the AWS CLI puts a record through broker 3 and reads it back through broker 1, and
  describes the stream (3 shards, 2 open) through broker 2.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
import time
import uuid

from compat_check import Suite, expect, expect_eq, wait_until

ENDPOINTS = os.environ["COMPAT_CLUSTER_KINESIS"].split(",")
os.environ["COMPAT_BOOTSTRAP"] = ",".join(ENDPOINTS)
STREAM = f"compat-cluster-{uuid.uuid4().hex[:8]}"
TIMEOUT = 60.0
ENV = dict(
    os.environ,
    AWS_ACCESS_KEY_ID="AKIDCOMPAT",
    AWS_SECRET_ACCESS_KEY="secret",
    AWS_DEFAULT_REGION="us-east-1",
    AWS_CONFIG_FILE="/dev/null",
    AWS_SHARED_CREDENTIALS_FILE="/dev/null",
    AWS_PAGER="",
)

suite = Suite("cluster_kinesis")
suite.info(f"endpoints {ENDPOINTS}")


def client(n: int):
    import boto3
    from botocore.config import Config

    return boto3.client(
        "kinesis",
        endpoint_url=ENDPOINTS[n],
        region_name="us-east-1",
        aws_access_key_id="AKIDCOMPAT",
        aws_secret_access_key="secret",
        config=Config(retries={"max_attempts": 3, "mode": "standard"}, read_timeout=30),
    )


def create_and_describe_elsewhere() -> None:
    client(0).create_stream(StreamName=STREAM, ShardCount=1)
    for n in (1, 2):
        d = client(n).describe_stream_summary(StreamName=STREAM)["StreamDescriptionSummary"]
        expect_eq(d["OpenShardCount"], 1, f"open shards through broker {n + 1}")


def iterators_across_brokers() -> None:
    for n in range(3):
        client(n).put_record(StreamName=STREAM, PartitionKey="pk", Data=f"r{n}".encode())
    it = client(1).get_shard_iterator(
        StreamName=STREAM, ShardId="shardId-000000000000", ShardIteratorType="TRIM_HORIZON"
    )["ShardIterator"]
    got: list[bytes] = []
    k3 = client(2)
    deadline = time.monotonic() + TIMEOUT
    while len(got) < 3 and time.monotonic() < deadline:
        page = k3.get_records(ShardIterator=it)
        got.extend(r["Data"] for r in page["Records"])
        it = page["NextShardIterator"]
    expect_eq(got, [b"r0", b"r1", b"r2"], "records read through broker 3")
    # The next iterator broker 3 handed out is valid on broker 1.
    page = client(0).get_records(ShardIterator=it)
    expect_eq(page["Records"], [], "nothing after the end, through broker 1")


def split_seen_elsewhere() -> None:
    shard = client(1).list_shards(StreamName=STREAM)["Shards"][0]
    lo = int(shard["HashKeyRange"]["StartingHashKey"])
    hi = int(shard["HashKeyRange"]["EndingHashKey"])
    client(1).split_shard(
        StreamName=STREAM,
        ShardToSplit=shard["ShardId"],
        NewStartingHashKey=str(lo + (hi - lo) // 2 + 1),
    )

    def children_listed() -> bool:
        shards = client(2).list_shards(StreamName=STREAM)["Shards"]
        return sum(1 for s in shards if s.get("ParentShardId") == shard["ShardId"]) == 2

    expect(wait_until(children_listed, TIMEOUT), "broker 3 lists both children")
    k1 = client(0)
    it = k1.get_shard_iterator(
        StreamName=STREAM, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
    )["ShardIterator"]
    deadline = time.monotonic() + TIMEOUT
    while it and time.monotonic() < deadline:
        page = k1.get_records(ShardIterator=it)
        it = page.get("NextShardIterator")
        if not it:
            children = sorted(c["ShardId"] for c in page.get("ChildShards", []))
            expect_eq(len(children), 2, "ChildShards at the parent's end")
            return
    raise AssertionError("the parent's iterator did not end with ChildShards")


def aws_cli_across_brokers() -> None:
    # The venv's CLI (compat/install.sh), as compat/test_awscli.sh uses.
    aws = shutil.which("aws", path=os.path.dirname(sys.executable)) or shutil.which("aws")
    expect(aws is not None, "the AWS CLI is installed")

    def cli(n: int, *args: str) -> dict:
        out = subprocess.run(
            [aws, "kinesis", "--endpoint-url", ENDPOINTS[n], "--output", "json", *args],
            env=ENV,
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            check=True,
        )
        return json.loads(out.stdout) if out.stdout.strip() else {}

    put = cli(2, "put-record", "--stream-name", STREAM, "--partition-key", "cli",
              "--data", "from-the-cli")
    it = cli(0, "get-shard-iterator", "--stream-name", STREAM, "--shard-id", put["ShardId"],
             "--shard-iterator-type", "AT_SEQUENCE_NUMBER",
             "--starting-sequence-number", put["SequenceNumber"])["ShardIterator"]
    page = cli(0, "get-records", "--shard-iterator", it, "--limit", "1")
    expect_eq(base64.b64decode(page["Records"][0]["Data"]), b"from-the-cli", "read through broker 1")
    d = cli(1, "describe-stream", "--stream-name", STREAM)["StreamDescription"]
    expect_eq(len(d["Shards"]), 3, "shards described through broker 2")


suite.check(
    "boto3_create_describe_elsewhere",
    create_and_describe_elsewhere,
    what="created through broker 1, described through brokers 2 and 3",
)
suite.check(
    "boto3_iterators_across_brokers",
    iterators_across_brokers,
    needs=["boto3_create_describe_elsewhere"],
    what="puts through every broker, iterator from broker 2 read on broker 3, next on broker 1",
)
suite.check(
    "boto3_split_seen_elsewhere",
    split_seen_elsewhere,
    needs=["boto3_iterators_across_brokers"],
    what="split through broker 2, children on broker 3, parent ends with ChildShards on broker 1",
)
suite.check(
    "awscli_across_brokers",
    aws_cli_across_brokers,
    needs=["boto3_split_seen_elsewhere"],
    what="put-record through broker 3, get-records through broker 1, describe-stream through 2",
)
suite.finish()
