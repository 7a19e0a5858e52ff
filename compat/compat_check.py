"""A tiny check runner shared by the Python compatibility scripts.

Every check prints exactly one result line, which `compat/run.sh` counts:

    PASS <suite>/<check>
    FAIL <suite>/<check>: <why>
    KNOWN-FAIL <suite>/<check>: <why> [known: <reason from known_failures.txt>]
    XPASS <suite>/<check>: listed in known_failures.txt but passed
    SKIP <suite>/<check>: <why>

A check is a function; it passes if it returns and fails if it raises. A check can need earlier
checks: if one of them did not pass it is skipped (the failure that caused it is already counted).
The script exits 1 if any check failed (known failures excepted), else 0.
"""

from __future__ import annotations

import os
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Callable, Iterable

HERE = Path(__file__).resolve().parent


def load_known_failures(path: Path = HERE / "known_failures.txt") -> dict[str, str]:
    """Reads `<suite>/<check>  <reason>` lines, ignoring blanks and `#` comments."""
    known: dict[str, str] = {}
    if not path.exists():
        return known
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, _, reason = line.partition(" ")
        known[name] = reason.strip()
    return known


class CheckFailed(Exception):
    """Raised by `expect` and friends with a message that says what differed."""


def expect(condition: bool, message: str) -> None:
    if not condition:
        raise CheckFailed(message)


def expect_eq(actual: Any, expected: Any, what: str) -> None:
    if actual != expected:
        raise CheckFailed(f"{what}: expected {expected!r}, got {actual!r}")


class Suite:
    def __init__(self, name: str) -> None:
        self.name = name
        self.known = load_known_failures()
        self.results: dict[str, str] = {}  # check -> PASS | FAIL | KNOWN-FAIL | XPASS | SKIP
        self.bootstrap = os.environ.get("COMPAT_BOOTSTRAP", "127.0.0.1:9092")
        self.verbose = os.environ.get("COMPAT_VERBOSE") == "1"
        self.started = time.monotonic()
        print(f"== {name} against {self.bootstrap}", flush=True)

    def info(self, message: str) -> None:
        print(f"   {message}", flush=True)

    def check(
        self,
        name: str,
        fn: Callable[[], Any],
        needs: Iterable[str] = (),
        what: str = "",
    ) -> Any:
        """Runs one check; returns what `fn` returned, or None if it did not pass."""
        full = f"{self.name}/{name}"
        missing = [n for n in needs if self.results.get(n) not in ("PASS", "XPASS")]
        if missing:
            self.results[name] = "SKIP"
            print(f"SKIP {full}: needs {', '.join(missing)}", flush=True)
            return None
        if what:
            print(f"   checking {name}: {what}", flush=True)
        t0 = time.monotonic()
        try:
            value = fn()
        except Exception as e:  # noqa: BLE001 - any exception is a failed check
            took = time.monotonic() - t0
            why = f"{type(e).__name__}: {e}" if not isinstance(e, CheckFailed) else str(e)
            why = " ".join(why.split())
            if full in self.known:
                self.results[name] = "KNOWN-FAIL"
                print(
                    f"KNOWN-FAIL {full}: {why} ({took:.1f}s) [known: {self.known[full]}]",
                    flush=True,
                )
            else:
                self.results[name] = "FAIL"
                print(f"FAIL {full}: {why} ({took:.1f}s)", flush=True)
                if self.verbose or not isinstance(e, CheckFailed):
                    traceback.print_exc(file=sys.stdout)
            return None
        took = time.monotonic() - t0
        if full in self.known:
            self.results[name] = "XPASS"
            print(
                f"XPASS {full}: listed in compat/known_failures.txt but passed ({took:.1f}s)"
                " -- delete its line so a regression fails CI",
                flush=True,
            )
        else:
            self.results[name] = "PASS"
            print(f"PASS {full} ({took:.1f}s)", flush=True)
        return value

    def passed(self, name: str) -> bool:
        return self.results.get(name) in ("PASS", "XPASS")

    def finish(self) -> None:
        counts: dict[str, int] = {}
        for r in self.results.values():
            counts[r] = counts.get(r, 0) + 1
        summary = " ".join(
            f"{k.lower()}={counts.get(k, 0)}" for k in ("PASS", "FAIL", "KNOWN-FAIL", "XPASS", "SKIP")
        )
        took = time.monotonic() - self.started
        print(f"== {self.name} done in {took:.1f}s: {summary}", flush=True)
        # A skip follows a failed or known-failed check, which already decided the outcome.
        sys.exit(1 if counts.get("FAIL", 0) else 0)


def wait_until(predicate: Callable[[], bool], timeout: float, interval: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)
