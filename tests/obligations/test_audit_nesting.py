"""A caller's record nested past what can be stored is the library's error,
naming no key and no value."""

from __future__ import annotations

import json
import sys
from typing import Any

import pytest

import purposeguard as pg
from purposeguard.audit import AuditError, AuditLog

SECRET_KEY = "PGKEY-3b1d-never-shown"
SECRET_VALUE = "PGVALUE-9e2a-never-shown"


def _nested_mapping(depth: int) -> dict[str, Any]:
    top: dict[str, Any] = {}
    inner = top
    for _ in range(depth):
        inner[SECRET_KEY] = {}
        inner = inner[SECRET_KEY]
    inner["leaf"] = SECRET_VALUE
    return top


def _nested_list(depth: int) -> list[Any]:
    top: list[Any] = [SECRET_VALUE]
    for _ in range(depth):
        top = [top]
    return top


def _holding_itself() -> dict[str, Any]:
    loop: dict[str, Any] = {"leaf": SECRET_VALUE}
    loop[SECRET_KEY] = loop
    return loop


@pytest.mark.parametrize(
    "nested",
    [
        _nested_mapping(sys.getrecursionlimit() + 50),
        _nested_list(sys.getrecursionlimit() + 50),
        # The record, its field and 63 more: 65 containers.
        _nested_mapping(63),
        _holding_itself(),
    ],
    ids=["mapping-past-recursion-limit", "list-past-recursion-limit", "mapping-65-deep", "holding-itself"],
)
def test_a_record_nested_too_deep_is_an_audit_error_naming_nothing_in_it(nested: Any) -> None:
    with AuditLog(":memory:") as log:
        with pytest.raises(AuditError) as raised:
            log.append({"kind": "note", "deep": nested})
        assert isinstance(raised.value, pg.PurposeGuardError)
        message = str(raised.value)
        assert "nested more than 64 containers deep" in message
        assert SECRET_KEY not in message and SECRET_VALUE not in message
        assert len(log) == 0
        # The log goes on taking records.
        assert log.append({"kind": "note", "n": 1}) == 1


def test_a_record_as_deep_as_allowed_is_stored_whole() -> None:
    # The record, its field and 62 more: 64 containers.
    with AuditLog(":memory:") as log:
        log.append({"kind": "note", "deep": _nested_mapping(62)})
        (entry,) = log.records()
        assert entry.data["deep"] == json.loads(json.dumps(_nested_mapping(62)))
        assert log.verify().ok
