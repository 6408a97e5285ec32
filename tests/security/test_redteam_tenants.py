"""Red team: tenants on the instance. Every way of deriving a value from a
labelled str, bytes, number or container keeps whose data it is; a value of
one tenant is never taken for another's, and no tenant's consent covers it."""

from __future__ import annotations

import copy
import dataclasses
import json
import pickle
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import purposeguard as pg
from purposeguard._labels import tenant_of_values
from purposeguard.consent import ConsentStore

EMAIL = "customer_data.content.email"
MIXED = "(several tenants)"


def _mine(value: Any) -> Any:
    return pg.label(value, EMAIL, tenant="contoso")


def _theirs(value: Any) -> Any:
    return pg.label(value, EMAIL, tenant="fabrikam")


@pytest.fixture
def store(tmp_path: Path) -> Iterator[ConsentStore]:
    consent_store = ConsentStore(tmp_path / "audit.log", tenants=["contoso", "fabrikam"])
    consent_store.grant("contoso", "improvement", ["customer_data"], granted_by="admin@contoso")
    yield consent_store
    consent_store.close()


@pg.purpose("improvement")
def train(value: object) -> int:
    return 1


def _whose(value: Any) -> tuple[str | None, bool]:
    """The tenant a value is decided for, and whether it is still labelled (no value printed)."""
    return tenant_of_values([value]), EMAIL in pg.labels_of(value)


# -- type(x)(...) builds a value with no tenant of its own ---------------------------------


RECONSTRUCTIONS: dict[str, Callable[[], Any]] = {
    "str copy": lambda: (lambda v: type(v)(v))(_theirs("fabrikam's mail")),
    "str of a derived text": lambda: (lambda v: type(v)(v.upper()))(_theirs("fabrikam's mail")),
    "bytes copy": lambda: (lambda v: type(v)(v))(_theirs(b"fabrikam's mail")),
    "int copy": lambda: (lambda v: type(v)(int(v)))(_theirs(4711)),
    "float copy": lambda: (lambda v: type(v)(float(v)))(_theirs(47.11)),
    "list of plain items": lambda: (lambda v: type(v)(list.__iter__(v)))(_theirs(["fabrikam's mail"])),
    "set copy (C reads the storage)": lambda: (lambda v: type(v)(v))(_theirs({"fabrikam's mail"})),
    "dict of plain items": lambda: (lambda v: type(v)(dict.items(v)))(_theirs({"k": "fabrikam's mail"})),
}


@pytest.mark.parametrize("make", RECONSTRUCTIONS.values(), ids=RECONSTRUCTIONS.keys())
def test_a_value_rebuilt_by_calling_its_class_is_never_the_zones_tenants(
    make: Callable[[], Any], store: ConsentStore
) -> None:
    """``type(x)(...)`` of fabrikam's value inside contoso's zone, where contoso consented:
    the rebuilt value keeps its labels, belongs to no tenant and is refused."""
    pg.configure("trust-center", mode="enforce", consents=store)
    with pg.zone(tenant="contoso"):
        rebuilt = make()
        assert _whose(rebuilt) == (MIXED, True)
        with pytest.raises(pg.PurposeViolation) as refused:
            train(rebuilt)
    assert refused.value.violations[0].tenant == MIXED


def test_a_containers_rebuild_from_its_own_items_keeps_their_tenant(store: ConsentStore) -> None:
    """``dataclasses.asdict`` rebuilds a labelled dict with ``type(d)(...)``: its items
    still name contoso, so contoso's own consent still covers it (no false refusal)."""

    @dataclasses.dataclass
    class Message:
        fields: dict[str, str]

    pg.configure("trust-center", mode="enforce", consents=store)
    as_dict = dataclasses.asdict(Message(_mine({"body": "contoso's mail"})))
    assert _whose(as_dict["fields"]) == ("contoso", True)
    assert pg.tenant_of(as_dict["fields"]["body"]) == "contoso"
    assert train(as_dict) == 1
    listed = _mine(["contoso's mail"])
    assert _whose(type(listed)(listed)) == ("contoso", True)


# -- derivations keep the tenant ------------------------------------------------------------

TEXT = "Quarterly numbers, call me\nnext week"

