"""A policy's decision table as plain data, for ``policy show`` and the report."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, NamedTuple

from ._policy import Policy

__all__ = ["PROMISE_COLUMNS", "Cell", "cells", "matrix_data", "promise_columns"]

# The two columns of the published data-use table.
PROMISE_COLUMNS = (
    ("customer_data", "customer data (excluding content)"),
    ("customer_data.content", "content"),
)


def promise_columns(policy: Policy) -> list[tuple[str, str]]:
    columns = [(key, title) for key, title in PROMISE_COLUMNS if key in policy.taxonomy.categories]
    if not columns:
        columns = [(key, key) for key in policy.taxonomy.categories if "." not in key]
    return columns


class Cell(NamedTuple):
    """One decision of the table: ``policy show`` and the report read the same cells."""

    purpose: str
    category: str
    allowed: bool
    rule: str | None
    consentable: bool
    # Obligations bind only where the rule allows.
    obligations: tuple[str, ...]


def cells(policy: Policy) -> Iterator[Cell]:
    """Every (purpose, category) decision of the policy's taxonomy, purposes in order."""
    for purpose in policy.taxonomy.purposes:
        for category in policy.taxonomy.categories:
            allowed, rule, consentable = policy.cell(category, purpose)
            obligations = tuple(rule.obligations) if rule and allowed else ()
            yield Cell(purpose, category, allowed, rule.id if rule else None, consentable, obligations)


def matrix_data(policy: Policy) -> dict[str, Any]:
    columns = promise_columns(policy)
    rows = []
    for purpose in policy.taxonomy.purposes:
        row: dict[str, Any] = {"purpose": purpose}
        for key, _ in columns:
            row[key] = "yes" if policy.cell(key, purpose)[0] else "no"
        rows.append(row)
    matrix: dict[str, dict[str, Any]] = {purpose: {} for purpose in policy.taxonomy.purposes}
    for cell in cells(policy):
        matrix[cell.purpose][cell.category] = {
            "allowed": cell.allowed,
            "rule": cell.rule,
            "consentable": cell.consentable,
            "obligations": list(cell.obligations),
        }
    return {
        "policy": policy.name,
        "default": policy.default,
        "mode": policy.mode,
        "context_mode": policy.context_mode,
        "extends": list(policy.extends),
        "columns": [{"category": key, "title": title} for key, title in columns],
        "rows": rows,
        "matrix": matrix,
        "rules": [
            {
                "id": rule.id,
                "effect": rule.effect,
                "categories": list(rule.categories),
                "purposes": list(rule.purposes),
                "consentable": rule.consentable,
                "obligations": list(rule.obligations),
                "mode": rule.mode,
                "context_mode": rule.context_mode,
                "from": rule.origin,
            }
            for rule in policy.rules
        ],
    }
