"""Labels follow str and bytes through the listed operations and stay usable."""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import pickle
import re
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import pytest

import purposeguard as pg

EMAIL = "customer_data.content.email"
DOC = "customer_data.content.document"

body = pg.label("Quarterly numbers attached. Call me at noon.", EMAIL, tenant="contoso")
doc = pg.label("Design review notes", DOC)

KEEPS_LABEL: list[tuple[str, Callable[[], Any], frozenset[str]]] = [
    ("concat right", lambda: body + " -- sent", frozenset({EMAIL})),
    ("concat left", lambda: "Fwd: " + body, frozenset({EMAIL})),
    ("concat two labels", lambda: body + doc, frozenset({EMAIL, DOC})),
    ("percent labelled template", lambda: pg.label("Re: %s", EMAIL) % "x", frozenset({EMAIL})),
    ("percent single labelled operand", lambda: "Re: %s" % body, frozenset({EMAIL})),  # noqa: UP031
    ("format on labelled template", lambda: pg.label("{} said", EMAIL).format("x"), frozenset({EMAIL})),
    (
        "format with labelled argument of labelled template",
        lambda: doc.replace("notes", "{}").format(body),
        frozenset({EMAIL, DOC}),
    ),
    ("slice", lambda: body[3:10], frozenset({EMAIL})),
    ("index", lambda: body[0], frozenset({EMAIL})),
    ("upper", lambda: body.upper(), frozenset({EMAIL})),
    ("lower", lambda: body.lower(), frozenset({EMAIL})),
    ("strip", lambda: (" " + body + " ").strip(), frozenset({EMAIL})),
    ("replace", lambda: body.replace("noon", "one"), frozenset({EMAIL})),
    ("replace with labelled new", lambda: "a b".replace("b", doc), frozenset()),  # plain receiver: zone's job
    ("split", lambda: body.split()[1], frozenset({EMAIL})),
    ("join labelled separator", lambda: pg.label(", ", EMAIL).join(["a", "b"]), frozenset({EMAIL})),
    ("join labelled items on labelled separator", lambda: body.join([doc, "x"]), frozenset({EMAIL, DOC})),
    ("encode", lambda: body.encode(), frozenset({EMAIL})),
    ("encode then decode", lambda: body.encode("utf-8").decode("utf-8"), frozenset({EMAIL})),
    ("bytes slice", lambda: body.encode()[2:5], frozenset({EMAIL})),
    ("bytes upper", lambda: body.encode().upper(), frozenset({EMAIL})),
    ("bytes concat left", lambda: b"> " + body.encode(), frozenset({EMAIL})),
    ("str()", lambda: str(body), frozenset({EMAIL})),
    ("lone f-string", lambda: f"{body}", frozenset({EMAIL})),
    ("format spec", lambda: format(body, ">60"), frozenset({EMAIL})),
    ("repeat", lambda: body * 2, frozenset({EMAIL})),
    ("partition", lambda: body.partition(".")[2], frozenset({EMAIL})),
    ("iterate characters", lambda: list(body)[0], frozenset({EMAIL})),
    ("splitlines", lambda: (body + "\nline").splitlines()[1], frozenset({EMAIL})),
]


@pytest.mark.parametrize(("name", "derive", "expected"), KEEPS_LABEL, ids=[k[0] for k in KEEPS_LABEL])
def test_derived_values_keep_the_union_of_labels(
    name: str, derive: Callable[[], Any], expected: frozenset[str]
) -> None:
    assert pg.labels_of(derive()) == expected


def test_labelled_values_equal_and_hash_like_the_plain_ones() -> None:
    plain = "Quarterly numbers attached. Call me at noon."
    assert body == plain and hash(body) == hash(plain)
    assert {plain: 1}[body] == 1
    assert isinstance(body, str)
    assert hashlib.sha256(body.encode()).hexdigest() == hashlib.sha256(plain.encode()).hexdigest()


def test_json_and_re_work_on_labelled_values() -> None:
    assert json.loads(json.dumps({"body": body})) == {"body": str.__str__(body)}
    assert json.dumps(body, indent=2) == json.dumps(str.__str__(body))
    match = re.search(r"at (\w+)", body)
    assert match is not None and match.group(1) == "noon"
    assert re.sub("noon", "one", body).endswith("one.")


