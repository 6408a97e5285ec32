"""Holes a red-team pass found in the label walk, each closed.

- Data reachable without being held in ``__dict__`` or ``__slots__``: a bound
  method's object (``f(profile.summary)``), a ``slice``'s bounds, a
  ``re.Pattern``'s text, a ``contextvars.Context``'s values.
- A subclass of a built-in container whose own ``items()`` or ``__iter__``
  masks or refuses its items.
- A walk-limit refusal naming an attribute whose name came from data.
- A category or tenant first given as a ``str`` subclass (a ``StrEnum``
  member) kept as such in labels, caches and violations.
"""

from __future__ import annotations

import contextvars
import dataclasses
import enum
import functools
import math
import re
import types
from collections import deque
from collections.abc import Callable, Iterator
from typing import Annotated, Any

import pytest

import purposeguard as pg
from purposeguard._labels import MAX_DEPTH, relabel

EMAIL = "customer_data.content.email"
SECRET = "Quarterly numbers attached"


def body() -> str:
    return pg.label(SECRET, EMAIL)


@pg.purpose("advertising")
def profile(value: object) -> None:
    return None


def refused_for_its_labels(value: object) -> None:
    pg.configure("trust-center", mode="enforce")
    with pytest.raises(pg.PurposeViolation) as refused:
        profile(value)
    assert refused.value.violations[0].rule == "no-advertising"


# -- what is reachable without being an attribute ---------------------------------


class Holder:
    def __init__(self, text: str) -> None:
        self.text = text

    def summary(self) -> str:
        return "a summary"


REACHABLE: dict[str, Callable[[], Any]] = {
    "bound method": lambda: Holder(body()).summary,
    "method-wrapper of an object": lambda: Holder(body()).__repr__,
    "method-wrapper of labelled text": lambda: body().__len__,
    "C method of a list": lambda: [body()].append,
    "slice": lambda: slice(body(), None),
    "re.Pattern": lambda: re.compile(body()),
}


@pytest.mark.parametrize("make", REACHABLE.values(), ids=list(REACHABLE))
def test_what_a_callback_or_small_holder_reaches_is_refused(make: Callable[[], Any]) -> None:
    refused_for_its_labels(make())
    assert pg.labels_of(make()) == {EMAIL}


def test_a_context_s_values_are_looked_into() -> None:
    variable: contextvars.ContextVar[str] = contextvars.ContextVar("draft")

    def held() -> contextvars.Context:
        variable.set(body())
        return contextvars.copy_context()

    refused_for_its_labels(contextvars.Context().run(held))


def test_functions_bound_to_modules_pass() -> None:
    pg.configure("trust-center", mode="enforce")
    profile(len)
    profile(math.sqrt)
    profile(Holder("plain").summary)
    profile(functools.partial(len, "plain"))


class Chain:
    def __init__(self, levels: int) -> None:
        self.next = Chain(levels - 1) if levels else None


def test_a_bound_method_among_a_generator_s_locals_is_looked_into_best_effort() -> None:
    """A generator over a session holds ``session.execute``: too deep to
    read all of is machinery, not content refused for it."""
    pg.configure("trust-center", mode="enforce")
    session = Chain(MAX_DEPTH + 4)

    def rows(fetch: Callable[[], str]) -> Iterator[str]:
        yield fetch()

    profile(rows(session.__repr__))
    with pytest.raises(pg.PurposeViolation):
        profile(rows(Holder(body()).summary))


def test_a_callback_bound_to_a_large_object_is_looked_into_best_effort() -> None:
    """A handler passed as a callback holds the application object it is a
    method of: too deep to read all of is machinery, not refused for it;
    what the walk reaches is still found."""
    pg.configure("trust-center", mode="enforce")
    application = Chain(MAX_DEPTH + 4)
    profile(types.MethodType(lambda self: None, application))
    handler = types.SimpleNamespace(mail=body(), application=application)
    with pytest.raises(pg.PurposeViolation):
        profile(types.MethodType(lambda self: None, handler))


# -- subclasses of the built-in containers --------------------------------------


class Masked(dict[str, Any]):
    def items(self) -> Any:
        return [(key, "***") for key in dict.keys(self)]

    def values(self) -> Any:
        return ["***" for _ in dict.keys(self)]


