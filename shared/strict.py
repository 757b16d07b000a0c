"""Query strings as strict as bodies (SPEC §9): a parameter an operation does not declare is
422 naming it, never silently ignored (`?number=` on a list that has no such filter would
answer every row), and no query value may carry NUL."""

from __future__ import annotations

from dataclasses import dataclass, field

from fastapi import Depends, Request
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute

from shared.auth import Role, current_actor, decode_token
from shared.errors import DomainError, InvalidInput

_DECLARED = "salesbook_query_rules"


@dataclass
class _Rules:
    names: set[str] = field(default_factory=set)
    authenticated: bool = False
    admits: list[frozenset[Role]] = field(default_factory=list)


def _walk(dependant: Dependant, rules: _Rules) -> _Rules:
    rules.names |= {param.alias for param in dependant.query_params}
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


def _admitted(request: Request, rules: _Rules) -> bool:
    """Whether the operation's own authentication and roles would let the caller in."""
    if not rules.authenticated:
        return True
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token:
        return False
    try:
        actor = decode_token(token.strip(), secret=request.app.state.token_secret)
    except DomainError:
        return False
    return all(actor.role in roles for roles in rules.admits)


async def strict_query(request: Request) -> None:
    """Refuse (422) a query parameter the operation does not take, or a value with NUL."""
    route = request.scope.get("route")
    if not isinstance(route, APIRoute) or not route.include_in_schema:
        return  # a page or script for browsers, which may add a cache-busting parameter
    given = request.query_params.multi_items()
    if not given:
        return  # nothing to refuse (the usual case): no token to check either
    rules = _rules(route)
    if not _admitted(request, rules):
        return  # the operation's own authentication answers 401 or 403 first
    for name, value in given:
        if name not in rules.names:
            takes = ", ".join(sorted(rules.names)) or "no query parameters"
            raise InvalidInput(name, f"unknown query parameter; this operation takes {takes}")
        if "\x00" in value:
            raise InvalidInput(name, "must not contain NUL characters")


STRICT_QUERY = Depends(strict_query)
"""Given to every router the app includes."""
