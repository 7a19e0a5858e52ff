#!/usr/bin/env python3
"""Kinesis SigV4 authentication of `strom serve` with boto3.

Starts its own broker ($COMPAT_STROM_BIN) with one access key given as an operator would
(STROM_KINESIS_ACCESS_KEY=ID:SECRET:PRINCIPAL). Then: boto3 signed with that key creates,
writes and reads a stream; boto3 with the right key id and a wrong secret gets
InvalidSignatureException; an unknown key id gets UnrecognizedClientException; a tampered shard
iterator gets InvalidArgumentException; a request signed ten minutes ago (a stale X-Amz-Date)
gets InvalidSignatureException.

Exits 1 if a check failed.
"""

from __future__ import annotations

import base64
import datetime
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from pathlib import Path
from unittest import mock

from compat_check import CheckFailed, Suite, expect, expect_eq, wait_until

s = Suite("sigv4")
RUN = uuid.uuid4().hex[:8]
BIN = os.environ.get("COMPAT_STROM_BIN", "")
WORK = Path(tempfile.mkdtemp(prefix="strom-sigv4-"))
KEY_ID, SECRET = "AKIACOMPATALICE", "compat-secret-" + RUN


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


KAFKA_PORT, KINESIS_PORT, HTTP_PORT = (free_port() for _ in range(3))
broker: subprocess.Popen[bytes] | None = None


def client(key_id: str = KEY_ID, secret: str = SECRET):
    import boto3
    from botocore.config import Config

    return boto3.client("kinesis", endpoint_url=f"http://127.0.0.1:{KINESIS_PORT}",
                        region_name="us-east-1", aws_access_key_id=key_id,
                        aws_secret_access_key=secret,
                        config=Config(retries={"max_attempts": 1}))


def error_code(fn) -> str:
    import botocore.exceptions

    try:
        fn()
    except botocore.exceptions.ClientError as e:
        return e.response["Error"]["Code"]
    raise CheckFailed("expected an error, the call succeeded")


def ck_start() -> None:
    global broker
    expect(bool(BIN), "COMPAT_STROM_BIN is not set")
    env = {k: v for k, v in os.environ.items() if not k.startswith("STROM_")}
    env["STROM_KINESIS_ACCESS_KEY"] = f"{KEY_ID}:{SECRET}:User:alice"
    log = open(WORK / "broker.log", "wb")  # noqa: SIM115 - lives as long as the broker
    broker = subprocess.Popen(
        [BIN, "serve", "--data-dir", str(WORK / "data"),
         "--kafka-listen", f"127.0.0.1:{KAFKA_PORT}",
         "--kinesis-listen", f"127.0.0.1:{KINESIS_PORT}",
         "--http-listen", f"127.0.0.1:{HTTP_PORT}", "--log", "info"],
        stdout=log, stderr=subprocess.STDOUT, env=env)

    def up() -> bool:
        try:
            socket.create_connection(("127.0.0.1", KINESIS_PORT), timeout=1).close()
            return True
        except OSError:
            return False
    expect(wait_until(up, 30.0), "broker did not listen")


STREAM = f"sigv4-{RUN}"
iterator: list[str] = []


def ck_signed_roundtrip() -> None:
    k = client()
    k.create_stream(StreamName=STREAM, ShardCount=1)
    k.put_record(StreamName=STREAM, Data=b"signed", PartitionKey="p")
    it = k.get_shard_iterator(StreamName=STREAM, ShardId="shardId-000000000000",
                              ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
    iterator.append(it)
    records = k.get_records(ShardIterator=it)["Records"]
    expect_eq([r["Data"] for r in records], [b"signed"], "records")


def ck_wrong_secret() -> None:
    k = client(secret="not-the-secret")
    expect_eq(error_code(lambda: k.list_streams()), "InvalidSignatureException", "wrong secret")
    expect_eq(error_code(lambda: k.put_record(StreamName=STREAM, Data=b"x", PartitionKey="p")),
              "InvalidSignatureException", "wrong secret on PutRecord")


def ck_unknown_key() -> None:
    k = client(key_id="AKIAUNKNOWN")
    expect_eq(error_code(lambda: k.list_streams()), "UnrecognizedClientException", "unknown key")


def ck_tampered_iterator() -> None:
    raw = bytearray(base64.urlsafe_b64decode(iterator[0] + "=" * (-len(iterator[0]) % 4)))
    raw[28] ^= 1
    forged = base64.urlsafe_b64encode(bytes(raw)).decode().rstrip("=")
    expect_eq(error_code(lambda: client().get_records(ShardIterator=forged)),
              "InvalidArgumentException", "tampered iterator")


def ck_stale_date() -> None:
    # botocore's SigV4 signer takes its time from botocore.auth.get_current_datetime.
    def ten_minutes_ago(*_args, **_kwargs):
        now = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)
        return now - datetime.timedelta(minutes=10)

    k = client()
    with mock.patch("botocore.auth.get_current_datetime", ten_minutes_ago):
        code = error_code(lambda: k.list_streams())
    expect_eq(code, "InvalidSignatureException", "a request dated ten minutes ago")


try:
    s.check("start", ck_start, what="strom serve with one Kinesis access key from the environment")
    started = ["start"]
    s.check("signed_roundtrip", ck_signed_roundtrip, needs=started,
            what="boto3 with the configured key creates, writes and reads")
    s.check("wrong_secret", ck_wrong_secret, needs=started,
            what="a wrong secret gets InvalidSignatureException")
    s.check("unknown_key", ck_unknown_key, needs=started,
            what="an unknown key gets UnrecognizedClientException")
    s.check("tampered_iterator", ck_tampered_iterator, needs=["signed_roundtrip"],
            what="a tampered shard iterator gets InvalidArgumentException")
    s.check("stale_date", ck_stale_date, needs=started,
            what="a stale X-Amz-Date gets InvalidSignatureException")
finally:
    if broker is not None:
        broker.terminate()
        try:
            broker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            broker.kill()
            broker.wait()
        if s.results.get("start") != "PASS" or "FAIL" in s.results.values():
            print((WORK / "broker.log").read_text(errors="replace")[-4000:])
    shutil.rmtree(WORK, ignore_errors=True)
s.finish()
