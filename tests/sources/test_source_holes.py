"""Labels at the source where a red-team pass found them lost: attrs classes
that write their own dictionary or name types as arguments, aliases made
with ``TypeAliasType``, dataclass defaults kept on the class, a container
field's items' tenant, and pydantic's JSON-mode output."""

from __future__ import annotations

import dataclasses
import json
from typing import Annotated, Any

import attr
import attrs
import pydantic
import pydantic_core
import pytest
from purposeguard.integrations._server import violation_in
from typing_extensions import TypeAliasType

import purposeguard as pg
from purposeguard.consent import ConsentStore

EMAIL = "customer_data.content.email"
MARKER = "zq-source-holes-5e1"
Email = Annotated[str, pg.Category(EMAIL)]
AliasedEmail = TypeAliasType("AliasedEmail", Annotated[str, pg.Category(EMAIL)])


@pg.purpose("advertising")
def ads(value: Any) -> None:
    raise AssertionError("the guard must stop this call")


@pytest.fixture(autouse=True)
def strict() -> None:
    pg.configure("trust-center", mode="enforce", context_mode="enforce")


def _refused(value: Any) -> None:
    assert EMAIL in pg.labels_of(value)
    with pytest.raises(pg.PurposeViolation) as refused:
        ads(value)
    assert MARKER not in str(refused.value)


@attrs.frozen(slots=False)
class FrozenWithDict:
    email: Email


@attr.s(frozen=True)
class OldFrozen:
    email = attr.ib(type=Email)


@attr.s
class TypedByArgument:
    email = attr.ib(type=Email)


Made = attrs.make_class("Made", {"email": attrs.field(type=Email)})


@pytest.mark.parametrize("cls", [FrozenWithDict, OldFrozen, TypedByArgument, Made])
def test_attrs_fields_are_labelled_however_the_class_is_built(cls: Any) -> None:
    made = cls(MARKER)
    _refused(made.email)
    _refused(made)
    with pg.zone():
        inside = cls(MARKER)
        assert EMAIL in pg.current_zone().categories  # type: ignore[union-attr]
        _refused(inside.email)


@dataclasses.dataclass
class Aliased:
    email: AliasedEmail


class AliasedModel(pydantic.BaseModel):
    email: AliasedEmail


def test_a_type_alias_of_a_declared_type_labels_as_the_type_does() -> None:
    _refused(Aliased(MARKER).email)
    _refused(AliasedModel(email=MARKER).email)
    _refused(AliasedModel.model_construct(email=pg.label(MARKER, EMAIL)))


@dataclasses.dataclass
class WithClassDefault:
    email: Email = dataclasses.field(init=False, default="noreply@example.com")
    name: Email = "anon"


def test_a_dataclass_default_kept_on_the_class_reads_as_the_default_labelled() -> None:
    made = WithClassDefault()
    assert made.email == "noreply@example.com" and made.name == "anon"
    assert pg.labels_of(made.email) == {EMAIL}
    made.email = MARKER
    assert made.email == MARKER
    _refused(made.email)
    assert repr(WithClassDefault()) == "WithClassDefault(email='noreply@example.com', name='anon')"


class Mailing(pydantic.BaseModel):
    email: Email = ""
    emails: Annotated[list[str], pg.Category(EMAIL)] = []
    by_name: Annotated[dict[str, str], pg.Category(EMAIL)] = {}


def test_a_container_field_keeps_its_items_tenant() -> None:
    store = ConsentStore(":memory:")
    pg.configure("trust-center", mode="enforce", context_mode="enforce", consents=store)
    store.grant("acme", "improvement", ["customer_data"], granted_by="admin@acme")

    @pg.purpose("improvement")
    def improve(value: Any) -> None:
        raise AssertionError("acme's consent does not cover globex's data")

    theirs = pg.label(f"{MARKER}@globex.example", EMAIL, tenant="globex")
    for value in (Mailing(emails=[theirs]).emails, Mailing(by_name={"k": theirs}).by_name):
        assert pg.tenant_of(value) == "globex"
        with pg.zone(tenant="acme"), pytest.raises(pg.PurposeViolation):
            improve(value)
    store.close()


def test_json_mode_output_of_a_model_validated_elsewhere_is_a_read() -> None:
    # Validated in one request (or cached), written out in another: the
    # values JSON mode builds are plain (pydantic builds them outside
    # Python), but writing them out is a read the zone learns and the
    # current purpose is checked against.
    kept = Mailing(email=MARKER, emails=[MARKER])
    for write_out in (lambda: kept.model_dump(mode="json"), kept.model_dump_json):
        with pg.zone():
            text = json.dumps(write_out()) if not isinstance(write_out(), str) else write_out()
            assert MARKER in text and pg.labels_of(text) == frozenset()
            assert EMAIL in pg.current_zone().categories  # type: ignore[union-attr]
            with pytest.raises(pg.PurposeViolation):
                ads(text)
        # pydantic wraps what its serializer raised; the violation is its cause.
        with pg.purpose("advertising"), pytest.raises(pydantic_core.PydanticSerializationError) as wrapped:
            write_out()
        assert "no-advertising" in str(wrapped.value) and MARKER not in str(wrapped.value)
        # What a middleware answers with: the violation behind pydantic's error.
        found = violation_in(wrapped.value)
        assert found is not None and found.violations[0].via == "source"


def test_a_response_model_written_out_under_a_refused_purpose_is_a_403() -> None:
    import warnings

    import fastapi
    from purposeguard.integrations.asgi import PurposeGuardMiddleware, route_purpose
    from starlette.exceptions import StarletteDeprecationWarning

    with warnings.catch_warnings():
        # Starlette prefers httpx2 for its test client; httpx drives it the same way.
        warnings.simplefilter("ignore", StarletteDeprecationWarning)
        from starlette.testclient import TestClient

    cached = Mailing(email=MARKER)
    app = fastapi.FastAPI()

    @app.get("/campaign", response_model=Mailing)
    @route_purpose("advertising")
    async def campaign() -> Mailing:
        # Validated in an earlier request, kept in memory.
        return cached

    app.add_middleware(PurposeGuardMiddleware)
    with TestClient(app) as client:
        response = client.get("/campaign")
    assert response.status_code == 403
    assert MARKER not in response.text and response.json()["via"] == "source"


def test_python_mode_and_unlabelled_models_are_as_before() -> None:
    assert Mailing(email="plain").model_dump(mode="python")["email"] == "plain"

    class Plain(pydantic.BaseModel):
        email: str

    assert pg.labels_of(Plain(email="x").model_dump(mode="json")["email"]) == frozenset()
