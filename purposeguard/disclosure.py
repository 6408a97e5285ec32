"""Compelled disclosure: the procedure the law allows, and nothing more.

::

    with pg.compelled_disclosure(
        case="LE-2026-0042", tenant="contoso", authority="District Court, Springfield",
        redirect_attempted=True, notifier=notify_admins, audit=log,
    ) as disclosure:
        released = disclosure.release(mailbox, fields=["owner", "created"])

Inside the block the current purpose is ``disclosure.compelled``. The
obligations the policy attaches to that purpose are enforced on every
release: ``redirect_first`` (the requester was first sent to the customer),
``minimize`` (only the fields the request names come out; asking the result
for anything else raises :class:`ObligationError`) and ``notify_tenant`` (the
tenant's administrators are told through ``notifier`` before the release,
unless the law forbids it and ``prohibition_ref`` cites where; a notifier
that fails blocks the release). Each release is audited, names only: case,
authority, fields, categories, whether the tenant was notified.

Voluntary disclosure stays denied: nothing here can set another purpose.
"""

from __future__ import annotations

import dataclasses
import datetime
import inspect
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ._context import FLAGS, MIXED_TENANT, PROCEDURE, PURPOSE, ZONE
from ._errors import ObligationError, PurposeViolation, SinkFailure
from ._labels import (
    _OBJECT_REFS,
    _OBJECTS,
    LabelledProxy,
    annotated_fields,
    box_kind,
    labels_in_values,
    labels_of,
    merge_tenants,
    tenant_of,
    tenant_of_values,
)
from ._policy import Policy
from ._records import Record
from ._runtime import Denial, caller_name, get_guard
from .audit import AuditError, AuditLog, attached

__all__ = ["CompelledDisclosure", "Disclosure", "DisclosureNotice", "Released", "compelled_disclosure"]

PURPOSE_KEY = "disclosure.compelled"
# What refuses another tenant's data in a release, in violation records.
TENANT_RULE = "disclosure-tenant-boundary"


# Not frozen, like the core's records (a frozen subclass of a non-frozen
# Record is not allowed); sinks treat records as read-only.
@dataclass(slots=True)
class Disclosure(Record):
    """A release under a compelled disclosure: names only, never values."""

    case: str
    tenant: str
    authority: str
    purpose: str
    fields: tuple[str, ...]
    categories: tuple[str, ...]
    redirect_attempted: bool
    notified: bool
    notification_prohibited: bool
    prohibition_ref: str | None
    obligations: tuple[str, ...]
    function: str
    timestamp: float
    audit_ref: str | None = None

    @property
    def kind(self) -> str:
        return "disclosure"


@dataclass(frozen=True, slots=True)
class DisclosureNotice:
    """What the tenant's administrators are told before a release (names only)."""

    case: str
    tenant: str
    authority: str
    fields: tuple[str, ...]
    categories: tuple[str, ...]
    timestamp: float


Notifier = Callable[[DisclosureNotice], Any]


class Released(Mapping[str, Any]):
    """The fields a release let out, and only those.

    A mapping (and attribute access) over the named fields; asking for any
    other field raises :class:`ObligationError` (``minimize``).
    """

    __slots__ = ("_values", "_case")

    def __init__(self, values: dict[str, Any], case: str) -> None:
        object.__setattr__(self, "_values", values)
        object.__setattr__(self, "_case", case)

    def __getitem__(self, name: str) -> Any:
        try:
            return self._values[name]
        except KeyError:
            raise ObligationError(
                f"field {_shown(name) if isinstance(name, str) else type(name).__name__} was not named in the request of case {_shown(self._case)}: not released (minimize)",
                obligation="minimize",
            ) from None

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return self[name]

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("a release is read-only")

    def __contains__(self, name: object) -> bool:
        return name in self._values

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        return f"<Released case={self._case!r} fields={list(self._values)}>"


# Case references, authorities and prohibition references are names kept in
# every record, notice and report: bounded and printable, as tenant ids are.
MAX_TEXT_LENGTH = 256


def _is_async(notifier: object) -> bool:
    if inspect.iscoroutinefunction(notifier):
        return True
    # A callable object whose __call__ is a coroutine function.
    call = inspect.getattr_static(type(notifier), "__call__", None)
    return not inspect.isfunction(notifier) and inspect.iscoroutinefunction(call)