STR_DERIVATIONS: dict[str, Callable[[Any], Any]] = {
    "upper": lambda s: s.upper(),
    "casefold": lambda s: s.casefold(),
    "title": lambda s: s.title(),
    "strip": lambda s: s.strip("Q"),
    "center": lambda s: s.center(80, "*"),
    "zfill": lambda s: s.zfill(80),
    "removeprefix": lambda s: s.removeprefix("Quarterly"),
    "translate": lambda s: s.translate({81: 113}),
    "expandtabs": lambda s: s.expandtabs(2),
    "replace": lambda s: s.replace("call", "mail"),
    "slice": lambda s: s[3:9],
    "index": lambda s: s[0],
    "reversed": lambda s: next(reversed(s)),
    "iteration": lambda s: next(iter(s)),
    "repeat": lambda s: s * 2,
    "repeat on the right": lambda s: 2 * s,
    "split": lambda s: s.split(",")[1],
    "rsplit": lambda s: s.rsplit(" ", 1)[0],
    "splitlines": lambda s: s.splitlines()[1],
    "partition": lambda s: s.partition(",")[2],
    "rpartition": lambda s: s.rpartition(" ")[0],
    "format of the value": lambda s: s.format(),
    "format_map": lambda s: "{x}".format_map({"x": s}),
    "percent": lambda s: "<%s>" % s,
    "percent by name": lambda s: "%(x)s" % {"x": s},
    "lone f-string": lambda s: f"{s}",
    "f-string with a spec": lambda s: f"{s:>60}",
    "format()": lambda s: format(s, "^70"),
    "repr": lambda s: repr(s),
    "str()": lambda s: str(s),
    "plain + value": lambda s: "re: " + s,
    "value + plain": lambda s: s + " (sent)",
    "value as separator": lambda s: s.join(["a", "b"]),
    "encode": lambda s: s.encode(),
    "encode and decode": lambda s: s.encode("utf-16").decode("utf-16"),
    "copy.copy": lambda s: copy.copy(s),
    "copy.deepcopy": lambda s: copy.deepcopy(s),
    "pickle": lambda s: pickle.loads(pickle.dumps(s)),
}


@pytest.mark.parametrize("derive", STR_DERIVATIONS.values(), ids=STR_DERIVATIONS.keys())
def test_every_str_derivation_keeps_the_tenant(derive: Callable[[Any], Any], trace_guard: pg.Guard) -> None:
    """Each derivation of contoso's labelled str is contoso's labelled value."""
    assert _whose(derive(_mine(TEXT))) == ("contoso", True)


BYTES_DERIVATIONS: dict[str, Callable[[Any], Any]] = {
    "upper": lambda b: b.upper(),
    "slice": lambda b: b[2:8],
    "split": lambda b: b.split(b",")[0],
    "partition": lambda b: b.partition(b" ")[2],
    "replace": lambda b: b.replace(b"call", b"mail"),
    "plain + value": lambda b: b"re: " + b,
    "value + plain": lambda b: b + b"!",
    "percent": lambda b: b"<%s>" % b,
    "repeat": lambda b: b * 3,
    "decode": lambda b: b.decode(),
    "hex": lambda b: b.hex(),
    "bytes()": lambda b: bytes(b),
    "pickle": lambda b: pickle.loads(pickle.dumps(b)),
    "copy.deepcopy": lambda b: copy.deepcopy(b),
}


@pytest.mark.parametrize("derive", BYTES_DERIVATIONS.values(), ids=BYTES_DERIVATIONS.keys())
def test_every_bytes_derivation_keeps_the_tenant(derive: Callable[[Any], Any], trace_guard: pg.Guard) -> None:
    assert _whose(derive(_mine(TEXT.encode()))) == ("contoso", True)


NUMBER_TEXT: dict[str, Callable[[Any], Any]] = {
    "str": lambda n: str(n),
    "repr": lambda n: repr(n),
    "format": lambda n: format(n, "08"),
    "lone f-string": lambda n: f"{n}",
    "pickle": lambda n: pickle.loads(pickle.dumps(n)),
    "copy.copy": lambda n: copy.copy(n),
}


@pytest.mark.parametrize("number", [4711, 47.5], ids=["int", "float"])
@pytest.mark.parametrize("derive", NUMBER_TEXT.values(), ids=NUMBER_TEXT.keys())
def test_a_labelled_numbers_text_and_copies_keep_the_tenant(
    derive: Callable[[Any], Any], number: float, trace_guard: pg.Guard
) -> None:
    assert _whose(derive(_mine(number))) == ("contoso", True)


