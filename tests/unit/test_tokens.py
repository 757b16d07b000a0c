"""Token checks: a token's signature and claims are checked once and remembered, yet a
remembered token stops being accepted the moment it expires, and a refused one is refused
every time."""

from __future__ import annotations

from datetime import timedelta

import pytest

from shared import auth
from shared.auth import Actor, Role, decode_token, issue_token
from shared.errors import Unauthorized

SECRET = "a-secret-long-enough-for-hs256-signatures"


def test_a_remembered_token_is_refused_once_it_expires(monkeypatch: pytest.MonkeyPatch) -> None:
    token = issue_token(secret=SECRET, subject="till-9", role=Role.POS, ttl=timedelta(hours=1))
    assert decode_token(token, secret=SECRET) == Actor(subject="till-9", role=Role.POS)
    real = auth.time.time
    monkeypatch.setattr(auth.time, "time", lambda: real() + 3600)
    with pytest.raises(Unauthorized, match="expired"):
        decode_token(token, secret=SECRET)


def test_a_token_is_only_remembered_for_the_secret_that_signed_it() -> None:
    token = issue_token(secret=SECRET, subject="till-9", role=Role.POS, ttl=timedelta(hours=1))
    assert decode_token(token, secret=SECRET).subject == "till-9"
    for _ in range(2):
        with pytest.raises(Unauthorized, match="not valid"):
            decode_token(token, secret=SECRET + "-rotated")