def _required_text(value: object, name: str, obligation: str) -> str:
    if value is None or (isinstance(value, str) and not value.strip()):
        raise ObligationError(
            f"a compelled disclosure needs {name}= (the {_MEANING[name]})", obligation=obligation
        )
    if not isinstance(value, str):
        raise ObligationError(f"{name}= must be a string, not {type(value).__name__}", obligation=obligation)
    if labels_of(value):
        raise ObligationError(
            f"{name}= must not be a labelled value: disclosure records hold names, never data",
            obligation=obligation,
        )
    if len(value) > MAX_TEXT_LENGTH or not value.isprintable():
        raise ObligationError(
            f"{name}= must be at most {MAX_TEXT_LENGTH} printable characters (the {_MEANING[name]})",
            obligation=obligation,
        )
    if name == "tenant" and value == MIXED_TENANT:
        # The marker for data of several tenants names no customer: none to
        # redirect to or notify, and any mixed field would match it.
        raise ObligationError(f"tenant= must name one customer, not {MIXED_TENANT!r}", obligation=obligation)
    return value


_MEANING = {
    "case": "reference of the legal demand",
    "tenant": "customer whose data is demanded",
    "authority": "body that compels the disclosure",
    "prohibition_ref": "order or statute that forbids notifying the customer",
}