COMBINATIONS: dict[str, Callable[[Any, Any], Any]] = {
    "str +": lambda a, b: a + b,
    "str + reversed": lambda a, b: b + a,
    "replace with the other": lambda a, b: a.replace("a", b),
    "separator of the other": lambda a, b: a.join(["x", b]),
    "template of the other": lambda a, b: b.format(a) if "{" in b else b + a,
    "bytes +": lambda a, b: a.encode() + b.encode(),
    "bytes join": lambda a, b: a.encode().join([b.encode()]),
    "list +": lambda a, b: _mine([a]) + _theirs([b]),
    "dict |": lambda a, b: _mine({"a": a}) | _theirs({"b": b}),
    "set |": lambda a, b: _mine({a}) | _theirs({b}),
    "tuple +": lambda a, b: _mine((a,)) + _theirs((b,)),
    "item of the other in a container": lambda a, b: _mine([b])[0],
    "key of the other in a dict": lambda a, b: next(iter(_mine({b: 1}))),
    "the other relabelled for this tenant": lambda a, b: pg.label(b, EMAIL, tenant="contoso"),
}


# Built in C from a plain template or separator: no labels, the zone sees both tenants.
IN_THE_ZONE: dict[str, Callable[[Any, Any], Any]] = {
    "plain join": lambda a, b: "".join([a, b]),
    "plain format": lambda a, b: "{} {}".format(a, b),
    "plain percent": lambda a, b: "%s %s" % (a, b),
    "f-string": lambda a, b: f"{a} {b}",
}


@pytest.mark.parametrize("combine", IN_THE_ZONE.values(), ids=IN_THE_ZONE.keys())
def test_two_tenants_data_laundered_together_is_refused_by_the_zone(
    combine: Callable[[Any, Any], Any], store: ConsentStore
) -> None:
    """The zone holds both tenants' data: contoso's consent does not cover what is built from it."""
    pg.configure("trust-center", mode="enforce", context_mode="enforce", consents=store)
    with pg.zone(tenant="contoso"), pg.testing.capture() as violations:
        both = combine(_mine("contoso's mail"), _theirs("fabrikam's mail"))
        with pytest.raises(pg.PurposeViolation):
            train(both)
    assert [(v.via, v.tenant) for v in violations] == [("context", MIXED)]


@pg.purpose("improvement")
def train_on(*signals: object) -> int:
    return len(signals)


def _laundered_beside_own(store: ConsentStore, call: Callable[[Any, Any], Any]) -> list[Any]:
    """Fabrikam's text laundered (json) in contoso's zone, handed on beside a
    value of contoso's own that contoso's consent allows: the violations."""
    pg.configure("trust-center", mode="enforce", context_mode="enforce", consents=store)
    with pg.zone(tenant="contoso"), pg.testing.capture() as violations:
        own = _mine("contoso's mail")
        # The control: before fabrikam's data, contoso's own value is allowed by its consent.
        assert train_on(own) == 1
        laundered = json.dumps({"mail": _theirs("fabrikam's mail")})
        with pytest.raises(pg.PurposeViolation):
            call(laundered, own)
    return [(v.via, v.tenant) for v in violations]


def test_a_consented_argument_of_this_tenant_never_clears_another_tenants_data_in_the_zone(
    store: ConsentStore,
) -> None:
    """The zone's copy of the category is several tenants' data: checked as such, not as the
    argument's (whose tenant consented)."""
    assert _laundered_beside_own(store, lambda laundered, own: train_on(laundered, own)) == [
        ("context", MIXED)
    ]


def test_pg_check_of_both_is_refused_as_several_tenants_data(store: ConsentStore) -> None:
    refused = _laundered_beside_own(store, lambda laundered, own: pg.check([laundered, own], "improvement"))
    assert refused == [("context", MIXED)]


@pytest.mark.parametrize("combine", COMBINATIONS.values(), ids=COMBINATIONS.keys())
def test_two_tenants_data_combined_belongs_to_neither(
    combine: Callable[[Any, Any], Any], store: ConsentStore
) -> None:
    """contoso's and fabrikam's data together is no tenant's: contoso's consent does not cover it."""
    pg.configure("trust-center", mode="enforce", consents=store)
    with pg.zone(tenant="contoso"):
        both = combine(_mine("contoso's mail"), _theirs("fabrikam's mail {}"))
        assert _whose(both) == (MIXED, True)
        with pytest.raises(pg.PurposeViolation) as refused:
            train(both)
    assert refused.value.violations[0].tenant == MIXED


