"""Every request body model of every service keeps SPEC §9 by construction: each text field
refuses NUL, and each decimal field refuses a JSON number and has an upper bound."""

from __future__ import annotations

import importlib
import inspect
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

SERVICES = ("orders", "payments", "closing", "analytics")


def input_models() -> list[type[BaseModel]]:
    found = []
    for service in SERVICES:
        module = importlib.import_module(f"services.{service}.schemas")
        for _, model in inspect.getmembers(module, inspect.isclass):
            if (
                issubclass(model, BaseModel)
                and model.__module__ == module.__name__
                and model.model_config.get("extra") == "forbid"
            ):
                found.append(model)
    return found


def _kinds(schema: dict[str, Any]) -> list[dict[str, Any]]:
    return [s for s in schema.get("anyOf", [schema]) if s.get("type") != "null"]


def fields(model: type[BaseModel], wanted: str) -> list[tuple[str, Any]]:
    """(field, a value in the field's shape) for each field holding text or a decimal."""
    schema = model.model_json_schema(mode="validation")
    found: list[tuple[str, Any]] = []
    for name, prop in schema.get("properties", {}).items():
        for kind in _kinds(prop):
            is_decimal = (
                kind.get("type") == "string" and "pattern" in kind and "\\d" in str(kind["pattern"])
            )
            is_text = (
                kind.get("type") == "string"
                and "format" not in kind
                and "enum" not in kind
                and not is_decimal
            )
            if wanted == "text" and is_text:
                found.append((name, "a\x00b"))
            elif wanted == "text" and kind.get("type") == "array":
                items = _kinds(kind.get("items", {}))
                if any(i.get("type") == "string" and "format" not in i for i in items):
                    found.append((name, ["a\x00b"]))
            elif wanted == "decimal" and is_decimal:
                found.append((name, None))
    return found


MODELS = input_models()


def test_the_request_models_are_found() -> None:
    names = {m.__name__ for m in MODELS}
    assert {"OrderCreate", "PaymentCreate", "RefundCreate", "TargetIn", "ReopenRequest"} <= names


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.__name__)
def test_every_text_field_refuses_nul(model: type[BaseModel]) -> None:
    for name, value in fields(model, "text"):
        with pytest.raises(ValidationError) as caught:
            model.model_validate({name: value})
        assert any(e["loc"][0] == name for e in caught.value.errors()), (model, name)


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.__name__)
def test_every_decimal_field_is_a_bounded_string(model: type[BaseModel]) -> None:
    for name, _ in fields(model, "decimal"):
        for value in (12.5, 12, "1e30"):
            with pytest.raises(ValidationError) as caught:
                model.model_validate({name: value})
            assert any(e["loc"][0] == name for e in caught.value.errors()), (model, name, value)


# Each of these is a number to Python's Decimal(), and none is what the OpenAPI pattern
# (ASCII digits, an optional point) lets a client send.
NOT_DECIMAL_TEXT = ("１０.００", "1_0.00", "1e3", "1E+1", " 1 ", "٣", ".5", "5.", "+5", "NaN")


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.__name__)
def test_every_decimal_field_takes_only_plain_ascii_text(model: type[BaseModel]) -> None:
    for name, _ in fields(model, "decimal"):
        for value in NOT_DECIMAL_TEXT:
            with pytest.raises(ValidationError) as caught:
                model.model_validate({name: value})
            assert any(
                e["loc"][0] == name and "decimal string" in e["msg"] for e in caught.value.errors()
            ), (model, name, value)
