"""A TLS-terminating TCP proxy in front of the test dev server (`temporal server start-dev`
has no TLS flags), a test CA made at test time, and what the proxy saw of the gRPC
requests passing through it: the HTTP/2 request headers, decoded, bytes forwarded unchanged.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import ipaddress
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from hpack import Decoder, HPACKError

H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
HEADERS, CONTINUATION = 0x1, 0x9
END_HEADERS, PADDED, PRIORITY = 0x4, 0x8, 0x20


@dataclass(frozen=True)
class TestCA:
    """A CA and a server certificate it signed for 127.0.0.1 and localhost (PEM files)."""

    ca_cert: Path
    server_cert: Path
    server_key: Path

    def server_context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.server_cert, self.server_key)
        context.set_alpn_protocols(["h2"])
        return context


TestCA.__test__ = False  # type: ignore[attr-defined]


def make_test_ca(directory: Path) -> TestCA:
    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "storywink test CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    server_key = ec.generate_private_key(ec.SECP256R1())
    server_cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(server_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    paths = TestCA(directory / "ca.pem", directory / "server.pem", directory / "server-key.pem")
    paths.ca_cert.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    paths.server_cert.write_bytes(server_cert.public_bytes(serialization.Encoding.PEM))
    paths.server_key.write_bytes(
        server_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return paths


class RequestHeaders:
    """Reads the client's side of one HTTP/2 connection as it passes and decodes each
    request's header block (HPACK keeps state per connection, so every block is decoded in
    order). Only reads: the proxy forwards the bytes as they came."""

    def __init__(self, seen: list[dict[str, str]]) -> None:
        self.seen = seen
        self.buffer = b""
        self.preface_done = False
        self.block = b""
        self.decoder = Decoder()
        # The server may allow a larger table than HPACK's default; the client follows it.
        self.decoder.max_allowed_table_size = 1 << 20
        self.broken = False

    def feed(self, data: bytes) -> None:
        if self.broken:
            return
        self.buffer += data
        if not self.preface_done:
            if len(self.buffer) < len(H2_PREFACE):
                return
            if not self.buffer.startswith(H2_PREFACE):
                self.broken = True
                return
            self.buffer = self.buffer[len(H2_PREFACE) :]
            self.preface_done = True
        while len(self.buffer) >= 9:
            length = int.from_bytes(self.buffer[:3], "big")
            if len(self.buffer) < 9 + length:
                return
            kind, flags = self.buffer[3], self.buffer[4]
            payload = self.buffer[9 : 9 + length]
            self.buffer = self.buffer[9 + length :]
            if kind == HEADERS:
                start, end = 0, len(payload)
                if flags & PADDED:
                    start, end = 1, end - payload[0]
                if flags & PRIORITY:
                    start += 5
                self.block = payload[start:end]
            elif kind == CONTINUATION:
                self.block += payload
            else:
                continue
            if flags & END_HEADERS:
                try:
                    headers = self.decoder.decode(self.block, raw=False)
                except HPACKError:
                    self.broken = True
                    return
                self.seen.append({str(name): str(value) for name, value in headers})
                self.block = b""


@dataclass
class Proxy:
    """Listening on 127.0.0.1:`port`; `requests` holds each request's headers."""

    port: int
    requests: list[dict[str, str]] = field(default_factory=list)
    connections: int = 0

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"


@asynccontextmanager
async def tls_proxy(upstream: str, tls: ssl.SSLContext | None) -> AsyncIterator[Proxy]:
    """Forward every connection to `upstream` (host:port, plain TCP), terminating TLS with
    `tls` when given, and decode the HTTP/2 request headers on the way."""
    host, port = upstream.rsplit(":", 1)
    tasks: set[asyncio.Task[None]] = set()
    proxy = Proxy(0)

    async def pipe(
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        headers: RequestHeaders | None,
    ) -> None:
        with contextlib.suppress(ConnectionError, ssl.SSLError):
            while data := await reader.read(65536):
                if headers is not None:
                    headers.feed(data)
                writer.write(data)
                await writer.drain()
        with contextlib.suppress(ConnectionError, ssl.SSLError, RuntimeError):
            writer.close()

    async def handle(client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        proxy.connections += 1
        try:
            server_r, server_w = await asyncio.open_connection(host, int(port))
        except OSError:
            client_w.close()
            return
        await asyncio.gather(
            pipe(client_r, server_w, RequestHeaders(proxy.requests)),
            pipe(server_r, client_w, None),
        )

    def start(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.create_task(handle(reader, writer))
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    server = await asyncio.start_server(start, "127.0.0.1", 0, ssl=tls)
    proxy.port = server.sockets[0].getsockname()[1]
    try:
        yield proxy
    finally:
        server.close()
        for task in list(tasks):
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