class CompelledDisclosure:
    """The context manager :func:`compelled_disclosure` returns; see there."""

    __slots__ = (
        "case",
        "tenant",
        "authority",
        "redirect_attempted",
        "notification_prohibited",
        "prohibition_ref",
        "notifier",
        "audit",
        "obligations",
        "releases",
        "_token",
        "_owns_audit",
    )

    def __init__(
        self,
        *,
        case: str | None,
        tenant: str | None,
        authority: str | None,
        redirect_attempted: bool | None,
        notification_prohibited: bool,
        prohibition_ref: str | None,
        notifier: Notifier | None,
        audit: str | Path | AuditLog | None,
        policy: Policy,
    ) -> None:
        self.case = _required_text(case, "case", "request")
        self.tenant = _required_text(tenant, "tenant", "request")
        self.authority = _required_text(authority, "authority", "request")
        obligations = _obligations(policy)
        self.obligations = obligations
        if redirect_attempted is None or not isinstance(redirect_attempted, bool):
            raise ObligationError(
                "a compelled disclosure needs redirect_attempted=True or False "
                "(was the requester first sent to the customer?)",
                obligation="redirect_first",
            )
        if "redirect_first" in obligations and not redirect_attempted:
            raise ObligationError(
                f"case {_shown(self.case)}: redirect the requester to the customer first (redirect_first)",
                obligation="redirect_first",
                rule=_rule_with(policy, "redirect_first"),
            )
        if not isinstance(notification_prohibited, bool):
            raise ObligationError(
                "notification_prohibited= must be True or False", obligation="notify_tenant"
            )
        if notification_prohibited:
            prohibition_ref = _required_text(prohibition_ref, "prohibition_ref", "notify_tenant")
        elif prohibition_ref is not None:
            raise ObligationError(
                "prohibition_ref= is given but notification_prohibited is False", obligation="notify_tenant"
            )
        if "notify_tenant" in obligations and not notification_prohibited and notifier is None:
            raise ObligationError(
                f"case {_shown(self.case)}: the tenant's administrators must be notified first: pass notifier= "
                "(or notification_prohibited=True with prohibition_ref=)",
                obligation="notify_tenant",
                rule=_rule_with(policy, "notify_tenant"),
            )
        if notifier is not None and not callable(notifier):
            raise ObligationError("notifier= must be callable", obligation="notify_tenant")
        if notifier is not None and _is_async(notifier):
            raise ObligationError(
                "notifier= must notify before it returns: release() cannot await an async notifier "
                "(send the notice synchronously, e.g. asyncio.run_coroutine_threadsafe(...).result())",
                obligation="notify_tenant",
            )
        self.redirect_attempted = redirect_attempted
        self.notification_prohibited = notification_prohibited
        self.prohibition_ref = prohibition_ref
        self.notifier = notifier
        self._owns_audit = False
        if audit is None:
            if attached() is None:
                raise ObligationError(
                    "a compelled disclosure must be audited: pass audit= (a path or an AuditLog) "
                    "or configure(audit=...) first",
                    obligation="record",
                )
            self.audit: AuditLog | None = None
        elif isinstance(audit, AuditLog):
            self.audit = audit
        elif isinstance(audit, (str, Path)):
            self.audit = AuditLog(audit)
            self._owns_audit = True
        else:
            raise ObligationError(
                f"audit= takes a path or an AuditLog, not a {type(audit).__name__}", obligation="record"
            )
        self.releases: list[Disclosure] = []
        self._token: list[tuple[Any, Any]] = []

    def __enter__(self) -> CompelledDisclosure:
        # A stack of tokens: the same disclosure entered again (nested, or
        # from another thread or task) restores each entry's context on its
        # own exit, never leaving the purpose behind.
        self._token.append((PURPOSE.set(PURPOSE_KEY), PROCEDURE.set(self)))
        return self

    def __exit__(self, *exc: object) -> None:
        purpose_token, procedure_token = self._token.pop()
        PROCEDURE.reset(procedure_token)
        PURPOSE.reset(purpose_token)
        if not self._token and self._owns_audit and self.audit is not None:
            self.audit.close()

    def _refuse_other_tenant(
        self,
        guard: Any,
        name: str,
        value: Any,
        categories: frozenset[str],
        function: str,
        holders: str | None,
    ) -> None:
        """Data of another tenant than the case's is never released under
        this case: the demand names one customer, and that customer is the
        one notified. Recorded through the guard's one violation path
        (``via="obligation"``) in every mode, then refused.

        Whose data a field is follows the one tenant rule: the tenants its
        value and the records holding it (``holders``) are labelled for
        (several: nobody's), else the zone's tenant."""
        owner = merge_tenants(tenant_of_values((value,)), holders)
        if owner is None:
            state = ZONE.get() if FLAGS.zones else None
            owner = state.tenant if state is not None else None
        if owner is None or (owner == self.tenant and owner != MIXED_TENANT):
            return
        found = sorted(categories | labels_in_values((value,))) or ["customer_data"]
        text = (
            f"field {_shown(name)} holds data of another tenant than case {_shown(self.case)} names: "
            "a compelled disclosure releases only the named customer's data"
        )
        denials = [Denial(category, TENANT_RULE, "enforce", text, "block") for category in found]
        try:
            guard.violate(PURPOSE_KEY, denials, via="obligation", function=function, tenant=owner)
        except PurposeViolation as violation:
            raise ObligationError(
                f"case {_shown(self.case)}: {text}; nothing released", obligation="tenant", rule=TENANT_RULE
            ) from violation
        raise ObligationError(  # pragma: no cover - violate raises for an enforce denial
            f"case {_shown(self.case)}: {text}; nothing released", obligation="tenant", rule=TENANT_RULE
        )

    def release(self, obj: Any, fields: Sequence[str] | None = None) -> Released:
        """Release ``fields`` of ``obj`` (a mapping or an object) and nothing else.

        Checks each field's categories against ``disclosure.compelled``
        (raising or recording per mode), notifies the tenant's administrators,
        appends the audit record, then returns the fields.
        """
        if PROCEDURE.get() is not self:
            raise ObligationError(
                "release() outside its `with compelled_disclosure(...)` block", obligation="record"
            )
        names = _field_names(fields)
        guard = get_guard()
        container = _object_labels(obj)
        values: dict[str, Any] = {}
        categories: set[str] = set(container)
        function = caller_name(1)
        for name in names:
            value, found, holders = _field_path(obj, name, self.case)
            values[name] = value
            categories |= found
            categories |= labels_in_values((value,))
            self._refuse_other_tenant(guard, name, value, found, function, holders)
        if categories:
            guard.check_labels(
                frozenset(categories), PURPOSE_KEY, via="egress", function=function, tenant=self.tenant
            )
        ordered = tuple(sorted(categories))
        now = time.time()
        notified = False
        if not self.notification_prohibited and self.notifier is not None:
            notice = DisclosureNotice(self.case, self.tenant, self.authority, names, ordered, now)
            # Notifying the tenant is the disclosure's obligation, not part of
            # what is disclosed: what the notifier reads (the administrators'
            # addresses) is not read for the disclosure's purpose.
            token = PURPOSE.set(None)
            try:
                sent = self.notifier(notice)
                if inspect.isawaitable(sent):
                    # Nothing was sent yet: a notice still to be awaited is no notice.
                    close = getattr(sent, "close", None)
                    if callable(close):
                        close()
                    raise ObligationError(
                        f"case {_shown(self.case)}: the notifier returned an awaitable instead of "
                        "notifying; nothing released",
                        obligation="notify_tenant",
                    )
            except ObligationError:
                raise
            except Exception as error:
                raise ObligationError(
                    f"case {_shown(self.case)}: notifying the tenant's administrators failed "
                    f"({type(error).__name__}); nothing released",
                    obligation="notify_tenant",
                ) from error
            finally:
                PURPOSE.reset(token)
            notified = True
        record = Disclosure(
            case=self.case,
            tenant=self.tenant,
            authority=self.authority,
            purpose=PURPOSE_KEY,
            fields=names,
            categories=ordered,
            redirect_attempted=self.redirect_attempted,
            notified=notified,
            notification_prohibited=self.notification_prohibited,
            prohibition_ref=self.prohibition_ref,
            obligations=self.obligations,
            function=function,
            timestamp=now,
        )
        if self.audit is not None:
            try:
                seq = self.audit.append(record)
            except AuditError as error:
                raise ObligationError(
                    f"case {_shown(self.case)}: the disclosure cannot be audited ({error.reason}); nothing released",
                    obligation="record",
                ) from error
            record = dataclasses.replace(record, audit_ref=f"{self.audit.log_id}:{seq}")
        # An attached sink writes disclosures before this returns; if it cannot,
        # the dispatcher raises SinkFailure (in any mode) and nothing is released.
        try:
            guard.dispatch(record)
        except SinkFailure as error:
            raise ObligationError(
                f"case {_shown(self.case)}: the disclosure cannot be audited ({error}); nothing released",
                obligation="record",
            ) from error
        self.releases.append(record)
        return Released(values, self.case)