class MaskedList(list[Any]):
    def __iter__(self) -> Iterator[Any]:
        return iter(["***"] * list.__len__(self))


class RefusingList(list[Any]):
    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.name = "box"

    def __iter__(self) -> Iterator[Any]:
        raise RuntimeError("not listed")


class MaskedTuple(tuple[Any, ...]):
    def __iter__(self) -> Iterator[Any]:
        return iter(())


class MaskedSet(set[Any]):
    def __iter__(self) -> Iterator[Any]:
        return iter(())


class MaskedDeque(deque[Any]):
    def __iter__(self) -> Iterator[Any]:
        return iter(())


SUBCLASSES: dict[str, Callable[[], Any]] = {
    "dict with masking items()": lambda: Masked(body=body()),
    "dict keyed by content": lambda: Masked({body(): 1}),
    "list with masking __iter__": lambda: MaskedList([body()]),
    "list with a refusing __iter__ and an attribute": lambda: RefusingList([body()]),
    "tuple": lambda: MaskedTuple((body(),)),
    "set": lambda: MaskedSet({body()}),
    "deque": lambda: MaskedDeque([body()]),
}


@pytest.mark.parametrize("make", SUBCLASSES.values(), ids=list(SUBCLASSES))
def test_a_container_subclass_cannot_hide_its_items(make: Callable[[], Any]) -> None:
    refused_for_its_labels(make())
    assert pg.labels_of(make()) == {EMAIL}


def test_a_container_subclass_s_attributes_are_still_looked_into() -> None:
    plain = MaskedList(["plain"])
    plain.subject = body()  # type: ignore[attr-defined]
    refused_for_its_labels(plain)


# -- the walk-limit refusal names no attribute taken from data --------------------


class Deep:
    pass


def _deep(levels: int) -> Deep:
    top = current = Deep()
    for _ in range(levels):
        following = Deep()
        current.following = following  # type: ignore[attr-defined]
        current = following
    current.text = body()  # type: ignore[attr-defined]
    return top


def _refusal(value: object) -> str:
    pg.configure("trust-center", mode="enforce")
    with pytest.raises(pg.PurposeViolation) as refused:
        profile(value)
    assert refused.value.violations[0].rule == "purposeguard.internal-error"
    return str(refused.value)


def test_an_attribute_named_from_data_is_not_shown() -> None:
    message = _refusal(types.SimpleNamespace(**{"alice_smith": _deep(MAX_DEPTH + 4)}))
    assert "alice_smith" not in message
    assert "value: SimpleNamespace -> .<attribute>: Deep" in message


def test_an_attribute_set_from_a_mapping_s_keys_is_not_shown() -> None:
    class Record:
        def __init__(self, row: dict[str, Any]) -> None:
            for key, item in row.items():
                setattr(self, key, item)

    message = _refusal(Record({"alice_smith": _deep(MAX_DEPTH + 4)}))
    assert "alice_smith" not in message
    assert "value: Record -> .<attribute>: Deep" in message


@dataclasses.dataclass
class Declared:
    annotated: Any
    assigned: Any = None
    later: dataclasses.InitVar[Any] = None

    def __post_init__(self, later: Any) -> None:
        self.extra = later


class Slotted:
    __slots__ = ("inner",)

    def __init__(self, inner: Any) -> None:
        object.__setattr__(self, "inner", inner)


def _too_deep() -> Any:
    nested: Any = "plain"
    for _ in range(MAX_DEPTH + 2):
        nested = [nested]
    return nested


DECLARED: dict[str, tuple[Callable[[], Any], str]] = {
    "a dataclass field": (lambda: Declared(_too_deep()), "value: Declared -> .annotated: list"),
    "set in __post_init__": (
        lambda: Declared(None, assigned=None, later=_too_deep()),
        "value: Declared -> .extra: list",
    ),
    "a slot": (lambda: Slotted(_too_deep()), "value: Slotted -> .inner: list"),
}


@pytest.mark.parametrize("case", DECLARED.values(), ids=list(DECLARED))
def test_names_the_class_declares_are_shown(case: tuple[Callable[[], Any], str]) -> None:
    make, shown = case
    assert shown in _refusal(make())


# -- categories and tenants are plain str ----------------------------------------


class Categories(enum.StrEnum):
    EMAIL = EMAIL


class Tenants(enum.StrEnum):
    CONTOSO = "contoso"


