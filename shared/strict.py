"""Query strings as strict as bodies (SPEC §9): a parameter an operation does not declare is
422 naming it, never silently ignored (`?number=` on a list that has no such filter would
answer every row); so is a parameter of one value given twice (the last would be used and
the other never checked: `?limit=abc&limit=1`); and no query value may carry NUL. An
`Idempotency-Key` header given twice is refused the same way: the last would be the key, and
a retry that carries only the other would create the document again.

Bodies are read the same way (`StrictRoute`): a JSON object naming a field twice is 422 naming
it, where Python's reader would keep the last value (`{"amount": "5.00", "amount": "6.00"}`
would book 6.00 where a proxy reading the first saw 5.00)."""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from types import UnionType
from typing import Annotated, Any, Union, get_args, get_origin

from fastapi import Depends, Request, Response
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute

from shared.auth import (
    TOKEN_REQUIRED,
    TOKEN_TWICE,
    Role,
    current_actor,
    decode_token,
    forbidden,
    sent_twice,
)
from shared.errors import DomainError, DuplicateKey, InvalidInput, Unauthorized, content_coding
from shared.idempotency import HEADER as IDEMPOTENCY_KEY

_DECLARED = "salesbook_query_rules"


@dataclass
class _Rules:
    names: set[str] = field(default_factory=set)
    repeatable: set[str] = field(default_factory=set)  # those that take a list of values
    authenticated: bool = False
    admits: list[frozenset[Role]] = field(default_factory=list)


def _takes_many(annotation: Any) -> bool:
    """Whether a query parameter of this type takes a list of values (`?x=1&x=2`)."""
    origin = get_origin(annotation)
    if origin is Annotated:
        return _takes_many(get_args(annotation)[0])
    if origin in (Union, UnionType):
        return any(_takes_many(arg) for arg in get_args(annotation))
    return isinstance(origin, type) and issubclass(origin, (list, set, frozenset, tuple))


def _walk(dependant: Dependant, rules: _Rules) -> _Rules:
    rules.names |= {param.alias for param in dependant.query_params}
    rules.repeatable |= {
        param.alias for param in dependant.query_params if _takes_many(param.field_info.annotation)
    }
    rules.authenticated |= dependant.call is current_actor
    admits = getattr(dependant.call, "admits", None)
    if admits is not None:
        rules.admits.append(admits)
    for sub in dependant.dependencies:
        _walk(sub, rules)
    return rules


def _rules(route: APIRoute) -> _Rules:
    rules = getattr(route, _DECLARED, None)
    if rules is None:
        rules = _walk(route.dependant, _Rules())
        setattr(route, _DECLARED, rules)
    return rules


def _refusal(request: Request, rules: _Rules) -> DomainError | None:
    """What the operation's own authentication and roles would answer the caller (401 or
    403), or None when they let it in."""
    if not rules.authenticated:
        return None
    # Once the operation's own check let the token in, a refusal of the input that comes
    # after it is the answer, even if the token has expired since.
    actor = getattr(request.state, "actor", None)
    if actor is None:
        if sent_twice(request):
            return Unauthorized(TOKEN_TWICE)
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return Unauthorized(TOKEN_REQUIRED)
        try:
            actor = decode_token(token.strip(), secret=request.app.state.token_secret)
        except DomainError as refused:
            return refused
    for roles in rules.admits:
        if actor.role not in roles:
            return forbidden(actor, roles)
    return None


def refused_at_the_door(request: Request) -> DomainError | None:
    """The 401 or 403 a request to an operation gets before anything else it sent is judged:
    a caller who may not use an operation learns nothing of what its input must be. Asked
    when the input was refused (422), which FastAPI can decide before the operation's own
    dependencies run (a body that is not JSON, a cursor read by a shared dependency)."""
    route = request.scope.get("route")
    if not isinstance(route, APIRoute):
        return None
    return _refusal(request, _rules(route))


async def strict_query(request: Request) -> None:
    """Refuse (422) a query parameter the operation does not take, a value with NUL, or a
    second Idempotency-Key."""
    route = request.scope.get("route")
    if not isinstance(route, APIRoute) or not route.include_in_schema:
        return  # a page or script for browsers, which may add a cache-busting parameter
    given = request.query_params.multi_items()
    keys = len(request.headers.getlist(IDEMPOTENCY_KEY))
    if not given and keys < 2:
        return  # nothing to refuse (the usual case): no token to check either
    rules = _rules(route)
    if _refusal(request, rules) is not None:
        return  # the operation's own authentication answers 401 or 403 first
    if keys > 1:
        raise InvalidInput(IDEMPOTENCY_KEY, "given more than once; a request has one key")
    seen = set()
    for name, value in given:
        if name not in rules.names:
            takes = ", ".join(sorted(rules.names)) or "no query parameters"
            raise InvalidInput(name, f"unknown query parameter; this operation takes {takes}")
        if name in seen and name not in rules.repeatable:
            raise InvalidInput(name, "given more than once; it takes one value")
        seen.add(name)
        if "\x00" in value:
            raise InvalidInput(name, "must not contain NUL characters")


STRICT_QUERY = Depends(strict_query)
"""Given to every router the app includes."""


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    found = dict(pairs)
    if len(found) < len(pairs):
        seen = set()
        for key, _ in pairs:
            if key in seen:
                raise DuplicateKey(key)
            seen.add(key)
    return found


class _StrictJsonRequest(Request):
    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            if content_coding(self):
                # Not undone here, so not read either, even when the bytes happen to be JSON:
                # the error handler answers 415 naming the coding (shared/errors.py).
                raise json.JSONDecodeError("the body is sent with a Content-Encoding", "", 0)
            # FastAPI answers a JSONDecodeError (DuplicateKey is one) with its 422.
            self._json = json.loads(await self.body(), object_pairs_hook=_object)
        return self._json


class StrictRoute(APIRoute):
    """The route class of every router: its body is read as `_StrictJsonRequest` reads it
    (FastAPI's way of changing how a request is read: a route class whose handler is given
    a Request subclass)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handle = super().get_route_handler()

        async def strict(request: Request) -> Response:
            return await handle(_StrictJsonRequest(request.scope, request.receive))

        return strict
