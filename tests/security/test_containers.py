"""Items of labelled containers keep their labels; every common collection is looked into."""

from __future__ import annotations

import collections
from collections.abc import Callable, Iterator, Mapping
from typing import Any, NamedTuple

import pytest

import purposeguard as pg

EMAIL = "customer_data.content.email"


@pg.purpose("advertising")
def ads(value: Any) -> int:
    return 1


@pytest.fixture(autouse=True)
def _enforce() -> None:
    pg.configure("trust-center", mode="enforce")


def test_an_item_read_from_a_labelled_dict_is_refused() -> None:
    """d = label({"b": x}); ads(d["b"]) is refused: the item keeps the dict's labels."""
    d = pg.label({"b": "plain text"}, EMAIL)
    with pytest.raises(pg.PurposeViolation):
        ads(d["b"])


def test_an_item_got_from_a_labelled_dict_is_refused() -> None:
    """d.get("b") keeps the dict's labels too."""
    d = pg.label({"b": "plain text"}, EMAIL)
    with pytest.raises(pg.PurposeViolation):
        ads(d.get("b"))


def test_an_item_read_from_a_labelled_list_or_tuple_is_refused() -> None:
    """Indexing a labelled list or tuple gives a labelled item."""
    for container in (pg.label(["plain"], EMAIL), pg.label(("plain",), EMAIL)):
        with pytest.raises(pg.PurposeViolation):
            ads(container[0])


def test_a_number_read_from_a_labelled_dict_keeps_the_label() -> None:
    """Numbers read from a labelled dict are labelled numbers."""
    d = pg.label({"n": 42}, EMAIL)
    assert pg.labels_of(d["n"]) == {EMAIL}
    assert d["n"] == 42


def test_a_nested_dict_read_from_a_labelled_dict_is_the_same_object() -> None:
    """A nested mutable container comes back as itself, so writes through it reach the outer one."""
    inner: dict[str, str] = {}
    d = pg.label({"inner": inner}, EMAIL)
    d["inner"]["x"] = "y"
    assert inner == {"x": "y"}


class _Point(NamedTuple):
    body: Any


class _Mine(dict):  # type: ignore[type-arg]
    pass


class _MyMapping(Mapping[str, Any]):
    def __init__(self, body: Any) -> None:
        self._data = {"body": body}

    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)


COLLECTIONS: list[tuple[str, Callable[[Any], Any]]] = [
    ("OrderedDict", lambda x: collections.OrderedDict(b=x)),
    ("defaultdict", lambda x: collections.defaultdict(list, b=x)),
    ("namedtuple", lambda x: _Point(x)),
    ("deque", lambda x: collections.deque([x])),
    ("ChainMap", lambda x: collections.ChainMap({}, {"b": x})),
    ("UserDict", lambda x: collections.UserDict(b=x)),
    ("UserList", lambda x: collections.UserList([x])),
    ("dict subclass", lambda x: _Mine(b=x)),
    ("Mapping subclass", lambda x: _MyMapping(x)),
    ("set", lambda x: {x}),
    ("frozenset", lambda x: frozenset([x])),
]


@pytest.mark.parametrize("build", [c[1] for c in COLLECTIONS], ids=[c[0] for c in COLLECTIONS])
def test_a_collection_holding_a_labelled_value_is_refused(build: Callable[[Any], Any]) -> None:
    """A labelled value inside any common collection or mapping/sequence subclass is found and refused."""
    with pytest.raises(pg.PurposeViolation):
        ads(build(pg.label("mail body", EMAIL)))


@pytest.mark.parametrize("build", [c[1] for c in COLLECTIONS], ids=[c[0] for c in COLLECTIONS])
def test_a_collection_of_plain_values_passes(build: Callable[[Any], Any]) -> None:
    """The same collections holding plain text are allowed."""
    assert ads(build("house ad")) == 1