def _object_labels(obj: Any) -> frozenset[str]:
    """The labels put on the record as a whole, not those of its fields:
    only the named fields' own labels may decide what goes out."""
    if isinstance(obj, LabelledProxy):
        return obj._self_pg_kind.labels
    box = box_kind(obj)
    if box is not None:
        return box.labels
    kind = _OBJECTS.get(id(obj))
    if kind is not None and _OBJECT_REFS[id(obj)]() is obj:
        return kind.labels
    return frozenset()


def _obligations(policy: Policy) -> tuple[str, ...]:
    chain = policy.taxonomy.purpose_ancestors(PURPOSE_KEY)
    found: list[str] = []
    for rule in policy.rules:
        if rule.effect == "allow" and any(p in chain for p in rule.purposes):
            found.extend(o for o in rule.obligations if o not in found)
    return tuple(found)


def _rule_with(policy: Policy, obligation: str) -> str | None:
    chain = policy.taxonomy.purpose_ancestors(PURPOSE_KEY)
    for rule in policy.rules:
        if obligation in rule.obligations and any(p in chain for p in rule.purposes):
            return rule.id
    return None


def _field_names(fields: Sequence[str] | None) -> tuple[str, ...]:
    if fields is None or isinstance(fields, (str, bytes)):
        raise ObligationError(
            "release() needs fields=[...]: the fields the request requires, by name (minimize)",
            obligation="minimize",
        )
    names = tuple(fields)
    if not names:
        raise ObligationError("release() needs at least one field name (minimize)", obligation="minimize")
    for name in names:
        if not isinstance(name, str) or not name:
            raise ObligationError(
                f"field names must be strings, not a {type(name).__name__}", obligation="minimize"
            )
        if labels_of(name):
            raise ObligationError("field names must not be labelled values", obligation="minimize")
    return tuple(dict.fromkeys(names))


_SCALARS = (str, bytes, int, float, bool, type(None), datetime.date, datetime.time, datetime.timedelta)
_MAX_PATH = 200


def _shown(text: str) -> str:
    """A requester-supplied name, safe to print: repr-escaped and bounded."""
    shown = repr(text)
    return shown if len(shown) <= 80 else shown[:77] + "...'"


