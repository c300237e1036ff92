"""The access matrix: every route of the API x every bad credential -> 401 (or, for
another parent's valid token, 404 exactly like a book that does not exist), and nothing
changed in the database, the storage or Temporal."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from sqlalchemy import func, select
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode
from temporalio.testing import WorkflowEnvironment

from storywink import contract
from storywink.config import Settings
from storywink.contract import story_workflow_id
from storywink.db.connection import Database
from storywink.db.models import Book
from storywink.web import create_app
from tests.support.helpers import load_book
from tests.support.services import test_settings
from tests.support.web_app import (
    WEB_SECRET,
    WEB_SETTINGS,
    bearer,
    photo_parts,
    running_app,
    token_for,
)

AUDIENCE = "storywink-web"
ISSUER = "https://id.example"
OWNER = "parent-owner"
OTHER = "parent-intruder"
# Not behind a token: health and metrics (no book data), and forgetting the session cookie.
OPEN_ROUTES = {("GET", "/healthz"), ("GET", "/readyz"), ("GET", "/metrics"), ("DELETE", "/session")}
MISSING_BOOK = "0" * 32


def valid(user_id: str, **claims: Any) -> str:
    return token_for(user_id, aud=AUDIENCE, iss=ISSUER, **claims)


def rsa_signed() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    now = int(time.time())
    claims = {"sub": OWNER, "exp": now + 600, "aud": AUDIENCE, "iss": ISSUER}
    return jwt.encode(claims, pem, algorithm="RS256")


def unsigned() -> str:
    now = int(time.time())
    claims = {"sub": OWNER, "exp": now + 600, "aud": AUDIENCE, "iss": ISSUER}
    return jwt.encode(claims, None, algorithm="none")  # type: ignore[arg-type]


BAD_CREDENTIALS: dict[str, dict[str, str]] = {
    "no token": {},
    "not bearer": {"Authorization": "Basic b3duZXI6cHc="},
    "garbage": bearer("not.a.jwt"),
    "expired": bearer(valid(OWNER, exp=int(time.time()) - 60)),
    "no exp": bearer(jwt.encode({"sub": OWNER, "aud": AUDIENCE, "iss": ISSUER}, WEB_SECRET)),
    "wrong signature": bearer(token_for(OWNER, secret="another-secret-0123456789abcdef012")),
    "alg none": bearer(unsigned()),
    "RS256 instead of HS256": bearer(rsa_signed()),
    "wrong audience": bearer(token_for(OWNER, aud="another-app", iss=ISSUER)),
    "wrong issuer": bearer(token_for(OWNER, aud=AUDIENCE, iss="https://evil.example")),
}


@pytest.fixture
def access_settings(
    temporal_env: WorkflowEnvironment, database_url: str, tmp_path: Path
) -> Settings:
    return test_settings(
        temporal_env,
        database_url,
        tmp_path,
        **WEB_SETTINGS,
        web_jwt_audience=AUDIENCE,
        web_jwt_issuer=ISSUER,
    )


@pytest.fixture
async def access_url(access_settings: Settings) -> AsyncIterator[str]:
    async with running_app(access_settings) as url:
        yield url


def api_routes(settings: Settings) -> list[tuple[str, str]]:
    """Every (method, path) of the OpenAPI document that needs a token."""
    document = create_app(settings).openapi()
    routes = [
        (method.upper(), path)
        for path, operations in document["paths"].items()
        for method in operations
    ]
    return sorted(route for route in routes if route not in OPEN_ROUTES)


def request_for(method: str, template: str, book_id: str) -> dict[str, Any]:
    path = (
        template.replace("{book_id}", book_id)
        .replace("{page_number}", "1")
        .replace("{kind}", "photo")
    )
    request: dict[str, Any] = {"method": method, "url": path}
    if template.endswith("/text"):
        request["json"] = {"text": "Changed by someone else."}
    if template.endswith("/redraw"):
        request["json"] = {"note": "Make it someone else's."}
    if (method, template) == ("POST", "/books"):
        request["files"] = photo_parts(1)
        request["data"] = {"title": "Intruder", "child_name": "Eve"}
    return request


async def not_started(temporal: Client, workflow_id: str) -> bool:
    try:
        await temporal.get_workflow_handle(workflow_id).describe()
    except RPCError as exc:
        return exc.status is RPCStatusCode.NOT_FOUND
    return False


def storage_files(settings: Settings) -> list[str]:
    root = settings.storage_dir
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def count(database: Database) -> int:
    with database.sessions() as session:
        return session.scalar(select(func.count()).select_from(Book)) or 0


def book_state(database: Database, book_id: str) -> tuple[object, ...]:
    book, pages, notes = load_book(database, book_id)
    return (
        book.status,
        book.claim_workflow_id,
        tuple((p.text, p.moderation_status, p.generated_image_url) for p in pages),
        len(notes),
    )


async def test_every_route_refuses_bad_tokens_and_other_parents_books(
    temporal_client: Client, database: Database, access_settings: Settings, access_url: str
) -> None:
    routes = api_routes(access_settings)
    async with httpx.AsyncClient(base_url=access_url, timeout=30) as http:
        created = await http.post(
            "/books",
            headers=bearer(valid(OWNER)),
            files=photo_parts(2),
            data={"title": "Private", "child_name": "Mia", "story": '{"pages": ["A.", "B."]}'},
        )
        assert created.status_code == 201, created.text
        book_id = created.json()["id"]
        with database.sessions() as session:
            book_count = session.execute(
                __import__("sqlalchemy").text("SELECT count(*) FROM books")
            ).scalar()
        before = (book_state(database, book_id), storage_files(access_settings), book_count)

        refusals: dict[tuple[str, str, str], int] = {}
        for method, template in routes:
            for name, headers in BAD_CREDENTIALS.items():
                answer = await http.request(
                    **request_for(method, template, book_id), headers=headers
                )
                refusals[(method, template, name)] = answer.status_code
                if answer.status_code == 401:
                    assert answer.headers["www-authenticate"] == "Bearer"
                    assert answer.headers["content-type"] == "application/problem+json"
                    assert WEB_SECRET not in answer.text
            if "{book_id}" not in template:
                continue
            other = await http.request(
                **request_for(method, template, book_id), headers=bearer(valid(OTHER))
            )
            missing = await http.request(
                **request_for(method, template, MISSING_BOOK), headers=bearer(valid(OWNER))
            )
            refusals[(method, template, "another parent")] = other.status_code
            assert other.status_code == missing.status_code == 404, (template, other.text)
            assert other.headers["content-type"] == missing.headers["content-type"]
            assert other.json()["detail"].replace(book_id, "ID") == missing.json()[
                "detail"
            ].replace(MISSING_BOOK, "ID")

        assert {
            status for (_, _, name), status in refusals.items() if name != "another parent"
        } == {401}
        assert len(refusals) >= len(routes) * len(BAD_CREDENTIALS)
        others = await http.get("/books", headers=bearer(valid(OTHER)))
        assert others.status_code == 200 and others.json()["books"] == []

        with database.sessions() as session:
            book_count_after = session.execute(
                __import__("sqlalchemy").text("SELECT count(*) FROM books")
            ).scalar()
        assert (
            book_state(database, book_id),
            storage_files(access_settings),
            book_count_after,
        ) == before
        assert await not_started(temporal_client, contract.illustration_workflow_id(book_id))
        assert await not_started(temporal_client, story_workflow_id(book_id))

        # The control: the owner's token changes the text (so the check above can fail).
        mine = await http.put(
            f"/books/{book_id}/pages/1/text", headers=bearer(valid(OWNER)), json={"text": "Mine."}
        )
        assert mine.status_code == 200
        assert book_state(database, book_id) != before[0]


async def test_the_session_cookie_is_checked_like_the_header(
    database: Database, access_url: str
) -> None:
    async with httpx.AsyncClient(base_url=access_url, timeout=30) as http:
        created = await http.post(
            "/books",
            headers=bearer(valid(OWNER)),
            files=photo_parts(1),
            data={"title": "Cookie", "child_name": "Mia"},
        )
        book_id = created.json()["id"]
        photo = f"/books/{book_id}/pages/1/photo"
        session = await http.post("/session", headers=bearer(valid(OWNER)))
        assert session.status_code == 200 and "httponly" in session.headers["set-cookie"].lower()
        assert "samesite=strict" in session.headers["set-cookie"].lower()
        assert (await http.get(photo)).status_code == 200  # the cookie alone
        assert (await http.get(f"/books/{book_id}")).status_code == 401  # not for the API
        await http.delete("/session")
        assert (await http.get(photo)).status_code == 401
        await http.post("/session", headers=bearer(valid(OTHER)))
        assert (await http.get(photo)).status_code == 404
        http.cookies.set("storywink_token", valid(OWNER, exp=int(time.time()) - 5))
        assert (await http.get(photo)).status_code == 401
