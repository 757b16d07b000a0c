"""Typed domain errors and the one place that turns every error into problem+json (RFC 9457)."""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import asyncpg
import sqlalchemy.exc
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

log = logging.getLogger("salesbook.errors")

PROBLEM_JSON = "application/problem+json"


class DomainError(Exception):
    """A business rule said no. Subclasses set the HTTP status and a short title."""

    status = 400
    title = "Bad request"

    def __init__(self, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extra = extra


class NotFound(DomainError):
    status = 404
    title = "Not found"


class Conflict(DomainError):
    """The request is well formed but conflicts with the current state (409)."""

    status = 409
    title = "Conflict"


class InvalidInput(DomainError):
    """Bad input that schema validation cannot see (422); names the offending field."""

    status = 422
    title = "Unprocessable content"

    def __init__(self, field: str, detail: str, **extra: Any) -> None:
        super().__init__(f"{field}: {detail}", field=field, **extra)
        self.field = field


class DuplicateKey(json.JSONDecodeError):
    """A JSON object of the body names `key` twice: refused (422 naming it) rather than taking
    the last value, which a proxy or a validator in front of the server may not have read."""

    def __init__(self, key: str) -> None:
        super().__init__("given more than once; a body names each field once", "", 0)
        # Named as text the answer can carry: a key is any JSON string, lone surrogates and
        # megabytes included.
        shown = key.encode("utf-8", "backslashreplace").decode()
        self.key = shown if len(shown) <= 100 else shown[:100] + "…"


class NotYetKnown(DomainError):
    """What the request names is not known to this service yet, though its events are still
    being applied: try again shortly (503 with Retry-After), the input may well be right."""

    status = 503
    title = "Service unavailable"

    def __init__(self, field: str, detail: str, **extra: Any) -> None:
        super().__init__(f"{field}: {detail}", field=field, **extra)
        self.field = field


class Unauthorized(DomainError):
    status = 401
    title = "Unauthorized"


class Forbidden(DomainError):
    status = 403
    title = "Forbidden"


class IllegalTransition(Conflict):
    title = "Illegal state transition"


class PeriodLocked(Conflict):
    title = "Period closed"


# How long a client should wait before trying again after the database was unreachable.
RETRY_AFTER_SECONDS = 5

_CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    OSError,  # refused, reset, unreachable: the server is not there
    asyncpg.PostgresConnectionError,  # SQLSTATE class 08
    asyncpg.CannotConnectNowError,  # starting up or shutting down
    asyncpg.AdminShutdownError,  # the backend was terminated
    asyncpg.CrashShutdownError,
    asyncpg.TooManyConnectionsError,
    sqlalchemy.exc.DisconnectionError,
    sqlalchemy.exc.TimeoutError,  # no pooled connection came free
)


_DATABASE_ERRORS: tuple[type[Exception], ...] = (
    sqlalchemy.exc.DBAPIError,
    sqlalchemy.exc.DisconnectionError,
    sqlalchemy.exc.TimeoutError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    OSError,
)