def _refused_category_and_tenant(value: object) -> tuple[object, object]:
    pg.configure("trust-center", mode="enforce")
    with pytest.raises(pg.PurposeViolation) as refused:
        profile(value)
    violation = refused.value.violations[0]
    return violation.category, violation.tenant


def test_a_category_first_given_as_a_str_enum_is_kept_as_plain_str() -> None:
    pg.configure("trust-center", mode="enforce")
    first = pg.label("b", Categories.EMAIL)
    for value in (first, pg.label("later", EMAIL), pg.label(["in a list"], Categories.EMAIL)):
        category, _ = _refused_category_and_tenant(value)
        assert type(category) is str and category == EMAIL
        assert all(type(c) is str for c in pg.labels_of(value))
    assert all(type(c) is str for c in pg.labels_of(relabel(7, Categories.EMAIL)))


def test_a_category_whose_hash_or_equality_misbehaves_is_read_as_its_text() -> None:
    class Raising(str):
        def __hash__(self) -> int:
            raise RuntimeError("no hash")

        def __eq__(self, other: object) -> bool:
            raise RuntimeError("no equality")

    class Agreeing(str):
        def __eq__(self, other: object) -> bool:
            return True

        __hash__ = str.__hash__

    for category in (Raising(EMAIL), Agreeing(EMAIL)):
        pg.testing.reset()
        found, _ = _refused_category_and_tenant(pg.label("b", category))
        assert type(found) is str and found == EMAIL


def test_a_tenant_given_as_a_str_enum_is_kept_as_plain_str() -> None:
    pg.configure("trust-center", mode="enforce")
    for value in (
        pg.label("b", EMAIL, tenant=Tenants.CONTOSO),
        pg.label("b", EMAIL, tenant=Tenants.CONTOSO),  # the label class is cached by now
        pg.label(["b"], EMAIL, tenant=Tenants.CONTOSO),
        pg.label(3, EMAIL, tenant=Tenants.CONTOSO),
    ):
        _, tenant = _refused_category_and_tenant(value)
        assert type(tenant) is str and tenant == "contoso"
        assert type(pg.tenant_of(value)) is str


def test_a_tenant_that_is_labelled_text_is_still_refused() -> None:
    pg.configure("trust-center", mode="enforce")
    with pytest.raises(ValueError, match="labelled"):
        pg.label("b", EMAIL, tenant=pg.label("contoso", EMAIL))


def test_categories_declared_on_fields_and_produces_are_plain_str() -> None:
    @dataclasses.dataclass
    class Message:
        text: Annotated[str, pg.Category(Categories.EMAIL)]

    @pg.produces(Categories.EMAIL, tenant=Tenants.CONTOSO)
    def read() -> str:
        return "b"

    for value in (Message("b"), read()):
        category, _ = _refused_category_and_tenant(value)
        assert type(category) is str and category == EMAIL
    assert type(pg.tenant_of(read())) is str


# -- a class that decides what its __dict__ reads as --------------------------------


class EmptyDictProperty:
    def __init__(self, held: object) -> None:
        self.held = held

    @property  # type: ignore[misc]
    def __dict__(self) -> dict[str, Any]:  # type: ignore[override]
        return {}


class HidesItsDict:
    def __init__(self, held: object) -> None:
        self.held = held

    def __getattribute__(self, name: str) -> Any:
        if name == "__dict__":
            raise AttributeError(name)
        return object.__getattribute__(self, name)


class SlotsAndHiddenDict(EmptyDictProperty):
    __slots__ = ("other",)

    def __init__(self, held: object) -> None:
        self.other = held
        super().__init__("plain")


@pytest.mark.parametrize("holder", [EmptyDictProperty, HidesItsDict, SlotsAndHiddenDict])
def test_an_object_that_hides_its_dict_is_read_as_it_is_held(holder: Any) -> None:
    refused_for_its_labels(holder(body()))
    refused_for_its_labels([holder({"inner": body()})])


def test_a_class_that_hides_its_dict_is_never_learned_as_flat() -> None:
    from purposeguard._labels import FLAT_OBJECTS

    pg.configure("trust-center", mode="enforce")
    for _ in range(3):
        profile(EmptyDictProperty("plain"))
    assert EmptyDictProperty not in FLAT_OBJECTS
    refused_for_its_labels(EmptyDictProperty(body()))
