"""Tokens signed by an identity provider: RS256 / ES256 with a public key or a JWKS URL.
The key kind decides the algorithms, so the public key used as an HS256 secret (the
classic algorithm confusion) is refused."""

from __future__ import annotations

import hmac
import json
import threading
import time
from collections.abc import Iterator
from hashlib import sha256
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.utils import base64url_encode
from temporalio.testing import WorkflowEnvironment

from storywink.config import ConfigurationError
from tests.support.services import test_settings
from tests.support.web_app import bearer, running_app

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


def public_pem(key: PrivateKey) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def signed(key: PrivateKey, algorithm: str, kid: str | None = None, **claims: Any) -> str:
    payload = {"sub": "parent-idp", "exp": int(time.time()) + 600, **claims}
    return jwt.encode(payload, key, algorithm=algorithm, headers={"kid": kid} if kid else None)


def hs256_with(secret: bytes) -> str:
    """An HS256 token whose "secret" is the public key: what PyJWT itself refuses to make."""
    header = base64url_encode(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = base64url_encode(
        json.dumps({"sub": "parent-idp", "exp": int(time.time()) + 600}).encode()
    )
    signature = hmac.new(secret, header + b"." + body, sha256).digest()
    return (header + b"." + body + b"." + base64url_encode(signature)).decode()


@pytest.fixture
def jwks_url() -> Iterator[tuple[str, rsa.RSAPrivateKey]]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    document = json.dumps({"keys": [{**jwk, "kid": "key-1", "use": "sig", "alg": "RS256"}]})

    class Keys(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(document.encode())

        def log_message(self, *_: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Keys)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/.well-known/jwks.json", key
    finally:
        server.shutdown()


async def status_with(url: str, token: str) -> int:
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        return (await http.get("/books", headers=bearer(token))).status_code


async def test_rs256_and_es256_with_a_public_key(
    temporal_env: WorkflowEnvironment, database_url: str, tmp_path: Path
) -> None:
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ec_key = ec.generate_private_key(ec.SECP256R1())
    for key, algorithm in ((rsa_key, "RS256"), (ec_key, "ES256")):
        pem = public_pem(key)
        settings = test_settings(
            temporal_env, database_url, tmp_path, web_jwt_public_key=pem, web_jwt_audience="sw"
        )
        async with running_app(settings) as url:
            assert await status_with(url, signed(key, algorithm, aud="sw")) == 200
            assert await status_with(url, signed(key, algorithm, aud="other")) == 401
            assert await status_with(url, signed(key, algorithm)) == 401  # no aud
            assert await status_with(url, hs256_with(pem.encode())) == 401
            other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            assert await status_with(url, signed(other, "RS256", aud="sw")) == 401


async def test_rs256_from_a_jwks_url(
    temporal_env: WorkflowEnvironment,
    database_url: str,
    tmp_path: Path,
    jwks_url: tuple[str, rsa.RSAPrivateKey],
) -> None:
    url_of_keys, key = jwks_url
    settings = test_settings(temporal_env, database_url, tmp_path, web_jwt_jwks_url=url_of_keys)
    async with running_app(settings) as url:
        assert await status_with(url, signed(key, "RS256", kid="key-1")) == 200
        assert await status_with(url, signed(key, "RS256", kid="unknown")) == 401
        other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        assert await status_with(url, signed(other, "RS256", kid="key-1")) == 401


def test_a_secret_and_a_public_key_exclude_each_other(
    temporal_env: WorkflowEnvironment, database_url: str, tmp_path: Path
) -> None:
    with pytest.raises(ConfigurationError, match="exclude each other"):
        test_settings(
            temporal_env,
            database_url,
            tmp_path,
            web_jwt_secret="s" * 32,
            web_jwt_jwks_url="http://127.0.0.1:1/keys",
        )
