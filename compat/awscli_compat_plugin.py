"""An AWS CLI (v1) plugin for compat/test_awscli.sh: it makes the real CLI send the requests a
SigV4 server must refuse. Loaded through the `[plugins]` section of the CLI's config file
(`compat_tamper = awscli_compat_plugin`, with compat/ on PYTHONPATH); what it does is chosen
by COMPAT_AWSCLI_TAMPER:

    body   after signing, a PutRecord body's partition key `pk-a` becomes `pk-b` (same length)
    stale  requests are signed ten minutes in the past (a stale X-Amz-Date)
    unset  nothing
"""

from __future__ import annotations

import datetime
import os


def awscli_initialize(cli) -> None:
    """The CLI's plugin entry point: `cli` is its event emitter."""
    mode = os.environ.get("COMPAT_AWSCLI_TAMPER", "")
    if mode == "body":
        cli.register("before-send.kinesis.PutRecord", tamper_body)
    elif mode == "stale":
        import botocore.auth

        real = botocore.auth.get_current_datetime

        def ten_minutes_ago(*args, **kwargs):
            return real(*args, **kwargs) - datetime.timedelta(minutes=10)

        botocore.auth.get_current_datetime = ten_minutes_ago


def tamper_body(request, **_kwargs) -> None:
    body = request.body if isinstance(request.body, bytes) else request.body.encode()
    request.body = body.replace(b"pk-a", b"pk-b")
