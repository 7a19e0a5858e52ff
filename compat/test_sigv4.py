#!/usr/bin/env python3
"""Kinesis SigV4 authentication of `strom serve` with boto3.

Starts its own broker ($COMPAT_STROM_BIN) with one access key given as an operator would
(STROM_KINESIS_ACCESS_KEY=ID:SECRET:PRINCIPAL) and two temporary keys in its configuration file
(`[[kinesis.access_key]]` with `session_token` and `expires_at`: one live, one expired). Then:
boto3 signed with that key creates, writes and reads a stream; boto3 with the right key id and a
wrong secret gets InvalidSignatureException; an unknown key id gets UnrecognizedClientException;
a tampered shard iterator gets InvalidArgumentException; a request signed ten minutes ago (a
stale X-Amz-Date) gets InvalidSignatureException; a body altered after signing (a botocore
before-send hook) gets InvalidSignatureException and writes nothing; the temporary key works
with its session token, gets UnrecognizedClientException without it and ExpiredTokenException
once expired; a URL presigned by botocore (generate_presigned_url) works, and gets
InvalidSignatureException once past its X-Amz-Expires.

Exits 1 if a check failed.
"""

from __future__ import annotations

import base64
import datetime
import json
import os
import shutil
import tempfile
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from unittest import mock

from compat_check import CheckFailed, Suite, expect, expect_eq
from strom_setup import Broker, free_port

s = Suite("sigv4")
RUN = uuid.uuid4().hex[:8]
WORK = Path(tempfile.mkdtemp(prefix="strom-sigv4-"))
KEY_ID, SECRET = "AKIACOMPATALICE", "compat-secret-" + RUN
TEMP_ID, TEMP_SECRET, TEMP_TOKEN = "ASIACOMPATTEMP", "temp-secret-" + RUN, "temp-token-" + RUN
OLD_ID, OLD_SECRET, OLD_TOKEN = "ASIACOMPATOLD", "old-secret-" + RUN, "old-token-" + RUN

KAFKA_PORT, KINESIS_PORT, HTTP_PORT = (free_port() for _ in range(3))
ENDPOINT = f"http://127.0.0.1:{KINESIS_PORT}"
broker = Broker(os.environ.get("COMPAT_STROM_BIN", ""), WORK)


def ten_minutes_ago(*_args, **_kwargs) -> datetime.datetime:
    """botocore's SigV4 signers take their time from botocore.auth.get_current_datetime."""
    now = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)
    return now - datetime.timedelta(minutes=10)


def client(key_id: str = KEY_ID, secret: str = SECRET, token: str | None = None):
    import boto3
    from botocore.config import Config

    return boto3.client("kinesis", endpoint_url=ENDPOINT,
                        region_name="us-east-1", aws_access_key_id=key_id,
                        aws_secret_access_key=secret, aws_session_token=token,
                        config=Config(retries={"max_attempts": 1}))


def error_code(fn) -> str:
    import botocore.exceptions

    try:
        fn()
    except botocore.exceptions.ClientError as e:
        return e.response["Error"]["Code"]
    raise CheckFailed("expected an error, the call succeeded")


def iso(delta: datetime.timedelta) -> str:
    at = datetime.datetime.now(datetime.timezone.utc) + delta
    return at.strftime("%Y-%m-%dT%H:%M:%SZ")


def ck_start() -> None:
    config = WORK / "strom.toml"
    config.write_text(
        "[[kinesis.access_key]]\n"
        f'id = "{TEMP_ID}"\nsecret = "{TEMP_SECRET}"\nprincipal = "User:alice"\n'
        f'session_token = "{TEMP_TOKEN}"\nexpires_at = "{iso(datetime.timedelta(hours=1))}"\n'
        "[[kinesis.access_key]]\n"
        f'id = "{OLD_ID}"\nsecret = "{OLD_SECRET}"\nprincipal = "User:alice"\n'
        f'session_token = "{OLD_TOKEN}"\nexpires_at = "{iso(-datetime.timedelta(hours=1))}"\n')
    up = broker.start(
        ["--config", str(config),
         "--kafka-listen", f"127.0.0.1:{KAFKA_PORT}",
         "--kinesis-listen", f"127.0.0.1:{KINESIS_PORT}",
         "--http-listen", f"127.0.0.1:{HTTP_PORT}"],
        env={"STROM_KINESIS_ACCESS_KEY": f"{KEY_ID}:{SECRET}:User:alice"},
        ports=[KINESIS_PORT])
    expect(up, "broker did not listen")


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
    k = client()
    with mock.patch("botocore.auth.get_current_datetime", ten_minutes_ago):
        code = error_code(lambda: k.list_streams())
    expect_eq(code, "InvalidSignatureException", "a request dated ten minutes ago")