def test_sqlite_parameters_accept_labelled_values(tmp_path: Path) -> None:
    db = sqlite3.connect(tmp_path / "mail.sqlite")
    db.execute("create table mail (body text, raw blob)")
    db.execute("insert into mail values (?, ?)", (body, body.encode()))
    db.commit()
    assert db.execute("select body, raw from mail").fetchone() == (str.__str__(body), body.encode())
    assert db.execute("select count(*) from mail where body = ?", (body,)).fetchone() == (1,)
    db.close()


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_labels_survive_pickle(protocol: int) -> None:
    for value in (body, body.encode(), pg.label([1, 2], EMAIL), pg.label({"a": 1}, DOC)):
        restored = pickle.loads(pickle.dumps(value, protocol))
        assert restored == value
        assert pg.labels_of(restored) == pg.labels_of(value)
    assert pg.tenant_of(pickle.loads(pickle.dumps(body, protocol))) == "contoso"


def test_copy_keeps_labels() -> None:
    assert pg.labels_of(copy.copy(body)) == {EMAIL}
    assert pg.labels_of(copy.deepcopy(pg.label([body], DOC))) >= {DOC}


def test_labelling_twice_adds_categories() -> None:
    both = pg.label(body, DOC)
    assert pg.labels_of(both) == {EMAIL, DOC}
    assert pg.tenant_of(both) == "contoso"


def test_unknown_category_raises_when_labelling() -> None:
    with pytest.raises(pg.UnknownKeyError):
        pg.label("x", "customer_data.content.fax")
    with pytest.raises(pg.UnknownKeyError):
        pg.Category("mail")
    with pytest.raises(TypeError):
        pg.label("x")


def test_plain_values_have_no_labels() -> None:
    assert pg.labels_of("plain") == frozenset()
    assert pg.labels_of(42) == frozenset()
    assert pg.labels_of(None) == frozenset()


def test_labelled_numbers_stay_numbers_for_json_and_sqlite(tmp_path: Path) -> None:
    count = pg.label(12, "usage_data")
    ratio = pg.label(0.75, "usage_data", tenant="contoso")
    assert json.dumps({"count": count, "ratio": ratio}) == '{"count": 12, "ratio": 0.75}'
    db = sqlite3.connect(tmp_path / "n.sqlite")
    assert db.execute("select ?, ?", (count, ratio)).fetchone() == (12, 0.75)
    db.close()
    assert pg.labels_of(count) == {"usage_data"} and pg.tenant_of(ratio) == "contoso"
    assert count + 1 == 13 and isinstance(count, int)
    assert pg.labels_of(pickle.loads(pickle.dumps(ratio))) == {"usage_data"}
    assert pg.labels_of(pg.label(count, "customer_data")) == {"usage_data", "customer_data"}


def test_containers_are_labelled_as_a_shallow_copy_of_their_own_type() -> None:
    recipients = ["a@example.com"]
    labelled = pg.label(recipients, "customer_data")
    labelled.append("b@example.com")
    assert recipients == ["a@example.com"], "the labelled list is a copy: label where you build it"
    assert isinstance(labelled, list) and labelled == ["a@example.com", "b@example.com"]
    assert pg.labels_of(labelled) == {"customer_data"}


def test_objects_that_support_weak_references_keep_their_identity() -> None:
    class Mailbox:
        def __init__(self) -> None:
            self.owner = "a"

    box = Mailbox()
    assert pg.label(box, "customer_data") is box
    assert pg.labels_of(box) == {"customer_data"}
    other = Mailbox()
    assert pg.labels_of(other) == frozenset()

    @pg.purpose("advertising")
    def ads(thing: Any) -> None:
        pass

    ads(other)  # the type was seen label-free first...
    with pytest.raises(pg.PurposeViolation):
        ads(pg.label(other, "customer_data"))  # ...and still caught once labelled


@dataclasses.dataclass
class Message:
    subject: str
    body: Annotated[str, pg.Category(EMAIL)]
    attachments: Annotated[list[str] | None, pg.Category(DOC)] = None


def test_annotated_dataclass_fields_carry_their_categories() -> None:
    assert pg.labels_of(Message("hi", "text")) == {EMAIL}
    assert pg.labels_of(Message("hi", "text", ["a.pdf"])) == {EMAIL, DOC}


def test_annotated_pydantic_fields_carry_their_categories() -> None:
    import pydantic  # in the test extra: a missing install must fail, not skip

    class Ticket(pydantic.BaseModel):
        title: str
        transcript: Annotated[str, pg.Category("customer_data.content.voice")]

    assert pg.labels_of(Ticket(title="t", transcript="hello")) == {"customer_data.content.voice"}

    @pg.purpose("marketing.direct")
    def campaign(ticket: Any) -> None:
        pass

    with pytest.raises(pg.PurposeViolation):
        campaign(Ticket(title="t", transcript="hello"))


