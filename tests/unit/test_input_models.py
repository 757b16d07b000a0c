"""Every request body model of every service keeps SPEC §9 by construction: each text field
refuses NUL, and each decimal field refuses a JSON number and has an upper bound."""

from __future__ import annotations

import importlib
import inspect
import re
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel, TypeAdapter, ValidationError

from services.analytics.schemas import Salesperson
from services.closing.schemas import Reason
from services.orders.schemas import CreditLimit, Name, Note
from shared.limits import Amount, BalanceFigure, PositiveAmount, PositiveQuantity, TaxRate

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
            pattern = str(kind.get("pattern", ""))
            is_decimal = (
                kind.get("type") == "string"
                and ("\\d" in pattern or "[0-9]" in pattern)
                and "\\." in pattern
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


# What the OpenAPI document admits is what the server takes -------------------------------

BOUNDED_DECIMALS = {
    "Amount": Amount,
    "PositiveAmount": PositiveAmount,
    "PositiveQuantity": PositiveQuantity,
    "TaxRate": TaxRate,
    "CreditLimit": CreditLimit,
    "BalanceFigure": BalanceFigure,
}
EDGES = (
    "0", "0.0", "-0", "-1", "00", "0.00", "0.01", "0.001", "0.0001", "0.00001", "1", "1.5",
    "1.50", "1.500", "1.501", "1.0000", "1.00001", "999999999.99", "1000000000",
    "1000000000.00", "1000000000.01", "0001000000000", "1000000", "1000000.000",
    "1000000.001", "999999.999", "1000000000000000", "1000000000000000.01", "10000000000",
    "9999999999999999.99", "-9999999999999999.99", "10000000000000000", "-0.5",
)  # fmt: skip


@pytest.mark.parametrize("name", BOUNDED_DECIMALS)
@given(
    text=st.one_of(
        st.sampled_from(EDGES), st.from_regex(r"-?0{0,3}[0-9]{1,17}(\.[0-9]{1,6})?", fullmatch=True)
    )
)
def test_the_documented_pattern_admits_what_the_server_takes(name: str, text: str) -> None:
    pattern, taken = _documented_and_taken(TypeAdapter(BOUNDED_DECIMALS[name]), text)
    assert (re.fullmatch(pattern, text) is not None) == taken, (pattern, text, taken)


def _documented_and_taken(kind: TypeAdapter[Any], text: str) -> tuple[str, bool]:
    """The pattern the document states for `kind`, and whether the server takes `text`."""
    try:
        kind.validate_python(text)
    except ValidationError:
        return kind.json_schema()["pattern"], False
    return kind.json_schema()["pattern"], True


TEXTS = {"Name": Name, "Note": Note, "Reason": Reason, "Salesperson": Salesperson}
WHITE = " \t\n\r\x0b\x0c\x1c\x1d\x1e\x1f\x85\xa0\u1680\u2000\u2028\u2029\u202f\u205f\u3000"


@pytest.mark.parametrize("name", TEXTS)
@given(
    text=st.text(
        alphabet=st.sampled_from([*WHITE, "\x00", "a", "错", "\ufeff", "\x01", "\ufffd", "\uffff"]),
        max_size=8,
    )
)
def test_the_documented_text_pattern_admits_what_the_server_takes(name: str, text: str) -> None:
    pattern, taken = _documented_and_taken(TypeAdapter(TEXTS[name]), text)
    assert (re.search(pattern, text) is not None) == taken, (pattern, text, taken)
