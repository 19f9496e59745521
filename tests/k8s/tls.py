"""A private CA and a server certificate for the test cluster's Ingress, made with openssl (a Debian
package of `make setup`), and the client side of a host name that is in no DNS: the name is mapped to
the node's address inside this process only (``socket.getaddrinfo``), so the clients connect to the
real host name, send it as SNI and verify it against the certificate."""

from __future__ import annotations

import contextlib
import socket
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Certificate:
    ca: Path
    cert: Path
    key: Path


def make_certificate(out: Path, hosts: list[str]) -> Certificate:
    out.mkdir(parents=True, exist_ok=True)
    ca_key, ca, key, csr, cert = (out / n for n in ("ca.key", "ca.crt", "tls.key", "tls.csr", "tls.crt"))
    openssl = ["openssl"]
    subprocess.run(
        [*openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", ca_key, "-out", ca, "-days", "2",
         "-subj", "/CN=speech-stack test CA"],
        check=True, capture_output=True,
    )  # fmt: skip
    subprocess.run(
        [*openssl, "req", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", csr, "-subj", f"/CN={hosts[0]}"],
        check=True, capture_output=True,
    )  # fmt: skip
    extensions = out / "san.cnf"
    extensions.write_text("subjectAltName=" + ",".join(f"DNS:{h}" for h in hosts) + "\nextendedKeyUsage=serverAuth\n")
    subprocess.run(
        [*openssl, "x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial", "-out", cert,
         "-days", "2", "-extfile", extensions],
        check=True, capture_output=True,
    )  # fmt: skip
    return Certificate(ca, cert, key)


@contextlib.contextmanager
def resolved(names: dict[str, str]) -> Iterator[None]:
    """``name -> address`` for every client in this process (httpx, the SDK, websockets)."""
    original = socket.getaddrinfo

    def getaddrinfo(host, *args, **kwargs):
        return original(names.get(host, host) if isinstance(host, str) else host, *args, **kwargs)

    socket.getaddrinfo = getaddrinfo
    try:
        yield
    finally:
        socket.getaddrinfo = original