def test_produces_labels_returns_and_yields() -> None:
    @pg.produces(EMAIL)
    def read_body() -> str:
        return "hello"

    @pg.produces(EMAIL)
    def read_bodies() -> Any:
        yield "a"
        yield "b"

    assert pg.labels_of(read_body()) == {EMAIL}
    assert [pg.labels_of(x) for x in read_bodies()] == [{EMAIL}, {EMAIL}]
    with pytest.raises(pg.UnknownKeyError):
        pg.produces("customer_data.nope")


async def test_produces_on_coroutines_and_async_generators() -> None:
    @pg.produces(DOC)
    async def fetch() -> str:
        return "doc"

    @pg.produces(DOC)
    async def stream() -> Any:
        yield "a"

    assert pg.labels_of(await fetch()) == {DOC}
    assert [pg.labels_of(x) async for x in stream()] == [{DOC}]


def test_produces_generator_keeps_send_throw_and_return_value() -> None:
    @pg.produces(EMAIL)
    def echo() -> Any:
        got = yield "ready"
        try:
            yield f"got {got}"
        except KeyError:
            yield "caught"
        return "done"

    gen = echo()
    assert next(gen) == "ready"
    reply = gen.send("hello")
    assert reply == "got hello" and pg.labels_of(reply) == {EMAIL}
    assert gen.throw(KeyError("x")) == "caught"
    with pytest.raises(StopIteration) as stop:
        next(gen)
    assert stop.value.value == "done"


async def test_produces_async_generator_keeps_asend() -> None:
    @pg.produces(EMAIL)
    async def echo() -> Any:
        got = yield "ready"
        yield f"got {got}"

    gen = echo()
    assert await gen.asend(None) == "ready"
    reply = await gen.asend("hi")
    assert reply == "got hi" and pg.labels_of(reply) == {EMAIL}
    await gen.aclose()


def test_labelled_template_with_labelled_operand_keeps_both() -> None:
    assert pg.labels_of(pg.label("%s", EMAIL) % doc) == {EMAIL, DOC}
    assert pg.labels_of(pg.label("{}", EMAIL).format(doc)) == {EMAIL, DOC}


def test_labelled_bytes_methods_keep_their_parameters() -> None:
    raw = pg.label(b"hello", "customer_data")
    assert raw.translate(None, b"l") == b"heo" and pg.labels_of(raw.translate(None, b"l")) == {
        "customer_data"
    }
    assert raw.hex(":") == "68:65:6c:6c:6f" and pg.labels_of(raw.hex()) == {"customer_data"}
    assert raw[0] == 104 and type(raw[0]) is int
    assert pg.labels_of(raw[1:3]) == {"customer_data"}
    assert type(bytearray(b"x") + raw) is bytearray


def test_many_tenants_make_no_labelled_classes() -> None:
    from purposeguard import _labels

    first = pg.label("x", EMAIL, tenant="tenant-00000")
    classes = len(_labels._CLASSES)
    for n in range(1, 5000):
        value = pg.label("x", EMAIL, tenant=f"tenant-{n:05d}")
        assert pg.tenant_of(value) == f"tenant-{n:05d}"
        assert type(value) is type(first)  # the tenant is on the instance
    assert len(_labels._CLASSES) == classes
    assert pg.tenant_of(first) == "tenant-00000"


def test_one_character_results_keep_their_own_labels_and_tenant() -> None:
    # Each value's own labels and tenant, even for the same character taken
    # from values of other label sets and other tenants: a one-character
    # result is never shared between them.
    values = [
        (pg.label("a note", EMAIL), frozenset({EMAIL}), None),
        (pg.label("a note", DOC), frozenset({DOC}), None),
        (pg.label("a note", EMAIL, tenant="contoso"), frozenset({EMAIL}), "contoso"),
        (pg.label("a note", EMAIL, tenant="fabrikam"), frozenset({EMAIL}), "fabrikam"),
        (pg.label(pg.label("a note", EMAIL), DOC), frozenset({EMAIL, DOC}), None),
    ]
    for _ in range(3):  # taken again: still each value's own
        for value, labels, tenant in values:
            for char in (value[0], value[2], value[-1], value[-4]):
                assert char in "a note" and len(char) == 1 and type(char) is not str
                assert pg.labels_of(char) == labels
                assert pg.tenant_of(char) == tenant
