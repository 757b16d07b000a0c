"""The OpenAPI document as the server really answers (SPEC §9): for every operation the roles
it admits and every error status it can answer, each as the problem+json the error handlers
send. The statuses are derived once from what a route depends on, so a new route is
documented as truly as the old ones; a route adds only what cannot be derived (409)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute, RouteContext, iter_route_contexts
from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import models_json_schema

from shared.auth import Role, current_actor
from shared.db import request_session
from shared.errors import PROBLEM_JSON, RETRY_AFTER_SECONDS


class FieldProblem(BaseModel):
    """One refused part of a request."""

    field: str = Field(description="the parameter or body field, dotted (`lines.0.quantity`)")
    message: str


class Problem(BaseModel):
    """An error answer (RFC 9457 problem details), sent as application/problem+json."""

    model_config = ConfigDict(
        extra="allow",
        json_schema_extra={"description": "Some errors add members of their own."},
    )

    type: str = "about:blank"
    title: str = Field(description="a short summary of the kind of error")
    status: int = Field(description="the HTTP status code")
    detail: str = Field(description="what went wrong with this request, for a person")
    field: str | None = Field(default=None, description="the field a business rule refused")
    errors: list[FieldProblem] | None = Field(
        default=None, description="on 422, each refused parameter or body field"
    )


def conflict(description: str) -> dict[int | str, dict[str, Any]]:
    """A route's 409 answer, for `responses=`: the one error status a route states itself."""
    return {409: {"description": description}}


CSV_ANSWER: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/csv": {"schema": {"type": "string"}}}}
}
"""For `responses=` of a report that answers CSV rows to `Accept: text/csv`."""

PROBLEM_REF = {"$ref": "#/components/schemas/Problem"}

_DESCRIPTIONS = {
    400: "Bad request",
    401: "No valid bearer token (missing, malformed, expired or with an unknown role)",
    403: "The token's role is not one this operation admits",
    404: "What the path names does not exist",
    409: "The request conflicts with the current state",
    413: "The body is larger than the server reads (4 MiB), whatever the method; answered "
    "before 401 and 403",
    415: "The body is not sent as JSON (`Content-Type: application/json`), is sent without "
    "a Content-Type, or compressed (`Content-Encoding`)",
    422: "A parameter, header or the body is refused (unknown query parameters too); "
    "`errors` names each field",
    503: "The database cannot be reached right now, or what the request names is still on its "
    "way to this service; try again after `Retry-After` seconds",
}

_HEADERS: dict[int, dict[str, Any]] = {
    401: {
        "WWW-Authenticate": {
            "description": "the authentication scheme to use",
            "schema": {"type": "string", "const": "Bearer"},
        }
    },
    503: {
        "Retry-After": {
            "description": "seconds to wait before trying again",
            "schema": {"type": "string", "const": str(RETRY_AFTER_SECONDS)},
        }
    },
}


def install_openapi(app: FastAPI) -> None:
    """Serve the document built by `document` (once, then cached) as the app's /openapi.json."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = document(app)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]  # how FastAPI lets a document be replaced


def document(app: FastAPI) -> dict[str, Any]:
    """FastAPI's document for the app, with each operation's roles and error answers."""
    schema = get_openapi(
        title=app.title,
        version=app.version,
        description=app.description,
        routes=app.routes,
        tags=app.openapi_tags,
        servers=app.servers,
    )
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    for unused in ("HTTPValidationError", "ValidationError"):
        components.pop(unused, None)
    _, definitions = models_json_schema(
        [(Problem, "serialization")], ref_template="#/components/schemas/{model}"
    )
    components.update(definitions["$defs"])
    for route in iter_route_contexts(app.routes):
        if not isinstance(route.original_route, APIRoute) or not route.include_in_schema:
            continue
        for method in route.methods or ():
            operation = schema["paths"][route.path_format].get(method.lower())
            if operation is not None:
                _describe(operation, route, method)
    return schema


def _describe(operation: dict[str, Any], route: RouteContext, method: str) -> None:
    roles = admitted_roles(route.dependant)
    responses: dict[str, Any] = operation.setdefault("responses", {})
    statuses = {422}
    if roles is not None:
        names = sorted(role.value for role in roles)
        operation["x-roles"] = names
        text = operation.get("description", "").rstrip()
        operation["description"] = (
            f"{text}\n\n" if text else ""
        ) + f"Roles: {', '.join(f'`{n}`' for n in names)}."
        statuses.add(401)
        if set(roles) != set(Role):
            statuses.add(403)
    if route.dependant.path_params:
        statuses.add(404)
    statuses.add(413)  # a body too large to read is refused whatever the operation
    if isinstance(route.original_route, APIRoute) and route.original_route.body_field:
        statuses.add(415)
    if _depends_on(route.dependant, request_session):
        statuses.add(503)
    for status in statuses:
        responses.setdefault(str(status), {})
    for code, response in responses.items():
        if not code.isdigit() or int(code) < 400:
            continue
        if code != "422" and _has_schema(response):
            continue  # a route that answers this status with a body of its own says so
        status = int(code)
        response.setdefault("description", _DESCRIPTIONS.get(status, "Error"))
        if code == "422" or response["description"] == "Validation Error":
            response["description"] = _DESCRIPTIONS[422]
        response["content"] = {PROBLEM_JSON: {"schema": PROBLEM_REF}}
        if status in _HEADERS:
            response["headers"] = _HEADERS[status]
    operation["responses"] = dict(sorted(responses.items()))


def _has_schema(response: dict[str, Any]) -> bool:
    return any(media.get("schema") for media in response.get("content", {}).values())


def admitted_roles(dependant: Dependant) -> frozenset[Role] | None:
    """The roles a route admits, read from its `require(...)` dependency; None when it needs
    no token."""
    for dep in _dependencies(dependant):
        roles = getattr(dep.call, "admits", None)
        if roles is not None:
            return frozenset(roles)
    if _depends_on(dependant, current_actor):
        return frozenset(Role)
    return None


def _depends_on(dependant: Dependant, call: Any) -> bool:
    return any(dep.call is call for dep in _dependencies(dependant))


def _dependencies(dependant: Dependant) -> Iterator[Dependant]:
    for dep in dependant.dependencies:
        yield dep
        yield from _dependencies(dep)
