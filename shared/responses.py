"""Answers serialised by pydantic in one pass (in Rust), sent as they are.

A route that returns a model has FastAPI dump it, validate the dump against the response
model again and serialise the result: for a page of a thousand rows of amounts, that costs
more than the query. A model the route built itself is already valid: `json_answer` sends
its JSON, with what the response model would have given (field aliases included).
"""

from __future__ import annotations

from typing import Any

from fastapi.responses import JSONResponse
from pydantic import BaseModel


class RenderedJSON(JSONResponse):
    """A JSON response whose body is already serialised (bytes); anything else is rendered
    as JSONResponse renders it."""

    def render(self, content: Any) -> bytes:
        return content if isinstance(content, bytes) else super().render(content)


def json_answer(model: BaseModel, status_code: int = 200) -> RenderedJSON:
    return RenderedJSON(model.__pydantic_serializer__.to_json(model, by_alias=True), status_code)
