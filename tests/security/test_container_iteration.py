"""Every way Python code reads the items of a labelled container hands them out labelled.

Each row reads one item out of a labelled container (``pg.label({...}, EMAIL)``)
the way application code does, and asserts the secure behaviour: the item
carries the container's labels, so handing it to an advertising function is
refused. Where C code reads a container without asking its class (``set(s)``),
the rows below assert the zone refuses what is built from it.
"""

from __future__ import annotations

import copy
import json
import pickle
from collections.abc import Callable
from typing import Any

import pytest

import purposeguard as pg

EMAIL = "customer_data.content.email"


@pg.purpose("advertising")
def ads(value: Any) -> int:
    return 1


@pytest.fixture(autouse=True)
def _enforce() -> None:
    pg.configure("trust-center", mode="enforce")


def _labelled_dict() -> Any:
    return pg.label({"to": "ann@example.com", "n": 7}, EMAIL)


def _labelled_list() -> Any:
    return pg.label(["ann@example.com", "bob@example.com"], EMAIL)


def _labelled_tuple() -> Any:
    return pg.label(("ann@example.com", "bob@example.com"), EMAIL)


def _labelled_set() -> Any:
    return pg.label({"ann@example.com"}, EMAIL)


def _unpacked(container: Any) -> Any:
    first, _second = container
    return first


def _starred(container: Any) -> Any:
    def first(*args: Any) -> Any:
        return args[0]

    return first(*container)


def _keywords(container: Any) -> Any:
    def first(**kwargs: Any) -> Any:
        return kwargs["to"]

    return first(**container)


# (name, read one item): each read goes through Python's own protocols.
READS: list[tuple[str, Callable[[], Any]]] = [
    ("dict.values()", lambda: next(iter(_labelled_dict().values()))),
    ("dict.items() value", lambda: next(iter(_labelled_dict().items()))[1]),
    ("dict.items() key", lambda: next(iter(_labelled_dict().items()))[0]),
    ("for k, v in dict.items()", lambda: [v for _k, v in _labelled_dict().items()][0]),
    ("dict.keys()", lambda: next(iter(_labelled_dict().keys()))),
    ("for key in dict", lambda: [k for k in _labelled_dict()][0]),
    ("dict(labelled)", lambda: dict(_labelled_dict())["to"]),
    ("{**labelled}", lambda: {**_labelled_dict()}["to"]),
    ("f(**labelled)", lambda: _keywords(_labelled_dict())),
    ("list(labelled dict)", lambda: list(_labelled_dict())[0]),
    ("dict.copy()", lambda: _labelled_dict().copy()["to"]),
    ("copy.copy(dict)", lambda: copy.copy(_labelled_dict())["to"]),
    ("copy.deepcopy(dict)", lambda: copy.deepcopy(_labelled_dict())["to"]),
    ("pickled dict", lambda: pickle.loads(pickle.dumps(_labelled_dict()))["to"]),
    ("dict.pop()", lambda: _labelled_dict().pop("to")),
    ("dict.popitem()", lambda: _labelled_dict().popitem()[1]),
    ("dict.setdefault()", lambda: _labelled_dict().setdefault("to", "x")),
    ("dict.get()", lambda: _labelled_dict().get("to")),
    ("dict | other", lambda: (_labelled_dict() | {"x": "y"})["to"]),
    ("other | dict", lambda: ({"x": "y"} | _labelled_dict())["to"]),
    ("reversed(dict)", lambda: next(reversed(_labelled_dict()))),
    ("reversed(dict.values())", lambda: next(reversed(_labelled_dict().values()))),
    ("a number from dict.values()", lambda: list(_labelled_dict().values())[1]),
    ("for item in list", lambda: [item for item in _labelled_list()][0]),
    ("list(labelled list)", lambda: list.__getitem__(list(_labelled_list()), 0)),
    ("tuple(labelled list)", lambda: tuple.__getitem__(tuple(_labelled_list()), 0)),
    ("next(iter(list))", lambda: next(iter(_labelled_list()))),
    ("sorted(list)", lambda: list.__getitem__(sorted(_labelled_list()), 0)),
    ("enumerate(list)", lambda: next(enumerate(_labelled_list()))[1]),
    ("zip(list, ...)", lambda: next(zip(_labelled_list(), range(2), strict=True))[0]),
    ("map(f, list)", lambda: next(map(lambda item: item, _labelled_list()))),
    ("filter(f, list)", lambda: next(filter(None, _labelled_list()))),
    ("min(list)", lambda: min(_labelled_list())),
    ("reversed(list)", lambda: next(reversed(_labelled_list()))),
    ("list.pop()", lambda: _labelled_list().pop()),
    ("list.copy()", lambda: _labelled_list().copy()[0]),
    ("list + list", lambda: (_labelled_list() + ["x"])[0]),
    ("list * 2", lambda: (_labelled_list() * 2)[0]),
    ("[*list]", lambda: list.__getitem__([*_labelled_list()], 0)),
    ("f(*list)", lambda: _starred(_labelled_list())),
    ("generator expression", lambda: next(item for item in _labelled_list())),
    ("a, b = tuple", lambda: _unpacked(_labelled_tuple())),
    ("a, b = list", lambda: _unpacked(_labelled_list())),
    ("for item in tuple", lambda: [item for item in _labelled_tuple()][0]),
    ("tuple + tuple", lambda: (_labelled_tuple() + ("x",))[0]),
    ("plain list + list", lambda: (["x"] + _labelled_list())[1]),
    ("plain tuple + tuple", lambda: (("x",) + _labelled_tuple())[1]),
    ("plain set | set", lambda: next(iter({"ann@example.com"} | _labelled_set()))),
    ("for item in set", lambda: [item for item in _labelled_set()][0]),
    ("list(set)", lambda: list.__getitem__(list(_labelled_set()), 0)),
    ("sorted(set)", lambda: list.__getitem__(sorted(_labelled_set()), 0)),
    ("set.pop()", lambda: _labelled_set().pop()),
    ("set | other", lambda: next(iter(_labelled_set() | {"x"}))),
    ("set.union(other)", lambda: next(iter(_labelled_set().union({"x"})))),
    ("for item in frozenset", lambda: next(iter(pg.label(frozenset({"ann@example.com"}), EMAIL)))),
]


