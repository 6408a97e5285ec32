"""Interoperability with the Fides taxonomy (``fideslang``).

Each built-in category and purpose maps to the closest key of fideslang's
default taxonomy (``purposeguard policy show`` lists the built-in keys); a policy that says ``taxonomy = "fideslang"``
uses fideslang's own data categories and data uses as its keys::

    >>> from purposeguard import fides
    >>> fides.purpose_to_fides("service.operations")
    'essential.service.operations'
    >>> fides.category_from_fides("user.content.private")
    'customer_data.content'

The pairing below is ours; the keys themselves are checked against the
installed fideslang package whenever the mapping is used, and the fideslang
taxonomy is always read from the package, never from a copied list.
Needs ``pip install 'purposeguard[fides]'``.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from ._errors import UnknownKeyError
from ._fideslang import fideslang_default, fideslang_taxonomy
from ._taxonomy import BUILTIN_CATEGORIES, BUILTIN_PURPOSES, ancestors

if TYPE_CHECKING:
    from ._policy import Policy
    from ._scan import Finding, ScanResult

__all__ = [
    "CATEGORY_TO_FIDES",
    "check_fides_key",
    "PURPOSE_TO_FIDES",
    "category_from_fides",
    "category_to_fides",
    "fideslang_taxonomy",
    "purpose_from_fides",
    "purpose_to_fides",
    "system_manifest",
]

# Built-in category -> closest fideslang data category. Every kind of content
# is private content in Fides' terms, so the five content kinds share one key
# and map back to their common parent, customer_data.content.
CATEGORY_TO_FIDES: Mapping[str, str] = MappingProxyType(
    {
        "customer_data": "user",
        "customer_data.content": "user.content",
        "customer_data.content.email": "user.content.private",
        "customer_data.content.document": "user.content.private",
        "customer_data.content.instant_message": "user.content.private",
        "customer_data.content.voice": "user.content.private",
        "customer_data.content.crm": "user.content.private",
        "administrator_data": "user.account",
        "payment_data": "user.payment",
        "service_data": "system",
        "usage_data": "system.operations",
        "usage_data.end_user": "user.telemetry",
    }
)

# Built-in purpose -> closest fideslang data use. Fides has no separate key
# for voluntary disclosure; it is third-party sharing without a legal obligation.
PURPOSE_TO_FIDES: Mapping[str, str] = MappingProxyType(
    {
        "service": "essential.service",
        "service.operations": "essential.service.operations",
        "service.operations.logs": "essential.service.operations",
        "service.security": "essential.service.security",
        "service.communications": "essential.service.notifications",
        "service.personalization": "personalize",
        "improvement": "functional.service.improve",
        "advertising": "marketing.advertising",
        "marketing": "marketing",
        "marketing.direct": "marketing.communications.email",
        "disclosure": "third_party_sharing",
        "disclosure.voluntary": "third_party_sharing",
        "disclosure.compelled": "third_party_sharing.legal_obligation",
    }
)


@functools.lru_cache(maxsize=1)
def _fides_keys() -> tuple[frozenset[str], frozenset[str]]:
    """The installed fideslang's data category and data use keys."""
    taxonomy = fideslang_default()
    return (
        frozenset(item.fides_key for item in taxonomy.data_category),
        frozenset(item.fides_key for item in taxonomy.data_use),
    )


def _checked(key: str, kind: str, table: Mapping[str, str], known: frozenset[str]) -> str:
    try:
        fides_key = table[key]
    except (KeyError, TypeError):
        raise UnknownKeyError(str(key), kind) from None
    if fides_key not in known:
        # The installed fideslang dropped or renamed a key we pair with: say so
        # rather than export a key Fides would reject.
        raise LookupError(
            f"fideslang no longer defines {fides_key!r} (paired with {key!r}); update purposeguard.fides"
        )
    return fides_key


def category_to_fides(key: str) -> str:
    """The fideslang data category closest to a built-in category key."""
    return _checked(key, "category", CATEGORY_TO_FIDES, _fides_keys()[0])