def _is_plain(value: Any) -> bool:
    """A value that is no record: a scalar, or a list/tuple of scalars."""
    inner = value.__wrapped__ if isinstance(value, LabelledProxy) else value
    if isinstance(inner, _SCALARS):
        return True
    if isinstance(inner, (list, tuple, set, frozenset)):
        return all(
            isinstance(item.__wrapped__ if isinstance(item, LabelledProxy) else item, _SCALARS)
            for item in inner
        )
    return False


def _step(obj: Any, segment: str, path: str, case: str) -> tuple[Any, frozenset[str]]:
    """One field of one record, and the categories its class declares for it."""
    if isinstance(obj, Mapping):
        if segment in obj:
            return obj[segment], frozenset()
    elif not segment.startswith("_") and not isinstance(obj, _SCALARS) and hasattr(obj, segment):
        declared = dict(annotated_fields(type(obj))).get(segment, frozenset())
        return getattr(obj, segment), declared
    raise ObligationError(
        f"case {_shown(case)}: the record has no field {_shown(path)}; nothing released",
        obligation="minimize",
    )


def _field_path(obj: Any, path: str, case: str) -> tuple[Any, frozenset[str], str | None]:
    """The value at ``path`` ("owner.address.city", "messages[].subject"),
    the categories declared along it, and the tenant the records along it
    are labelled for (several: ``MIXED_TENANT``; none: None). A path must end at plain values:
    a whole record (a mapping, an object, a list of them) is refused, so a
    property that hands back the record cannot release all of it."""
    if len(path) > _MAX_PATH:
        raise ObligationError(
            f"case {_shown(case)}: a field path is at most {_MAX_PATH} characters; nothing released",
            obligation="minimize",
        )
    segments = path.split(".")
    declared: set[str] = set()
    current: list[Any] = [obj]
    holders: str | None = None
    many = False
    for segment in segments:
        each = segment.endswith("[]")
        key = segment[:-2] if each else segment
        if not key or "[" in key or "]" in key:
            raise ObligationError(
                f"case {_shown(case)}: {_shown(path)} is not a field path (fields joined by '.', "
                "'[]' after a list of records); nothing released",
                obligation="minimize",
            )
        following: list[Any] = []
        for record in current:
            holders = merge_tenants(holders, tenant_of(record))
            value, found = _step(record, key, path, case)
            declared |= found
            if each:
                if isinstance(value, (Mapping, str, bytes)) or not isinstance(value, (list, tuple)):
                    raise ObligationError(
                        f"case {_shown(case)}: {_shown(key)} in {_shown(path)} is not a list of records; "
                        "nothing released",
                        obligation="minimize",
                    )
                following.extend(value)
                many = True
            else:
                following.append(value)
        current = following
    result: Any = current if many else current[0]
    if not all(_is_plain(value) for value in current):
        raise ObligationError(
            f"case {_shown(case)}: {_shown(path)} is a whole record, not a field: name the fields "
            "the request requires one by one (minimize); nothing released",
            obligation="minimize",
        )
    return result, frozenset(declared), holders


def compelled_disclosure(
    *,
    case: str | None = None,
    tenant: str | None = None,
    authority: str | None = None,
    redirect_attempted: bool | None = None,
    notification_prohibited: bool = False,
    prohibition_ref: str | None = None,
    notifier: Notifier | None = None,
    audit: str | Path | AuditLog | None = None,
) -> CompelledDisclosure:
    """A disclosure the law compels, as a context manager (``pg.compelled_disclosure``).

    Every argument is checked when it is called: a missing ``case``,
    ``tenant`` or ``authority``, a redirect not attempted, or a notification
    neither possible (no ``notifier``) nor forbidden by a cited
    ``prohibition_ref`` raises :class:`ObligationError` (``.obligation``
    names which) before anything happens. ``audit`` is where releases are
    recorded; without it an audit sink must be attached
    (``configure(audit=...)``).
    """
    return CompelledDisclosure(
        case=case,
        tenant=tenant,
        authority=authority,
        redirect_attempted=redirect_attempted,
        notification_prohibited=notification_prohibited,
        prohibition_ref=prohibition_ref,
        notifier=notifier,
        audit=audit,
        policy=get_guard().policy,
    )
