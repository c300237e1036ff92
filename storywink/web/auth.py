"""Who is calling: a verified JWT's `sub` is the parent's account (`books.user_id`).

HS256 with a shared secret, or RS256/ES256 with a public key or a JWKS URL: the accepted
algorithms follow the kind of key configured, so a token cannot switch an RS256 set-up
to HS256 (with the public key as the "secret"), and `alg: none` is never accepted.
"""

from __future__ import annotations

import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Final

import jwt
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from jwt import PyJWKClient

from storywink.book.inputs import USER_ID_MAX
from storywink.config import ConfigurationError, Settings

HMAC_ALGORITHMS: Final = ["HS256"]
PUBLIC_KEY_ALGORITHMS: Final = ["RS256", "ES256"]
LOCAL_ISSUER: Final = "storywink-local"


class NotAuthenticated(Exception):
    """No token, or one that does not verify (HTTP 401); the message says why, never the
    token itself."""


@dataclass(frozen=True)
class Parent:
    """The caller: the account whose books they may see."""

    user_id: str


def local_secret(settings: Settings) -> str:
    """WEB_JWT_SECRET, else the local secret file, written (mode 0600) on first use."""
    if settings.web_jwt_secret is not None:
        return settings.web_jwt_secret.get_secret_value()
    path = settings.web_jwt_secret_file
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    fresh = secrets.token_urlsafe(32)
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process wrote it meanwhile
        return path.read_text().strip()
    with os.fdopen(descriptor, "w") as handle:
        handle.write(fresh + "\n")
    return fresh


def uses_public_keys(settings: Settings) -> bool:
    return bool(settings.web_jwt_public_key or settings.web_jwt_jwks_url)


class TokenVerifier:
    """Checks bearer tokens against the configured key, audience and issuer."""

    def __init__(self, settings: Settings) -> None:
        self._audience = settings.web_jwt_audience
        self._issuer = settings.web_jwt_issuer
        self._jwks: PyJWKClient | None = None
        self._key: str | None = None
        if settings.web_jwt_jwks_url:
            self._jwks = PyJWKClient(settings.web_jwt_jwks_url, cache_keys=True)
            self._algorithms = PUBLIC_KEY_ALGORITHMS
        elif settings.web_jwt_public_key:
            self._key = _read_public_key(settings.web_jwt_public_key)
            self._algorithms = PUBLIC_KEY_ALGORITHMS
        else:
            self._key = local_secret(settings)
            self._algorithms = HMAC_ALGORITHMS

    def verify(self, token: str) -> Parent:
        return self.verified(token)[0]

    def verified(self, token: str) -> tuple[Parent, int]:
        """The caller and the token's expiry (seconds since the epoch)."""
        try:
            header = jwt.get_unverified_header(token)
            if header.get("alg") not in self._algorithms:
                raise NotAuthenticated(
                    f"token algorithm {str(header.get('alg'))[:20]!r} is not accepted "
                    f"({', '.join(self._algorithms)})"
                )
            key = self._jwks.get_signing_key_from_jwt(token).key if self._jwks else self._key
            claims = jwt.decode(
                token,
                key,  # type: ignore[arg-type]
                algorithms=self._algorithms,
                audience=self._audience,
                issuer=self._issuer,
                options={
                    "require": ["exp", "sub"],
                    "verify_aud": self._audience is not None,
                    "verify_iss": self._issuer is not None,
                },
            )
        except jwt.ExpiredSignatureError:
            raise NotAuthenticated("the token has expired") from None
        except jwt.PyJWTError as exc:
            raise NotAuthenticated(f"the token is not valid: {type(exc).__name__}") from None
        subject = claims.get("sub")
        if not isinstance(subject, str) or not subject.strip() or len(subject) > USER_ID_MAX:
            raise NotAuthenticated(
                f"the token's sub must be an account id of 1-{USER_ID_MAX} chars"
            )
        return Parent(user_id=subject), int(claims["exp"])


def _read_public_key(value: str) -> str:
    """The PEM itself, or the path of a file holding it."""
    if "-----BEGIN" in value:
        return value
    try:
        return Path(value).read_text()
    except OSError as exc:
        raise ConfigurationError(
            f"WEB_JWT_PUBLIC_KEY: cannot read {value}: {exc.strerror}"
        ) from None


def issue_local_token(settings: Settings, user_id: str, ttl_seconds: int | None = None) -> str:
    """A token for `user_id` signed with the local HS256 secret (`storywink token`)."""
    if uses_public_keys(settings):
        raise ConfigurationError(
            "tokens are verified with WEB_JWT_PUBLIC_KEY / WEB_JWT_JWKS_URL: your identity "
            "provider issues them, `storywink token` cannot"
        )
    now = int(time.time())
    claims: dict[str, object] = {
        "sub": user_id,
        "iat": now,
        "exp": now + (ttl_seconds or settings.web_token_ttl_seconds),
        "iss": settings.web_jwt_issuer or LOCAL_ISSUER,
    }
    if settings.web_jwt_audience:
        claims["aud"] = settings.web_jwt_audience
    return jwt.encode(claims, local_secret(settings), algorithm="HS256")


_bearer = HTTPBearer(auto_error=False, description="A JWT whose `sub` is the parent's account.")


def current_parent(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Parent:
    """The verified caller of a route (a FastAPI dependency); 401 otherwise."""
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise NotAuthenticated("an Authorization: Bearer <token> header is required")
    verifier = request.app.state.storywink.verifier
    assert isinstance(verifier, TokenVerifier)
    return verifier.verify(credentials.credentials)


CurrentParent = Annotated[Parent, Depends(current_parent)]


SESSION_COOKIE: Final = "storywink_token"


def viewing_parent(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Parent:
    """The caller of a read the browser makes by itself (`EventSource`, `<img>`), which
    cannot send a header: the bearer token, else the token in the page's session cookie
    (HttpOnly, SameSite=Strict, set by `POST /session`). Only safe (GET) routes take it."""
    if credentials is None and (cookie := request.cookies.get(SESSION_COOKIE)):
        verifier = request.app.state.storywink.verifier
        assert isinstance(verifier, TokenVerifier)
        return verifier.verify(cookie)
    return current_parent(request, credentials)


ViewingParent = Annotated[Parent, Depends(viewing_parent)]
