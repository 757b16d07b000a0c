"""Signed bearer tokens carrying a subject and a role, and the role checks of every route."""

from __future__ import annotations

import functools
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path

import jwt
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from shared.config import Settings
from shared.errors import Forbidden, Unauthorized

ALGORITHM = "HS256"
ISSUER = "salesbook"


class Role(StrEnum):
    POS = "pos"
    SALES = "sales"
    APPROVER = "approver"
    FINANCE = "finance"
    ANALYST = "analyst"
    ADMIN = "admin"


@dataclass(frozen=True)
class Actor:
    """Who is calling: the token's subject and role."""

    subject: str
    role: Role


def signing_secret(settings: Settings) -> str:
    """The configured secret, or the one generated once and kept in the data folder."""
    if settings.secret_key:
        return settings.secret_key
    path = Path(settings.data_dir) / "secret_key"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        candidate = path.with_suffix(".tmp")
        candidate.write_text(secrets.token_urlsafe(48))
        candidate.chmod(0o600)
        candidate.replace(path)
    return path.read_text().strip()


MAX_SUBJECT = 100
"""The longest subject a token may name: every column that records who acted holds it."""


def check_subject(subject: str) -> str:
    """The subject, or ValueError when no column that records who acted could hold it."""
    if not subject or len(subject) > MAX_SUBJECT or "\x00" in subject:
        raise ValueError(f"a subject is 1 to {MAX_SUBJECT} characters without NUL")
    return subject


def issue_token(*, secret: str, subject: str, role: Role, ttl: timedelta) -> str:
    check_subject(subject)
    now = datetime.now(UTC)
    claims = {"sub": subject, "role": role.value, "iss": ISSUER, "iat": now, "exp": now + ttl}
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


def decode_token(token: str, *, secret: str) -> Actor:
    """The actor a valid, unexpired token names; 401 otherwise.

    A till sends the same token with every request: its signature and claims are checked
    once, and only its expiry again on later requests (a valid token can only expire)."""
    actor, expires = _verified(token, secret)
    if time.time() >= expires:
        raise Unauthorized("the token has expired")
    return actor


@functools.lru_cache(maxsize=4096)
def _verified(token: str, secret: str) -> tuple[Actor, float]:
    """The actor of a token whose signature and claims hold, and when it expires (refusals
    raise, and are not remembered)."""
    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=[ALGORITHM],
            issuer=ISSUER,
            options={"require": ["exp", "sub"]},
        )
    except jwt.ExpiredSignatureError:
        raise Unauthorized("the token has expired") from None
    except jwt.PyJWTError:
        raise Unauthorized("the token is not valid") from None
    try:
        role = Role(str(claims.get("role")))
    except ValueError:
        raise Unauthorized("the token carries an unknown role") from None
    try:
        subject = check_subject(str(claims["sub"]))
    except ValueError as refused:
        raise Unauthorized(f"the token's subject is not valid: {refused}") from None
    return Actor(subject=subject, role=role), float(claims["exp"])


_bearer = HTTPBearer(auto_error=False)
TOKEN_REQUIRED = "a bearer token is required"


TOKEN_TWICE = "the Authorization header is sent more than once; send one bearer token"


def sent_twice(request: Request) -> bool:
    """Two Authorization headers: which token speaks for the caller is not for the server to
    pick (a proxy adding its own, a client sending a stale one beside a fresh one)."""
    return len(request.headers.getlist("authorization")) > 1


async def current_actor(
    request: Request, credentials: HTTPAuthorizationCredentials | None = Depends(_bearer)
) -> Actor:
    if sent_twice(request):
        raise Unauthorized(TOKEN_TWICE)
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise Unauthorized(TOKEN_REQUIRED)
    actor = decode_token(credentials.credentials, secret=request.app.state.token_secret)
    request.state.actor = actor
    return actor


def forbidden(actor: Actor, allowed: frozenset[Role] | set[Role]) -> Forbidden:
    names = ", ".join(sorted(r.value for r in allowed))
    return Forbidden(f"role {actor.role.value} may not do this; allowed: {names}")


def require(*roles: Role) -> Callable[..., Awaitable[Actor]]:
    """A dependency admitting the given roles; admin is always admitted."""
    allowed = {*roles, Role.ADMIN}

    async def dependency(actor: Actor = Depends(current_actor)) -> Actor:
        if actor.role not in allowed:
            raise forbidden(actor, allowed)
        return actor

    # Read by the OpenAPI document (shared/openapi.py) and the query check (shared/strict.py).
    dependency.admits = frozenset(allowed)  # type: ignore[attr-defined]  # a marker attribute
    return dependency


ANY_ROLE = tuple(Role)
