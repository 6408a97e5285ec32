"""Red team: items of labelled containers. Every way ordinary code reads an
item out of a labelled dict, list, tuple or set hands it out labelled, with
the container's tenant; and the libraries applications hand labelled
containers to (json, copy, pickle, dataclasses, pydantic) still work."""

from __future__ import annotations

import collections
import copy
import dataclasses
import heapq
import json
import operator
import pickle
import random
import types
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pydantic
import pytest

import purposeguard as pg
from purposeguard._labels import tenant_of_values
from purposeguard.consent import ConsentStore

EMAIL = "customer_data.content.email"
_EMPTY: tuple[Any, ...] = ()


def _mine(value: Any) -> Any:
    return pg.label(value, EMAIL, tenant="contoso")


def _whose(value: Any) -> tuple[str | None, bool]:
    return tenant_of_values([value]), EMAIL in pg.labels_of(value)


@dataclasses.dataclass
class Holder:
    x: Any


def _kwargs(**given: Any) -> Any:
    return given["k"]


def _first(*given: Any) -> Any:
    return given[0]


def _match_mapping(d: Any) -> Any:
    match d:
        case {"k": found}:
            return found
    return None


def _match_rest(d: Any) -> Any:
    match d:
        case {**rest}:
            return rest["k"]
    return None


def _match_sequence(items: Any) -> Any:
    match items:
        case [found, *_]:
            return found
    return None


def _unpacked(pair: Any) -> Any:
    first, _second = pair
    return first


READS: dict[str, Callable[[], Any]] = {
    "f(**d)": lambda: _kwargs(**_mine({"k": "v"})),
    "f(*list)": lambda: _first(*_mine(["v"])),
    "f(*tuple)": lambda: _first(*_mine(("v",))),
    "[*list]": lambda: [*_mine(["v"])][0],
    "{**d}": lambda: {**_mine({"k": "v"})}["k"],
    "tuple(list)": lambda: tuple(_mine(["v"]))[0],
    "list(tuple)": lambda: list(_mine(("v",)))[0],
    "a, b = tuple": lambda: _unpacked(_mine(("v", "w"))),
    "a, b = list": lambda: _unpacked(_mine(["v", "w"])),
    "match {'k': v}": lambda: _match_mapping(_mine({"k": "v"})),
    "match {**rest}": lambda: _match_rest(_mine({"k": "v"})),
    "match [v, *_]": lambda: _match_sequence(_mine(["v", "w"])),
    "match (v, *_) on a tuple": lambda: _match_sequence(_mine(("v", "w"))),
    "random.choice": lambda: random.choice(_mine(["v"])),
    "heapq.nsmallest": lambda: heapq.nsmallest(1, _mine(["w", "v"]))[0],
    "sorted": lambda: sorted(_mine(["w", "v"]))[0],
    "min": lambda: min(_mine(["w", "v"])),
    "max of values()": lambda: max(_mine({"k": "v"}).values()),
    "operator.itemgetter": lambda: operator.itemgetter("k")(_mine({"k": "v"})),
    "operator.getitem": lambda: operator.getitem(_mine(["v"]), 0),
    "ChainMap": lambda: collections.ChainMap(_mine({"k": "v"}))["k"],
    "OrderedDict(d)": lambda: collections.OrderedDict(_mine({"k": "v"}))["k"],
    "defaultdict(d)": lambda: collections.defaultdict(str, _mine({"k": "v"}))["k"],
    "UserDict(d)": lambda: collections.UserDict(_mine({"k": "v"}))["k"],
    "UserList(list)": lambda: collections.UserList(_mine(["v"]))[0],
    "deque(list)": lambda: collections.deque(_mine(["v"])).popleft(),
    "Counter(list)": lambda: next(iter(collections.Counter(_mine(["v"])))),
    "MappingProxyType": lambda: types.MappingProxyType(_mine({"k": "v"}))["k"],
    "values().mapping": lambda: _mine({"k": "v"}).values().mapping["k"],
    "keys() - set": lambda: next(iter(_mine({"k": "v", "n": 1}).keys() - {"n"})),
    "reversed(values())": lambda: next(reversed(_mine({"k": "v"}).values())),
    "dict comprehension": lambda: {k: v for k, v in _mine({"k": "v"}).items()}["k"],
    "zip(*items())": lambda: list(zip(*_mine({"k": "v"}).items(), strict=True))[1][0],
    "dict(items())": lambda: dict(_mine({"k": "v"}).items())["k"],
    "filter": lambda: next(filter(None, _mine(["v"]))),
    "sum of tuples": lambda: sum([_mine(("v",))], _EMPTY)[0],
    "set.pop": lambda: _mine({"v"}).pop(),
    "list.pop(0)": lambda: _mine(["v", "w"]).pop(0),
    "Holder(**d)": lambda: Holder(**_mine({"x": "v"})).x,
    "dataclasses.asdict": lambda: dataclasses.asdict(Holder(_mine({"k": "v"})))["x"]["k"],
    "dataclasses.astuple": lambda: dataclasses.astuple(Holder(_mine(["v"])))[0][0],
    "copy.copy item": lambda: copy.copy(_mine({"k": "v"}))["k"],
    "deepcopy item": lambda: copy.deepcopy(_mine(["v"]))[0],
    "unpickled item": lambda: pickle.loads(pickle.dumps(_mine({"k": "v"})))["k"],
    # Rows of a query result: tuples (and frozensets) inside a labelled list or dict.
    "row tuple in a list": lambda: _mine([("1", "v")])[0][1],
    "row tuple unpacked in a loop": lambda: [email for _id, email in _mine([("1", "v")])][0],
    "row tuple in a dict": lambda: _mine({"r": ("1", "v")})["r"][1],
    "tuple in a tuple": lambda: _mine((("v",),))[0][0],
    "frozenset in a list": lambda: next(iter(_mine([frozenset({"v"})])[0])),
    "row tuple of a dict's values()": lambda: next(iter(_mine({"r": ("v",)}).values()))[0],
}