def purpose_to_fides(key: str) -> str:
    """The fideslang data use closest to a built-in purpose key."""
    return _checked(key, "purpose", PURPOSE_TO_FIDES, _fides_keys()[1])


def _common_ancestor(keys: list[str]) -> str | None:
    chains = [set(ancestors(k)) for k in keys]
    shared = set.intersection(*chains)
    return max(shared, key=lambda k: k.count(".")) if shared else None


def _from_fides(fides_key: str, table: Mapping[str, str], known: frozenset[str], kind: str) -> str | None:
    if not isinstance(fides_key, str) or fides_key not in known:
        raise UnknownKeyError(str(fides_key), f"fideslang {kind}")
    # Walk up the Fides key: the first level some built-in key maps to wins;
    # when several built-in keys share it, their common parent is the honest
    # answer (user.content.private is content, not specifically email).
    for level in ancestors(fides_key):
        candidates = sorted(k for k, v in table.items() if v == level)
        if candidates:
            return candidates[0] if len(candidates) == 1 else _common_ancestor(candidates)
    return None


def category_from_fides(fides_key: str) -> str | None:
    """The built-in category closest to a fideslang data category (e.g.
    ``user.biometric`` maps to ``customer_data``), or None when nothing is close."""
    return _from_fides(fides_key, CATEGORY_TO_FIDES, _fides_keys()[0], "data category")


def purpose_from_fides(fides_key: str) -> str | None:
    """The built-in purpose closest to a fideslang data use, or None (e.g.
    ``employment`` has no counterpart)."""
    return _from_fides(fides_key, PURPOSE_TO_FIDES, _fides_keys()[1], "data use")


def _nearest(key: str, kind: str, table: Mapping[str, str], known: frozenset[str]) -> str:
    # A key a policy added under a built-in one maps as its nearest built-in ancestor.
    for level in ancestors(key):
        if level in table:
            return _checked(level, kind, table, known)
    raise UnknownKeyError(key, kind)


# fideslang's FidesKey pattern (fideslang.validation.FIDES_KEY_PATTERN).
FIDES_KEY = re.compile(r"[a-zA-Z0-9_.<>-]+")

UnknownKeyHandler = Callable[["Finding", UnknownKeyError], None]


def check_fides_key(key: object, what: str = "fides_key") -> str:
    """``key`` if fideslang accepts it as a FidesKey, else a ValueError saying why."""
    if not isinstance(key, str) or not FIDES_KEY.fullmatch(key):
        raise ValueError(f"{what} {key!r} is not a valid Fides key: use letters, digits and _ . - < > only")
    return key