def test_another_tenants_value_inside_a_containers_of_this_tenant_is_refused(store: ConsentStore) -> None:
    """A list labelled for contoso that holds fabrikam's value is not covered by contoso's consent."""
    pg.configure("trust-center", mode="enforce", consents=store)
    smuggled = _mine(["contoso's note", _theirs("fabrikam's mail")])
    with pg.zone(tenant="contoso"), pytest.raises(pg.PurposeViolation) as refused:
        train(smuggled)
    assert refused.value.violations[0].tenant == MIXED


# -- containers -----------------------------------------------------------------------------

CONTAINER_DERIVATIONS: dict[str, Callable[[], Any]] = {
    "list slice": lambda: _mine(["a", "b", "c"])[:2],
    "item of a list slice": lambda: _mine(["a", "b", "c"])[1:][0],
    "tuple slice": lambda: _mine(("a", "b", "c"))[1:],
    "item of a tuple slice": lambda: _mine(("a", "b", "c"))[::2][1],
    "list +": lambda: _mine(["a"]) + ["b"],
    "plain list + labelled": lambda: ["b"] + _mine(["a"]),
    "list *": lambda: _mine(["a"]) * 2,
    "tuple +": lambda: ("b",) + _mine(("a",)),
    "dict |": lambda: {"b": 1} | _mine({"a": "x"}),
    "set -": lambda: _mine({"a", "b"}) - {"b"},
    "set union": lambda: _mine({"a"}).union({"b"}),
    "frozenset &": lambda: _mine(frozenset({"a", "b"})) & {"a"},
    "dict copy": lambda: _mine({"a": "x"}).copy(),
    "copy.copy": lambda: copy.copy(_mine(["a"])),
    "copy.deepcopy": lambda: copy.deepcopy(_mine({"a": ["x"]})),
    "pickle": lambda: pickle.loads(pickle.dumps(_mine({"a": "x"}))),
    "item of a deep copy": lambda: copy.deepcopy(_mine({"a": "x"}))["a"],
    "item of an unpickled dict": lambda: pickle.loads(pickle.dumps(_mine({"a": "x"})))["a"],
}


@pytest.mark.parametrize("derive", CONTAINER_DERIVATIONS.values(), ids=CONTAINER_DERIVATIONS.keys())
def test_containers_derived_from_a_labelled_one_keep_its_tenant(
    derive: Callable[[], Any], trace_guard: pg.Guard
) -> None:
    assert _whose(derive()) == ("contoso", True)


def test_a_slice_of_another_tenants_list_is_refused_in_a_consenting_zone(store: ConsentStore) -> None:
    """Paging through fabrikam's list inside contoso's zone: each page is still fabrikam's."""
    pg.configure("trust-center", mode="enforce", consents=store)
    with pg.zone(tenant="contoso"):
        page = _theirs(["fabrikam's first mail", "fabrikam's second mail"])[:1]
        with pytest.raises(pg.PurposeViolation) as refused:
            train(page)
    assert refused.value.violations[0].tenant == "fabrikam"


def test_no_tenant_can_be_named_several_tenants_to_hold_consent_for_mixed_data(tmp_path: Path) -> None:
    """A grant to a tenant spelled like the marker for mixed data would cover every mix: refused."""
    consent_store = ConsentStore(tmp_path / "audit.log")
    try:
        with pytest.raises(pg.PolicyError):
            consent_store.grant(MIXED, "improvement", ["customer_data"], granted_by="admin")
        pg.configure("trust-center", mode="enforce", consents=consent_store)
        with pytest.raises(pg.PurposeViolation):
            train(_mine("a") + _theirs("b"))
    finally:
        consent_store.close()


@dataclasses.dataclass
class Note:
    body: str


OBJECT_COPIES: dict[str, Callable[[Any], Any]] = {
    "as labelled": lambda o: o,
    "copy.copy": copy.copy,
    "copy.deepcopy": copy.deepcopy,
    "pickle": lambda o: pickle.loads(pickle.dumps(o)),
}