@pytest.mark.parametrize("read", READS.values(), ids=READS.keys())
def test_an_item_read_out_of_a_labelled_container_keeps_its_labels_and_tenant(
    read: Callable[[], Any], trace_guard: pg.Guard
) -> None:
    assert _whose(read()) == ("contoso", True)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[ConsentStore]:
    consent_store = ConsentStore(tmp_path / "audit.log", tenants=["contoso", "fabrikam"])
    yield consent_store
    consent_store.close()


@pg.purpose("advertising")
def choose_ad(email: object) -> str:
    return "house ad"


def test_an_email_read_out_of_a_row_of_a_labelled_result_is_refused(store: ConsentStore) -> None:
    """``for id, email in rows: choose_ad(email)`` is checked on the email itself, outside any zone."""
    pg.configure("trust-center", mode="enforce", consents=store)
    rows = pg.label([("1", "a@example.com"), ("2", "b@example.com")], EMAIL, tenant="fabrikam")
    for _id, email in rows:
        with pytest.raises(pg.PurposeViolation) as refused:
            choose_ad(email)
        assert [(v.category, v.via, v.tenant) for v in refused.value.violations] == [
            (EMAIL, "argument", "fabrikam")
        ]


def test_a_row_read_twice_is_equal_and_still_a_tuple(trace_guard: pg.Guard) -> None:
    rows = _mine([("1", "a@example.com")])
    assert rows[0] == rows[0] == ("1", "a@example.com") and isinstance(rows[0], tuple)
    assert rows.index(("1", "a@example.com")) == 0 and ("1", "a@example.com") in rows


# -- the libraries still work ------------------------------------------------------------

DOCUMENT = {"to": "a@example.com", "tags": ["x", "y"], "row": ("r", 2), "n": 3, "ok": True, "none": None}


def test_json_writes_a_labelled_document_as_the_plain_one(trace_guard: pg.Guard) -> None:
    assert json.dumps(_mine(DOCUMENT), sort_keys=True) == json.dumps(DOCUMENT, sort_keys=True)
    assert json.dumps(_mine([("1", "a@example.com")])) == '[["1", "a@example.com"]]'
    assert json.loads(json.dumps(_mine(DOCUMENT)))["row"] == ["r", 2]


@pytest.mark.parametrize(
    "duplicate",
    [copy.copy, copy.deepcopy, lambda v: pickle.loads(pickle.dumps(v))],
    ids=["copy", "deepcopy", "pickle"],
)
def test_copies_are_equal_and_keep_labels_and_tenant(
    duplicate: Callable[[Any], Any], trace_guard: pg.Guard
) -> None:
    copied = duplicate(_mine(DOCUMENT))
    assert copied == DOCUMENT and isinstance(copied, dict)
    assert _whose(copied) == ("contoso", True)


def test_dataclasses_asdict_of_a_labelled_dict_is_equal_and_stays_contosos(trace_guard: pg.Guard) -> None:
    made = dataclasses.asdict(Holder(_mine(DOCUMENT)))
    assert made == {"x": DOCUMENT}
    assert _whose(made["x"]) == ("contoso", True)


def test_pydantic_validates_a_labelled_dict(trace_guard: pg.Guard) -> None:
    class Message(pydantic.BaseModel):
        to: str
        tags: list[str]
        row: tuple[str, int]
        n: int

    labelled = _mine(DOCUMENT)
    for made in (Message.model_validate(labelled), Message(**labelled)):
        assert made.model_dump() == {"to": "a@example.com", "tags": ["x", "y"], "row": ("r", 2), "n": 3}