def ck_tampered_body() -> None:
    # Runs after the signer (before-send): the partition key changes, the length does not.
    def tamper(request, **_kwargs) -> None:
        body = request.body if isinstance(request.body, bytes) else request.body.encode()
        expect(b"pk-a" in body, f"body to tamper with: {body!r}")
        request.body = body.replace(b"pk-a", b"pk-b")

    k = client()
    k.meta.events.register("before-send.kinesis.PutRecord", tamper)
    code = error_code(lambda: k.put_record(StreamName=STREAM, Data=b"tampered",
                                           PartitionKey="pk-a"))
    expect_eq(code, "InvalidSignatureException", "a body altered after signing")
    it = client().get_shard_iterator(StreamName=STREAM, ShardId="shardId-000000000000",
                                     ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
    records = client().get_records(ShardIterator=it)["Records"]
    expect_eq([r["Data"] for r in records], [b"signed"], "records after the refused write")


def ck_session_token() -> None:
    names = client(TEMP_ID, TEMP_SECRET, TEMP_TOKEN).list_streams()["StreamNames"]
    expect(STREAM in names, f"{STREAM} listed with the temporary key: {names}")
    expect_eq(error_code(lambda: client(TEMP_ID, TEMP_SECRET).list_streams()),
              "UnrecognizedClientException", "the temporary key without its session token")
    expect_eq(error_code(lambda: client(TEMP_ID, TEMP_SECRET, OLD_TOKEN).list_streams()),
              "UnrecognizedClientException", "the temporary key with another session token")
    expect_eq(error_code(lambda: client(OLD_ID, OLD_SECRET, OLD_TOKEN).list_streams()),
              "ExpiredTokenException", "an expired temporary key")


def post_presigned(url: str) -> tuple[int, dict]:
    """POSTs a presigned ListStreams URL with the headers botocore signed and the empty body
    (botocore moves a JSON body's members into the query string when presigning)."""
    request = urllib.request.Request(url, data=b"", method="POST", headers={
        "X-Amz-Target": "Kinesis_20131202.ListStreams",
        "Content-Type": "application/x-amz-json-1.1",
    })
    try:
        with urllib.request.urlopen(request, timeout=20) as r:
            return r.status, json.loads(r.read() or b"{}")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


def ck_presigned() -> None:
    url = client().generate_presigned_url("list_streams", Params={}, ExpiresIn=60)
    expect("X-Amz-Signature=" in url and "X-Amz-Expires=60" in url, f"presigned URL {url}")
    status, body = post_presigned(url)
    expect_eq(status, 200, f"presigned ListStreams ({body})")
    expect(STREAM in body.get("StreamNames", []), f"{STREAM} listed: {body}")
    with mock.patch("botocore.auth.get_current_datetime", ten_minutes_ago):
        stale = client().generate_presigned_url("list_streams", Params={}, ExpiresIn=60)
    status, body = post_presigned(stale)
    expect_eq((status, body.get("__type")), (400, "InvalidSignatureException"),
              "a URL presigned ten minutes ago for one minute")
    with mock.patch("botocore.auth.get_current_datetime", ten_minutes_ago):
        hour = client().generate_presigned_url("list_streams", Params={}, ExpiresIn=3600)
    expect_eq(post_presigned(hour)[0], 200, "a URL presigned ten minutes ago for an hour")
    wrong = client(secret="not-the-secret").generate_presigned_url("list_streams", Params={},
                                                                   ExpiresIn=60)
    expect_eq(post_presigned(wrong)[1].get("__type"), "InvalidSignatureException",
              "a URL presigned with a wrong secret")


try:
    s.check("start", ck_start, what="strom serve with Kinesis access keys (environment and file)")
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
    s.check("tampered_body", ck_tampered_body, needs=["signed_roundtrip"],
            what="a body altered after signing gets InvalidSignatureException")
    s.check("session_token", ck_session_token, needs=["signed_roundtrip"],
            what="a temporary key needs its session token; expired: ExpiredTokenException")
    s.check("presigned", ck_presigned, needs=["signed_roundtrip"],
            what="a botocore presigned URL works until X-Amz-Expires")
finally:
    broker.stop()
    if s.results.get("start") != "PASS" or "FAIL" in s.results.values():
        print(broker.log_tail())
    shutil.rmtree(WORK, ignore_errors=True)
s.finish()
