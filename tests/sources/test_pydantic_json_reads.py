"""A declared pydantic field written out in JSON mode is a read of its
categories whatever its value is: a labelled list, dict or tuple, a nested
model, a UUID or an enum (labelled in place or staying itself), a bool, or
text an after-validator rebuilt. Validated earlier, written out under a
purpose that may not read it: refused, and nothing is written."""

from __future__ import annotations

import enum
import uuid
import warnings
from typing import Annotated, Any

import pytest
from pydantic import AfterValidator, BaseModel, ConfigDict

import purposeguard as pg

EMAIL = pg.Category("customer_data.content.email")
SECRET = "zq-secret-9f1@contoso.example"


class Colour(enum.Enum):
    RED = "red"


class Inner(BaseModel):
    note: str = SECRET


class Profile(BaseModel):
    emails: Annotated[list[str], EMAIL] = []
    headers: Annotated[dict[str, str], EMAIL] = {}
    pair: Annotated[tuple[str, ...], EMAIL] = ()
    inner: Annotated[Inner | None, EMAIL] = None
    uid: Annotated[uuid.UUID | None, EMAIL] = None
    colour: Annotated[Colour | None, EMAIL] = None
    subscribed: Annotated[bool | None, EMAIL] = None
    squeezed: Annotated[
        str | None, EMAIL, AfterValidator(lambda text: " ".join(text.split()) if text else text)
    ] = None
    on_the_whole_union: Annotated[str | int | None, EMAIL] = None


FIELDS: dict[str, Any] = {
    "emails": [SECRET],
    "headers": {"to": SECRET},
    "pair": (SECRET,),
    "inner": {"note": SECRET},
    "uid": uuid.UUID(int=7),
    "colour": Colour.RED,
    "subscribed": True,
    "squeezed": f"  {SECRET}  ",
    "on_the_whole_union": SECRET,
}


@pytest.mark.parametrize("field", FIELDS, ids=FIELDS.keys())
@pytest.mark.parametrize("dump", ["model_dump_json", "model_dump(mode=json)"])
def test_a_declared_field_written_out_as_json_under_a_refused_purpose_is_refused(
    field: str, dump: str
) -> None:
    pg.configure("trust-center", mode="enforce")
    profile = Profile.model_validate({field: FIELDS[field]})
    with pg.testing.capture() as violations, pg.purpose("advertising"):
        with pytest.raises(Exception) as refused:  # pydantic wraps it in its own error
            if dump == "model_dump_json":
                profile.model_dump_json(include={field})
            else:
                profile.model_dump(mode="json", include={field})
    assert SECRET not in str(refused.value)
    assert [(v.purpose, v.category) for v in violations] == [("advertising", "customer_data.content.email")]


@pytest.mark.parametrize("field", FIELDS, ids=FIELDS.keys())
def test_the_same_write_out_is_allowed_where_the_purpose_may_read_it(field: str) -> None:
    pg.configure("trust-center", mode="enforce")
    profile = Profile.model_validate({field: FIELDS[field]})
    with pg.testing.capture() as violations, pg.purpose("service.operations"):
        profile.model_dump_json(include={field})
    assert violations == []


class Tags(BaseModel):
    tags: Annotated[set[str], EMAIL] = set()
    frozen: Annotated[frozenset[str], EMAIL] = frozenset()


def test_a_labelled_set_field_dumped_under_a_refused_purpose_never_aborts_inside_pydantic() -> None:
    """pydantic iterates a set in its own code, where a refusal raised by the
    set's iteration is not an exception it can carry (it aborts): the JSON
    write-out is refused before that, and a Python-mode dump copies the
    plain items and tells the zone."""
    pg.configure("trust-center", mode="enforce")
    tags = Tags(tags={SECRET}, frozen=frozenset({SECRET}))
    with pg.purpose("advertising"):
        with pytest.raises(Exception) as refused:
            tags.model_dump_json()
        assert isinstance(refused.value, Exception) and SECRET not in str(refused.value)
        with pg.zone() as zone:
            dumped = tags.model_dump()
    assert dumped == {"tags": {SECRET}, "frozen": frozenset({SECRET})}
    assert zone.categories == {"customer_data.content.email"}


def test_a_category_on_one_member_of_a_union_is_refused_when_the_class_is_defined() -> None:
    # pydantic's union serializer would swallow the member's refusal and
    # write the value (in a warning that quotes it, too): refused at once.
    with pytest.raises(TypeError, match="one member of a union") as refused:

        class Note(BaseModel):
            body: Annotated[str, EMAIL] | int

    assert "'body'" in str(refused.value)
    assert "Annotated[str | int, Category(...)]" in str(refused.value)
    with pytest.raises(TypeError, match="one member of a union"):

        class Notes(BaseModel):
            bodies: list[Annotated[str, EMAIL]] | int | None = None


def test_a_category_on_an_optional_member_or_the_whole_union_is_declared_and_refused_when_written() -> None:
    class Note(BaseModel):
        maybe: Annotated[str, EMAIL] | None = None
        whole: Annotated[str | int, EMAIL] = 0

    pg.configure("trust-center", mode="enforce")
    for note in (Note(maybe=SECRET), Note(whole=SECRET)):
        with pg.testing.capture() as violations, pg.purpose("advertising"):
            with pytest.raises(Exception) as refused:  # pydantic wraps it in its own error
                note.model_dump_json()
        assert SECRET not in str(refused.value)
        assert [(v.purpose, v.category) for v in violations] == [
            ("advertising", "customer_data.content.email")
        ]


def test_a_declared_model_as_one_member_of_a_union_is_refused_when_written_not_swallowed() -> None:
    class Mail(BaseModel):
        body: Annotated[str, EMAIL]

    class Envelope(BaseModel):
        content: Mail | int

    pg.configure("trust-center", mode="enforce")
    envelope = Envelope(content=Mail(body=SECRET))
    with warnings.catch_warnings(record=True) as warned, pg.testing.capture() as violations:
        warnings.simplefilter("always")
        with pg.purpose("advertising"), pytest.raises(Exception) as refused:  # pydantic's own error
            envelope.model_dump_json()
    assert SECRET not in str(refused.value)
    assert not [w for w in warned if SECRET in str(w.message)]
    assert violations and {v.category for v in violations} == {"customer_data.content.email"}


class Deferred(BaseModel):
    model_config = ConfigDict(defer_build=True)
    body: Annotated[str, EMAIL]


def test_a_model_built_inside_a_union_keeps_its_own_declared_fields() -> None:
    """A deferred model first built as one member of a union is no member
    declared with a category: its own serializer refuses when written."""

    class Holder(BaseModel):
        content: Deferred | int

    pg.configure("trust-center", mode="enforce")
    holder = Holder(content=Deferred(body=SECRET))
    with pg.testing.capture() as violations, pg.purpose("advertising"):
        with pytest.raises(Exception) as refused:  # pydantic's own error
            holder.model_dump_json()
    assert SECRET not in str(refused.value)
    assert violations