@pytest.mark.parametrize("read", [r[1] for r in READS], ids=[r[0] for r in READS])
def test_an_item_read_from_a_labelled_container_keeps_its_labels(read: Callable[[], Any]) -> None:
    """The item carries the container's categories."""
    assert EMAIL in pg.labels_of(read())


@pytest.mark.parametrize("read", [r[1] for r in READS], ids=[r[0] for r in READS])
def test_an_item_read_from_a_labelled_container_is_refused_for_advertising(read: Callable[[], Any]) -> None:
    """Enforce mode refuses the item wherever it was read from."""
    with pytest.raises(pg.PurposeViolation):
        ads(read())


def test_the_items_keep_the_containers_tenant() -> None:
    """An item of a tenant's container is that tenant's data."""
    labelled = pg.label({"to": "ann@example.com"}, EMAIL, tenant="contoso")
    assert [pg.tenant_of(v) for v in labelled.values()] == ["contoso"]
    assert [pg.tenant_of(k) for k in labelled] == ["contoso"]


def test_iterated_items_are_equal_to_the_stored_ones() -> None:
    """Labelling changes no value: iteration, views and copies compare equal to the plain container."""
    plain = {"to": "ann@example.com", "n": 7}
    labelled = pg.label(dict(plain), EMAIL)
    assert dict(labelled) == plain
    assert list(labelled.items()) == list(plain.items())
    assert labelled.keys() == plain.keys()
    assert "to" in labelled.keys() and ("n", 7) in labelled.items() and 7 in labelled.values()
    assert len(labelled.values()) == 2
    assert json.loads(json.dumps(labelled)) == plain
    assert list(pg.label([3, 1, 2], EMAIL)) == [3, 1, 2]
    assert sorted(pg.label({3, 1}, EMAIL)) == [1, 3]


def test_the_views_are_live() -> None:
    """keys()/values()/items() of a labelled dict follow later writes, as dict views do."""
    labelled = pg.label({"a": "1"}, EMAIL)
    values = labelled.values()
    labelled["b"] = "2"
    assert sorted(values) == ["1", "2"]
    assert values.mapping["b"] == "2"


def test_a_nested_container_read_by_iteration_is_the_same_object() -> None:
    """Writes through a nested container read by iteration still reach the outer one."""
    inner: dict[str, str] = {}
    labelled = pg.label({"inner": inner}, EMAIL)
    next(iter(labelled.values()))["x"] = "y"
    assert inner == {"x": "y"}


def test_repr_of_a_labelled_container_keeps_the_labels() -> None:
    """repr() and str() of a labelled container are labelled text."""
    labelled = _labelled_dict()
    assert EMAIL in pg.labels_of(repr(labelled))
    assert EMAIL in pg.labels_of(str(labelled))


def test_strip_labels_gives_plain_items() -> None:
    """The internal declassification leaves no label on the items it hands back."""
    from purposeguard._labels import strip_labels

    plain = strip_labels(_labelled_dict())
    assert type(plain) is dict
    assert all(not pg.labels_of(v) for v in dict.values(plain))


def _updated(labelled: Any) -> set[Any]:
    plain: set[Any] = set()
    plain.update(labelled)
    return plain


# Python builds these without asking the container's class (set_merge copies
# the hash table in C): no hook exists, so the zone catches what is built
# from them (docs/laundering.md lists them).
C_FAST_PATHS: list[tuple[str, Callable[[Any], Any]]] = [
    ("set(labelled set)", lambda s: next(iter(set(s)))),
    ("frozenset(labelled set)", lambda s: next(iter(frozenset(s)))),
    ("set().union(labelled set)", lambda s: next(iter(set().union(s)))),
    ("plain set.update(labelled set)", lambda s: next(iter(_updated(s)))),
    ("plain frozenset & labelled set", lambda s: next(iter(frozenset({"ann@example.com"}) & s))),
]


@pytest.mark.parametrize("read", [r[1] for r in C_FAST_PATHS], ids=[r[0] for r in C_FAST_PATHS])
def test_a_c_fast_path_that_skips_the_class_is_caught_by_the_zone(read: Callable[[Any], Any]) -> None:
    """Items copied in C lose the label; inside a zone with context_mode=enforce the flow is refused."""
    pg.configure("trust-center", mode="enforce", context_mode="enforce")
    with pg.zone(tenant="contoso"):
        item = read(pg.label({"ann@example.com"}, EMAIL))
        assert not pg.labels_of(item)  # the mechanism: C copied the items
        with pytest.raises(pg.PurposeViolation) as raised:
            ads(item)
    assert {v.via for v in raised.value.violations} == {"context"}