def connection_lost(exc: BaseException) -> bool:
    """Whether `exc` says the database could not be reached or dropped the connection, as
    opposed to refusing what was asked: worth retrying later, nobody's fault."""
    for current in _causes(exc):
        if isinstance(current, _CONNECTION_ERRORS):
            return True
        if isinstance(current, sqlalchemy.exc.DBAPIError) and current.connection_invalidated:
            return True
        if isinstance(current, asyncpg.InterfaceError) and "closed" in str(current):
            return True
        if isinstance(current, asyncpg.ObjectNotInPrerequisiteStateError) and (
            "accepting connections" in str(current)  # datallowconn off, e.g. during a restore
        ):
            return True
    return False


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """`exc`, then what it wraps (a driver's error under SQLAlchemy's) or was raised from."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        nested = getattr(current, "orig", None)
        current = (
            nested
            if isinstance(nested, BaseException)
            else (current.__cause__ or current.__context__)
        )


# Deadlock detected, serialization failure: the database undid the whole transaction, and
# the same request sent again normally succeeds.
_CONCURRENCY_STATES = {"40P01", "40001"}


def concurrency_failure(exc: BaseException) -> bool:
    """Whether `exc` is the database giving up a transaction that collided with another."""
    return any(getattr(e, "sqlstate", None) in _CONCURRENCY_STATES for e in _causes(exc))


def problem(
    status: int,
    title: str,
    detail: str,
    *,
    headers: Mapping[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail, **extra}
    headers = dict(headers or {})
    if status == 401:
        headers.setdefault("WWW-Authenticate", "Bearer")
    if status == 503:
        headers.setdefault("Retry-After", str(RETRY_AFTER_SECONDS))
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def _domain_problem(exc: DomainError) -> JSONResponse:
    return problem(exc.status, exc.title, exc.detail, **exc.extra)


def malformed_body(reason: str) -> JSONResponse:
    """The one answer to a body that is not JSON the server can read."""
    message = f"malformed JSON: {reason}"
    return problem(
        422,
        "Unprocessable content",
        f"body: {message}",
        errors=[{"field": "body", "message": message}],
    )


TOO_LARGE = "Content too large"
"""The title of a 413: a body larger than the server reads."""

# What FastAPI says when a body could not be decoded at all (not UTF-8, nested too deeply, an
# integer longer than Python reads).
_BODY_PARSE_FAILED = "There was an error parsing the body"
_DECIMAL_REPR = re.compile(r"Decimal\('([^']*)'\)")
_PYDANTIC_PREFIXES = ("Value error, ", "Assertion failed, ")


def _readable(message: str) -> str:
    """A validation message as a person reads it: numbers as numbers, no validator prefix."""
    for prefix in _PYDANTIC_PREFIXES:
        if message.startswith(prefix):
            message = message[len(prefix) :]
    return _DECIMAL_REPR.sub(r"\1", message)


def _field_path(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or ".".join(str(p) for p in loc)


_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")


def _allowed_methods(request: Request) -> str:
    """Every method some route serves at this path (the router names only the first route's)."""
    allowed = []
    for method in _METHODS:
        scope = {**request.scope, "method": method}
        if any(route.matches(scope)[0] == Match.FULL for route in request.app.routes):
            allowed.append(method)
    return ", ".join(allowed)


Door = Callable[[Request], DomainError | None]


def _sent_a_body(request: Request) -> bool:
    """Whether the request came with a body: a length above 0, or one sent in chunks."""
    length = request.headers.get("content-length")
    return (length is not None and length != "0") or "transfer-encoding" in request.headers


def _not_json(request: Request) -> bool:
    """Whether the request says its body is of a type other than JSON (as FastAPI reads the
    header: `application/json` or `application/<anything>+json`)."""
    given = request.headers.get("content-type")
    if not given:
        return True  # FastAPI reads a body without a Content-Type as bytes, not as JSON
    media = given.partition(";")[0].strip().lower()
    kind, _, subtype = media.partition("/")
    return not (kind == "application" and (subtype == "json" or subtype.endswith("+json")))


def content_coding(request: Request) -> str | None:
    """The Content-Encoding a body is said to be sent in, unless none (or identity): the
    server undoes none, so it reads no body sent in one."""
    coding = request.headers.get("content-encoding", "").strip().lower()
    return None if coding in ("", "identity") else coding


def _unsupported_body(request: Request) -> JSONResponse | None:
    """415 for a body the server could not read because of how it was sent: compressed
    (`Content-Encoding`, which the server does not undo) or of another type than JSON. A
    request without a body lacks one, whatever its headers say (422)."""
    if not _sent_a_body(request):
        return None
    if coding := content_coding(request):
        detail = f"the body is sent with Content-Encoding {coding}; send it uncompressed"
    elif _not_json(request):
        given = request.headers.get("content-type")
        sent = f"sent as {given}" if given else "sent without a Content-Type"
        detail = f"the body is {sent}; send it as JSON (Content-Type: application/json)"
    else:
        return None
    return problem(415, "Unsupported media type", detail)


def install_error_handlers(app: FastAPI, *, door: Door | None = None) -> None:
    """Map every error a request can raise to problem+json; nothing a client sends yields a 500.

    `door` says what a caller who may not use the operation is answered (401 or 403); it
    comes before any refusal of the input (422), whichever was found first."""

    def _at_the_door(request: Request) -> JSONResponse | None:
        refused = door(request) if door is not None else None
        return None if refused is None else _domain_problem(refused)

    @app.exception_handler(DomainError)
    async def _domain(request: Request, exc: DomainError) -> JSONResponse:
        if exc.status == 422 and (first := _at_the_door(request)) is not None:
            return first
        return _domain_problem(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        if (first := _at_the_door(request)) is not None:
            return first
        # FastAPI reads a body only as JSON; any other type reaches validation as bytes.
        if any(e.get("loc", ())[:1] == ("body",) for e in exc.errors()) and (
            unsupported := _unsupported_body(request)
        ):
            return unsupported
        errors = []
        for err in exc.errors():
            field = _field_path(tuple(err.get("loc", ())))
            message = _readable(str(err.get("msg", "invalid")))
            if isinstance(exc.__cause__, DuplicateKey):
                field, message = exc.__cause__.key, exc.__cause__.msg
            elif err.get("type") == "json_invalid":
                message = "malformed JSON: " + str(err.get("ctx", {}).get("error", message))
                field = "body"
            errors.append({"field": field, "message": message})
        detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
        return problem(422, "Unprocessable content", detail, errors=errors)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 400 and exc.detail == _BODY_PARSE_FAILED:
            return (
                _at_the_door(request)
                or _unsupported_body(request)
                or malformed_body(
                    "not UTF-8 text, nested too deeply, or a number of more than "
                    f"{sys.get_int_max_str_digits()} digits"
                )
            )
        if exc.status_code == 413:
            return problem(413, TOO_LARGE, str(exc.detail))
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            headers["Allow"] = _allowed_methods(request) or headers.get("Allow", "")
        return problem(exc.status_code, str(exc.detail), str(exc.detail), headers=headers)

    async def _database(request: Request, exc: Exception) -> JSONResponse:
        if concurrency_failure(exc):
            log.warning("concurrent change during %s %s: %r", request.method, request.url.path, exc)
            return problem(
                503,
                "Service unavailable",
                "a concurrent change got in the way and nothing was written; send it again",
            )
        if connection_lost(exc):
            log.warning(
                "database unavailable during %s %s: %r", request.method, request.url.path, exc
            )
            return problem(
                503,
                "Service unavailable",
                "the database cannot be reached right now; try again shortly",
            )
        return await _unexpected(request, exc)

    # Registered by class rather than inside the catch-all: the catch-all's response is sent
    # by the outermost middleware, which then raises the error again.
    for database_error in _DATABASE_ERRORS:
        app.add_exception_handler(database_error, _database)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error", exc_info=exc)
        return problem(500, "Internal server error", "an unexpected error occurred")
