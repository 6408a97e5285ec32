"""fideslang's default taxonomy as a purposeguard :class:`Taxonomy`.

Below the policy layer: a policy written in fideslang keys
(``[policy] taxonomy = "fideslang"``) needs it to load, while the Fides
interoperability (``purposeguard.fides``) sits above the policy.
"""

from __future__ import annotations

import functools
from typing import Any

from ._taxonomy import Taxonomy, is_valid_key

__all__ = ["fideslang_default", "fideslang_taxonomy"]


def fideslang_default() -> Any:
    """fideslang's ``DEFAULT_TAXONOMY``; an ImportError naming the extra without it."""
    try:
        from fideslang.default_taxonomy import DEFAULT_TAXONOMY
    except ImportError as error:
        raise ImportError(
            "purposeguard.fides needs the fideslang package: pip install 'purposeguard[fides]'"
        ) from error
    return DEFAULT_TAXONOMY


def _meaning(item: Any) -> str:
    text = item.name or item.fides_key
    if item.description:
        text = f"{text}: {item.description}"
    if item.version_deprecated:
        replaced = f", replaced by {item.replaced_by}" if item.replaced_by else ""
        text += f" (deprecated in fideslang {item.version_deprecated}{replaced})"
    return str(text)


@functools.lru_cache(maxsize=1)
def fideslang_taxonomy() -> Taxonomy:
    """A :class:`~purposeguard.Taxonomy` of fideslang's default data categories
    (as categories) and data uses (as purposes), read from the installed package.

    >>> "user.content" in fideslang_taxonomy().categories
    True
    """
    source = fideslang_default()
    built: dict[str, dict[str, str]] = {}
    for kind, items in (("category", source.data_category), ("purpose", source.data_use)):
        keys = {item.fides_key: _meaning(item) for item in items}
        for key in keys:
            # Our key pattern is stricter than Fides' ([a-zA-Z0-9_.<>-]); a
            # future fideslang key outside it must fail loudly, not vanish.
            if not is_valid_key(key):
                raise ValueError(f"fideslang {kind} key {key!r} does not fit purposeguard's key pattern")
            parent = key.rpartition(".")[0]
            if parent and parent not in keys:
                raise ValueError(f"fideslang {kind} key {key!r} has no parent {parent!r}")
        built[kind] = keys
    return Taxonomy(built["category"], built["purpose"], name="fideslang")
