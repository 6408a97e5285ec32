"""Dotted category and purpose keys, and the built-in taxonomy.

A key implies its ancestors: ``customer_data.content.email`` is also
``customer_data.content`` and ``customer_data``. This module is pure data and
knows nothing of policies' rules.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from ._errors import PolicyError, UnknownKeyError

KEY_PATTERN = re.compile(r"[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*\Z")
# Every key implies its ancestors, each compiled into the decision table:
# unbounded depth made a policy's memory grow with the cube of it (a 4 MB
# file of 2,000 nested keys took 2.8 GB). Real taxonomies are a few levels
# deep (fideslang's deepest is six).
MAX_KEY_DEPTH = 16
MAX_KEY_LENGTH = 200
KEY_RULE = f"dotted lowercase segments, at most {MAX_KEY_DEPTH} levels and {MAX_KEY_LENGTH} characters"

BUILTIN_CATEGORIES: Mapping[str, str] = MappingProxyType(
    {
        "customer_data": "customer data; labelled exactly this, customer data that is not content",
        "customer_data.content": "content (confidential)",
        "customer_data.content.email": "mail bodies and attachments",
        "customer_data.content.document": "file bodies and site content (not the URL)",
        "customer_data.content.instant_message": "instant-message bodies",
        "customer_data.content.voice": "voice conversations",
        "customer_data.content.crm": "CRM records about the customer's end customers",
        "administrator_data": "data about the customer's administrators",
        "payment_data": "billing and payment data",
        "service_data": "data about how the service itself operates",
        "usage_data": "usage data points (aggregates, counts)",
        "usage_data.end_user": "usage data that identifies end users",
    }
)

BUILTIN_PURPOSES: Mapping[str, str] = MappingProxyType(
    {
        "service": "providing the service the customer pays for",
        "service.operations": "service management and troubleshooting",
        "service.operations.logs": "writing logs, traces and diagnostics (content stays out)",
        "service.security": "security, spam and malware prevention, threat detection",
        "service.communications": "service communications (maintenance notices, new features, limits)",
        "service.personalization": "personalized or inference-based features of the service",
        "improvement": "improvement of the purchased services",
        "advertising": "advertising, including building advertising profiles",
        "marketing": "marketing",
        "marketing.direct": "direct marketing",
        "disclosure": "disclosure to third parties",
        "disclosure.voluntary": "voluntary disclosure to law enforcement",
        "disclosure.compelled": "disclosure the law compels",
    }
)


def is_valid_key(key: object) -> bool:
    return (
        isinstance(key, str)
        and len(key) <= MAX_KEY_LENGTH
        and key.count(".") < MAX_KEY_DEPTH
        and KEY_PATTERN.match(key) is not None
    )


def shown_key(key: object) -> str:
    """A key as an error message may quote it: in full when short, else its
    start and length (a malformed key can be a whole file's worth of text)."""
    text = repr(key)
    if len(text) <= 80:
        return text
    size = f"{len(key)} characters" if isinstance(key, str) else type(key).__name__
    return f"{text[:60]}... ({size})"


def ancestors(key: str) -> tuple[str, ...]:
    """``a.b.c`` -> ``("a.b.c", "a.b", "a")``: the key first, the root last."""
    parts = key.split(".")
    return tuple(".".join(parts[:i]) for i in range(len(parts), 0, -1))


def depth(key: str) -> int:
    return key.count(".") + 1


@dataclass(frozen=True)
class Taxonomy:
    """The category and purpose keys a policy may use, with their meanings."""

    categories: Mapping[str, str]
    purposes: Mapping[str, str]
    name: str = "purposeguard"
    _category_ancestors: Mapping[str, tuple[str, ...]] = field(init=False, repr=False, compare=False)
    _purpose_ancestors: Mapping[str, tuple[str, ...]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "categories", MappingProxyType(dict(self.categories)))
        object.__setattr__(self, "purposes", MappingProxyType(dict(self.purposes)))
        object.__setattr__(self, "_category_ancestors", {k: ancestors(k) for k in self.categories})
        object.__setattr__(self, "_purpose_ancestors", {k: ancestors(k) for k in self.purposes})

    @classmethod
    def builtin(cls) -> Taxonomy:
        return _BUILTIN

    def extended(
        self,
        categories: Mapping[str, str] | None = None,
        purposes: Mapping[str, str] | None = None,
        *,
        path: str | None = None,
    ) -> Taxonomy:
        """A new taxonomy with added keys; each added key's parent must exist."""
        new_categories = dict(self.categories)
        new_purposes = dict(self.purposes)
        for kind, target, added in (
            ("category", new_categories, categories or {}),
            ("purpose", new_purposes, purposes or {}),
        ):
            field_name = "taxonomy.categories" if kind == "category" else "taxonomy.purposes"
            # Sorted so a parent declared in the same table is added before its children.
            for key in sorted(added, key=depth):
                meaning = added[key]
                if not is_valid_key(key):
                    raise PolicyError(
                        f"malformed {kind} key {shown_key(key)} ({KEY_RULE})",
                        path=path,
                        field=field_name,
                    )
                if not isinstance(meaning, str):
                    raise PolicyError(
                        f"the meaning of {kind} {key!r} must be a string",
                        path=path,
                        field=field_name,
                    )
                parent = key.rpartition(".")[0]
                if parent and parent not in target:
                    raise PolicyError(
                        f"{kind} {key!r} extends unknown {kind} {parent!r}",
                        path=path,
                        field=field_name,
                    )
                target[key] = meaning
        return Taxonomy(new_categories, new_purposes, name=self.name)

    def category_ancestors(self, key: str) -> tuple[str, ...]:
        try:
            return self._category_ancestors[key]
        except (KeyError, TypeError):
            raise UnknownKeyError(key, "category") from None

    def purpose_ancestors(self, key: str) -> tuple[str, ...]:
        try:
            return self._purpose_ancestors[key]
        except (KeyError, TypeError):
            raise UnknownKeyError(str(key), "purpose") from None

    def require_category(self, key: object) -> str:
        if not isinstance(key, str) or key not in self.categories:
            raise UnknownKeyError(key, "category")
        return key

    def require_purpose(self, key: object) -> str:
        if not isinstance(key, str) or key not in self.purposes:
            raise UnknownKeyError(str(key), "purpose")
        return key

    def require_categories(self, keys: Iterable[object]) -> frozenset[str]:
        return frozenset(self.require_category(k) for k in keys)


_BUILTIN = Taxonomy(BUILTIN_CATEGORIES, BUILTIN_PURPOSES, name="purposeguard")
