"""purposeguard: runtime purpose enforcement for data-use promises.

Code paths declare the purpose they serve, data carries its categories, and
a compiled policy decides whether a value may reach a use::

    import purposeguard as pg

    pg.configure("trust-center")

    @pg.purpose("advertising")
    def recommend_ads(text): ...

    body = pg.label("Quarterly numbers attached", "customer_data.content.email")
    recommend_ads(body)   # raises pg.PurposeViolation
"""

from __future__ import annotations

from typing import Any as _Any

from . import (
    _paths,  # noqa: F401 - labelled text in pathlib paths (see the module)
    testing,
)
from ._configure import configure
from ._context import ZoneState
from ._errors import (
    AuditError,
    ConfigurationError,
    ObligationError,
    PolicyError,
    PurposeGuardError,
    PurposeViolation,
    SinkFailure,
    UnknownKeyError,
)
from ._fields import install as _install_fields
from ._guarded import purpose
from ._labels import Category, label, labels_of, produces, tenant_of
from ._policy import ConsentLookup, Decision, Destination, Policy, Remediation, Rule, Transform
from ._records import Declassification, Record, Violation
from ._runtime import (
    Guard,
    check,
    current_purpose,
    current_tenant,
    decide,
    explain,
    get_guard,
    on_record,
    on_violation,
)
from ._sources import install as _install_sources
from ._taxonomy import Taxonomy
from ._version import __version__ as __version__
from ._zones import ContextExecutor, current_zone, set_tenant, transform, wrap_executor, zone

# Annotated fields of dataclasses and attrs classes built from now on arrive labelled.
_install_fields()
# Reading is a use: labelling while a purpose is current is checked against it.
_install_sources()

__all__ = [
    "AuditError",
    "Category",
    "ConfigurationError",
    "ConsentLookup",
    "ContextExecutor",
    "Decision",
    "Declassification",
    "Destination",
    "Guard",
    "ObligationError",
    "Policy",
    "PolicyError",
    "PurposeGuardError",
    "PurposeViolation",
    "Record",
    "Remediation",
    "Rule",
    "SinkFailure",
    "Taxonomy",
    "Transform",
    "UnknownKeyError",
    "Violation",
    "ZoneState",
    "check",
    "compelled_disclosure",
    "configure",
    "current_purpose",
    "current_tenant",
    "current_zone",
    "decide",
    "explain",
    "get_guard",
    "label",
    "labels_of",
    "on_record",
    "on_violation",
    "produces",
    "purpose",
    "set_tenant",
    "tenant_of",
    "testing",
    "transform",
    "wrap_executor",
    "zone",
]


def __getattr__(name: str) -> _Any:
    # Obligations pull in the audit and disclosure layers; load them on first use.
    if name == "compelled_disclosure":
        from .disclosure import compelled_disclosure

        return compelled_disclosure
    raise AttributeError(f"module 'purposeguard' has no attribute {name!r}")