def system_manifest(
    scanned: ScanResult,
    *,
    policy: Policy | None = None,
    fides_key: str | None = None,
    name: str | None = None,
    data_subjects: tuple[str, ...] = ("customer",),
    on_unknown: UnknownKeyHandler | None = None,
) -> dict[str, Any]:
    """A Fides system manifest (``{"system": [...]}``) from a static scan.

    One privacy declaration per fideslang data use the code declares: its
    data categories are those the code handles for that purpose (see
    :meth:`ScanResult.flows`). Keys of a built-in-taxonomy policy are
    mapped to fideslang; under ``taxonomy = "fideslang"`` they are used as
    they are. The result is validated with fideslang's own ``System`` model.

    A key in the code that the taxonomy does not define (a typo such as
    ``@purpose("advertizing")``) raises :class:`UnknownKeyError` naming its
    file and line; with ``on_unknown`` the finding is passed to it instead
    and left out, and the rest is exported. A ``fides_key`` fideslang would
    refuse raises ``ValueError``.
    """
    try:
        from fideslang.models import System
    except ImportError as error:
        raise ImportError(
            "purposeguard.fides needs the fideslang package: pip install 'purposeguard[fides]'"
        ) from error
    if fides_key is not None:
        check_fides_key(fides_key)
    categories_known, uses_known = _fides_keys()
    subjects_known = {s.fides_key for s in fideslang_default().data_subject}
    for subject in data_subjects:
        if subject not in subjects_known:
            raise UnknownKeyError(subject, "fideslang data subject")
    native = policy is not None and policy.taxonomy.name == "fideslang"
    # The keys the code may use: the policy's (built-in ones plus any it adds).
    own_purposes = policy.taxonomy.purposes if policy is not None else BUILTIN_PURPOSES
    own_categories = policy.taxonomy.categories if policy is not None else BUILTIN_CATEGORIES

    def use_of(purpose: str) -> str:
        if native:
            if purpose not in uses_known:
                raise UnknownKeyError(purpose, "fideslang data use")
            return purpose
        if purpose not in own_purposes:
            raise UnknownKeyError(purpose, "purpose")
        return _nearest(purpose, "purpose", PURPOSE_TO_FIDES, uses_known)

    def category_of(category: str) -> str:
        if native:
            if category not in categories_known:
                raise UnknownKeyError(category, "fideslang data category")
            return category
        if category not in own_categories:
            raise UnknownKeyError(category, "category")
        return _nearest(category, "category", CATEGORY_TO_FIDES, categories_known)

    scanned = _without_unknown_keys(scanned, use_of, category_of, on_unknown)
    declarations: dict[str, dict[str, Any]] = {}
    for purpose, findings in sorted(scanned.purposes().items()):
        use = use_of(purpose)
        entry = declarations.setdefault(use, {"purposes": set(), "categories": set(), "functions": set()})
        entry["purposes"].add(purpose)
        entry["functions"].update(f.function for f in findings)
    for (category, purpose), _functions in scanned.flows().items():
        declarations[use_of(purpose)]["categories"].add(category_of(category))
    root = Path(scanned.root)
    system_name = name or (root.stem if root.is_file() else root.resolve().name) or "service"
    key = fides_key or re.sub(r"[^A-Za-z0-9_.-]+", "_", system_name).strip("_") or "service"
    system = {
        "fides_key": key,
        "name": system_name,
        "description": "Declared by purposeguard from a static scan of the code's @purpose, "
        "@produces, label and Category uses.",
        "system_type": "Service",
        "privacy_declarations": [
            {
                "name": f"{use} ({', '.join(sorted(entry['purposes']))})",
                "data_use": use,
                "data_categories": sorted(entry["categories"]),
                "data_subjects": list(data_subjects),
            }
            for use, entry in sorted(declarations.items())
        ],
    }
    System.model_validate(system)
    return {"system": [system]}


def _without_unknown_keys(
    scanned: ScanResult,
    use_of: Callable[[str], str],
    category_of: Callable[[str], str],
    on_unknown: UnknownKeyHandler | None,
) -> ScanResult:
    """The scan less the keys the taxonomy does not define, each reported
    (``on_unknown``) or raised with its file and line."""
    kept = []
    for finding in scanned.findings:
        if finding.kind == "purpose":
            check = use_of
        elif finding.kind in ("produces", "label", "category"):
            check = category_of
        else:
            kept.append(finding)
            continue
        good = []
        for key in finding.keys:
            try:
                check(key)
            except UnknownKeyError as error:
                located = UnknownKeyError(key, error.kind, path=finding.path, line=finding.line)
                if on_unknown is None:
                    raise located from None
                on_unknown(finding, located)
                continue
            good.append(key)
        if good or not finding.keys:
            kept.append(dataclasses.replace(finding, keys=tuple(good)))
    return dataclasses.replace(scanned, findings=kept)


def _builtin_keys_are_mapped() -> None:
    # Import-time guard for the tables above, without importing fideslang.
    missing = (set(BUILTIN_CATEGORIES) ^ set(CATEGORY_TO_FIDES)) | (
        set(BUILTIN_PURPOSES) ^ set(PURPOSE_TO_FIDES)
    )
    if missing:  # pragma: no cover - a developer error
        raise AssertionError(f"fides mapping out of step with the built-in taxonomy: {sorted(missing)}")


_builtin_keys_are_mapped()
