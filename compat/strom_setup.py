#!/usr/bin/env python3
"""Set-up shared by the compat scripts: free ports, a `strom serve` of their own, and the TLS
and OAUTHBEARER material they need, made here by the openssl CLI (nothing from elsewhere).

As a module (test_tls.py, test_sigv4.py, sasl_clients.py):

    free_port(), wait_port(port)
    Tls(dir).make_ca("ca"); Tls(dir).issue("ca", "server", "/CN=localhost", server=True)
    Jwt(dir).jwks_path(), Jwt(dir).token("alice", lifetime_s=600)
    Broker(bin, workdir).start([...serve flags...], env={...}); .stop(); .log_tail()

As a script (compat/test_sasl.sh):

    strom_setup.py tls DIR    writes DIR/ca.pem, DIR/other-ca.pem (a CA the broker does not
                              use), DIR/server.pem + server.key (CN=localhost, SAN localhost and
                              127.0.0.1, signed by ca), DIR/jwt.key and DIR/jwks.json (the RSA
                              key that signs OAUTHBEARER tokens, as a JWKS document)
    strom_setup.py jwt DIR SUB LIFETIME_S
                              prints a token for SUB signed by DIR/jwt.key (RS256), expiring
                              LIFETIME_S seconds from now (negative: already expired)
"""

from __future__ import annotations

import base64
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import IO, Iterable

from compat_check import wait_until

# The `kid` of the OAUTHBEARER signing key in the JWKS and in every token's header.
JWT_KID = "compat"


def free_port() -> int:
    """A loopback port that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_port(port: int, timeout: float = 30.0) -> bool:
    """Waits until 127.0.0.1:`port` accepts connections; False after `timeout` seconds."""

    def up() -> bool:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return True
        except OSError:
            return False

    return wait_until(up, timeout)


def openssl(cwd: Path, *args: str, stdin: bytes | None = None) -> bytes:
    """Runs the openssl CLI in `cwd`; its standard output."""
    return subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=cwd,
                          input=stdin, timeout=60).stdout


class Tls:
    """Certificate authorities and certificates in one directory (`<name>.pem`, `<name>.key`)."""

    def __init__(self, directory: Path) -> None:
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)

    def path(self, name: str) -> str:
        """The PEM certificate `name`."""
        return str(self.dir / f"{name}.pem")

    def key(self, name: str) -> str:
        """The PEM private key of `name`."""
        return str(self.dir / f"{name}.key")

    def make_ca(self, name: str) -> None:
        """A self-signed CA, valid two days."""
        openssl(self.dir, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                "-keyout", f"{name}.key", "-out", f"{name}.pem", "-subj", f"/CN={name}")

    def issue(self, ca: str, name: str, subject: str, server: bool) -> None:
        """A certificate for `subject` signed by `ca`: a server one for localhost and 127.0.0.1,
        or a client one. Written by rename, so a reload never reads half a file."""
        ext = self.dir / f"{name}.ext"
        ext.write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n"
                       if server else "extendedKeyUsage=clientAuth\n")
        openssl(self.dir, "req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key.new",
                "-out", f"{name}.csr", "-subj", subject)
        openssl(self.dir, "x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey",
                f"{ca}.key", "-CAcreateserial", "-days", "2", "-out", f"{name}.pem.new",
                "-extfile", str(ext))
        os.replace(self.dir / f"{name}.key.new", self.dir / f"{name}.key")
        os.replace(self.dir / f"{name}.pem.new", self.dir / f"{name}.pem")


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


class Jwt:
    """An RSA key that signs OAUTHBEARER tokens (RS256) and its JWKS document, in `directory`."""

    def __init__(self, directory: Path) -> None:
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.key = self.dir / "jwt.key"

    def jwks_path(self) -> str:
        """Creates the key and the JWKS document if missing; the JWKS file."""
        jwks = self.dir / "jwks.json"
        if not jwks.exists():
            openssl(self.dir, "genrsa", "-out", "jwt.key", "2048")
            out = openssl(self.dir, "rsa", "-in", "jwt.key", "-noout", "-modulus").decode()
            modulus = bytes.fromhex(out.strip().split("=", 1)[1])
            jwks.write_text(json.dumps({"keys": [{
                "kty": "RSA", "kid": JWT_KID, "alg": "RS256", "use": "sig",
                "n": b64url(modulus), "e": b64url((65537).to_bytes(3, "big")),
            }]}))
        return str(jwks)

    def token(self, sub: str, lifetime_s: int, **claims: object) -> str:
        """A token for `sub` expiring `lifetime_s` seconds from now (negative: expired)."""
        self.jwks_path()
        now = int(time.time())
        header = {"alg": "RS256", "typ": "JWT", "kid": JWT_KID}
        payload = {"sub": sub, "iat": now, "exp": now + lifetime_s, **claims}
        signing_input = (b64url(json.dumps(header).encode()) + "."
                         + b64url(json.dumps(payload).encode()))
        signature = openssl(self.dir, "dgst", "-sha256", "-sign", str(self.key),
                            stdin=signing_input.encode())
        return signing_input + "." + b64url(signature)


class Broker:
    """A `strom serve` of the caller's own: its data and log in `workdir`, no STROM_* variable of
    the caller's environment (they must not change what the broker under test does)."""

    def __init__(self, binary: str, workdir: Path) -> None:
        self.bin = binary
        self.workdir = Path(workdir)
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = self.workdir / "broker.log"
        self._log: IO[bytes] | None = None

    def start(self, args: Iterable[str], env: dict[str, str] | None = None,
              ports: Iterable[int] = ()) -> bool:
        """Starts `strom serve --data-dir <workdir>/data --log info ARGS`; True once every port
        in `ports` accepts connections (within 30 s)."""
        if not self.bin:
            raise RuntimeError("COMPAT_STROM_BIN is not set")
        environment = {k: v for k, v in os.environ.items() if not k.startswith("STROM_")}
        environment.update(env or {})
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - lives as long as the broker
        self.process = subprocess.Popen(
            [self.bin, "serve", "--data-dir", str(self.workdir / "data"), "--log", "info",
             *args],
            stdout=self._log, stderr=subprocess.STDOUT, env=environment)
        return all(wait_port(p) for p in ports)

    def signal(self, sig: int) -> None:
        if self.process is not None:
            self.process.send_signal(sig)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 30 s."""
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""


def main(argv: list[str]) -> int:
    if len(argv) == 3 and argv[1] == "tls":
        tls = Tls(Path(argv[2]))
        tls.make_ca("ca")
        tls.make_ca("other-ca")
        tls.issue("ca", "server", "/CN=localhost", server=True)
        Jwt(tls.dir).jwks_path()
        return 0
    if len(argv) == 5 and argv[1] == "jwt":
        print(Jwt(Path(argv[2])).token(argv[3], int(argv[4])))
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