@pytest.mark.parametrize("duplicate", OBJECT_COPIES.values(), ids=OBJECT_COPIES.keys())
def test_a_labelled_objects_copies_keep_its_tenant(
    duplicate: Callable[[Any], Any], trace_guard: pg.Guard
) -> None:
    assert _whose(duplicate(_mine(Note("contoso's note")))) == ("contoso", True)


def test_an_object_labelled_again_for_another_tenant_belongs_to_neither(trace_guard: pg.Guard) -> None:
    note = _mine(Note("contoso's note"))
    assert _whose(pg.label(note, EMAIL, tenant="fabrikam")) == (MIXED, True)


@pytest.mark.parametrize("flatten", ["as_string", "as_bytes"])
def test_a_mail_flattened_from_another_tenants_data_stays_theirs(store: ConsentStore, flatten: str) -> None:
    """``message.as_string()`` relabels the text it flattens: with the tenant of what built it."""
    import email.message

    from purposeguard.integrations import smtp as pg_smtp

    pg.configure("trust-center", mode="enforce", consents=store)
    pg_smtp.instrument()
    try:
        message = email.message.EmailMessage()
        message["Subject"] = "digest"
        message.set_content(_theirs("fabrikam's quarterly numbers"))
        text = getattr(message, flatten)()
        assert pg.tenant_of(text) == "fabrikam"
        with pg.zone(tenant="contoso"), pytest.raises(pg.PurposeViolation) as refused:
            train(text)
        assert refused.value.violations[0].tenant == "fabrikam"

        message["X-Account"] = _mine("contoso's account")
        assert pg.tenant_of(getattr(message, flatten)()) == MIXED
    finally:
        pg_smtp.uninstrument()


def test_a_zone_nested_for_another_tenant_never_releases_what_the_outer_zone_saw(store: ConsentStore) -> None:
    """Text rebuilt from fabrikam's mail in fabrikam's zone, used in a zone nested for contoso (who consented)."""
    pg.configure("trust-center", mode="enforce", context_mode="enforce", consents=store)
    with pg.zone(tenant="fabrikam"):
        laundered = f"sample: {pg.label('fabrikam mail', EMAIL)}"
        with pg.zone(tenant="contoso"), pytest.raises(pg.PurposeViolation) as refused:
            train(laundered)
    assert refused.value.violations[0].tenant == MIXED


def test_a_tenants_zone_hands_its_tenant_back_to_the_enclosing_zone(store: ConsentStore) -> None:
    """A batch job inside one zone, a zone per tenant in turn: fabrikam's data is not contoso's later."""
    pg.configure("trust-center", mode="enforce", context_mode="enforce", consents=store)
    carried: list[str] = []
    with pg.zone():
        with pg.zone(tenant="fabrikam"):
            carried.append(f"sample: {pg.label('fabrikam mail', EMAIL)}")
        with pg.zone(tenant="contoso"), pytest.raises(pg.PurposeViolation) as refused:
            train(carried[0])
    assert refused.value.violations[0].tenant == MIXED


def test_nested_zones_of_one_tenant_or_over_an_empty_zone_keep_its_consent(store: ConsentStore) -> None:
    pg.configure("trust-center", mode="enforce", context_mode="enforce", consents=store)
    with pg.testing.assert_no_violations():
        with pg.zone(tenant="contoso"):
            laundered = f"sample: {pg.label('contoso mail', EMAIL)}"
            with pg.zone(tenant="contoso"):
                train(laundered)
        with pg.zone(tenant="fabrikam"), pg.zone(tenant="contoso"):
            train(f"sample: {pg.label('contoso mail', EMAIL)}")
        # Side by side, not nested: each tenant's zone starts clean.
        with pg.zone(tenant="fabrikam"):
            f"sample: {pg.label('fabrikam mail', EMAIL)}"
        with pg.zone(tenant="contoso"):
            train(f"sample: {pg.label('contoso mail', EMAIL)}")


def test_a_zone_nested_for_another_tenant_that_reads_nothing_hands_nothing_back_as_theirs(
    store: ConsentStore,
) -> None:
    """A zone opened for fabrikam to send a notification, reading nothing, inside contoso's."""
    pg.configure("trust-center", mode="enforce", context_mode="enforce", consents=store)
    with pg.testing.assert_no_violations(), pg.zone(tenant="contoso"):
        laundered = f"sample: {pg.label('contoso mail', EMAIL)}"
        with pg.zone(tenant="fabrikam"):
            pass
        train(laundered)
