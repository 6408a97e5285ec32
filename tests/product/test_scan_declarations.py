"""The scan reads declarations the way teams write them: constants, aliases, ORM columns."""

from __future__ import annotations

from pathlib import Path

import pytest

from purposeguard._scan import scan

from .conftest import write_tree

EMAIL = "customer_data.content.email"
DOCUMENT = "customer_data.content.document"

TREE = {
    "app/__init__.py": "",
    "app/keys.py": """
        EMAIL = "customer_data.content.email"
        CONTENT = EMAIL
        BOTH = (EMAIL, "customer_data")


        class Keys:
            DOCUMENT = "customer_data.content.document"
    """,
    "app/types.py": """
        from typing import Annotated

        import purposeguard as pg

        from .keys import EMAIL

        Body = Annotated[str, pg.Category(EMAIL)]
    """,
    "app/models.py": """
        from typing import Annotated, Optional

        import purposeguard as pg
        from sqlalchemy import Column, MetaData, String, Table
        from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

        from app import keys
        from .keys import Keys
        from .types import Body


        class Base(DeclarativeBase):
            pass


        class Post(Base):
            __tablename__ = "posts"
            id: Mapped[int] = mapped_column(primary_key=True)
            body: Mapped[Optional[Body]]
            note: Mapped[str] = mapped_column(info={"purposeguard": keys.CONTENT})
            doc: Mapped[Annotated[str, pg.Category(Keys.DOCUMENT)]]
            title: Mapped[str]


        core = MetaData()
        messages = Table("messages", core, Column("text", String, info={"purposeguard": "customer_data"}))
    """,
    "app/heroes.py": """
        from typing import Optional

        from sqlmodel import Field, SQLModel


        class Hero(SQLModel, table=True):
            id: Optional[int] = Field(default=None, primary_key=True)
            nick: str = Field(sa_column_kwargs={"info": {"purposeguard": "customer_data"}})
    """,
    "app/notes.py": """
        from typing import Annotated

        from django.db import models

        import purposeguard as pg
        from app.keys import BOTH


        class Note(models.Model):
            text: Annotated[str, pg.Category(*BOTH)] = models.TextField()
    """,
    "app/views.py": """
        import purposeguard as pg
        from sqlalchemy import select

        from .heroes import Hero
        from .models import Post, messages
        from .notes import Note


        @pg.purpose("advertising")
        def ads(session):
            return session.scalars(select(Post)).all()


        @pg.purpose("marketing.direct")
        def newsletter(connection):
            return connection.execute(select(messages.c.text)).all()


        @pg.purpose("service.operations")
        def support(session):
            return list(Note.objects.all()), session.get(Hero, 1)


        @pg.purpose("improvement")
        def unrelated():
            return 1
    """,
    "app/unrelated.py": """
        def configure(thing):
            return thing(info={"purposeguard": "customer_data"})
    """,
}


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    return write_tree(tmp_path / "ormapp", TREE)


def test_constants_resolve_across_modules_and_nothing_is_left_dynamic(tree: Path) -> None:
    result = scan(tree)
    assert [f for f in result.findings if f.dynamic] == []


def test_each_model_declares_what_its_fields_declare(tree: Path) -> None:
    classes = scan(tree).class_categories()
    assert classes["Post"] == {EMAIL, DOCUMENT}
    assert classes["messages"] == {"customer_data"}
    assert classes["Hero"] == {"customer_data"}
    assert classes["Note"] == {EMAIL, "customer_data"}


def test_an_alias_is_found_where_the_field_uses_it(tree: Path) -> None:
    result = scan(tree)
    (alias_use,) = [f for f in result.findings if f.form == "annotation"]
    source = (tree / alias_use.path).read_text().splitlines()[alias_use.line - 1]
    assert (alias_use.function, alias_use.keys) == ("app.models.Post", (EMAIL,))
    assert source.strip() == "body: Mapped[Optional[Body]]"


def test_column_info_is_a_declaration_only_in_orm_code(tree: Path) -> None:
    info = {(f.path, f.function, f.keys) for f in scan(tree).findings if f.form == "info"}
    assert info == {
        ("app/models.py", "app.models.Post", (EMAIL,)),
        ("app/models.py", "app.models.messages", ("customer_data",)),
        ("app/heroes.py", "app.heroes.Hero", ("customer_data",)),
    }


def test_functions_that_query_a_model_handle_its_categories(tree: Path) -> None:
    flows = scan(tree).flows()
    assert flows[(EMAIL, "advertising")] == ["app.views.ads"]
    assert flows[(DOCUMENT, "advertising")] == ["app.views.ads"]
    assert flows[("customer_data", "marketing.direct")] == ["app.views.newsletter"]
    assert flows[(EMAIL, "service.operations")] == ["app.views.support"]
    assert not [key for key in flows if key[1] == "improvement"]


def test_the_fides_export_lists_the_categories_orm_code_handles(tree: Path) -> None:
    from purposeguard.fides import system_manifest

    declarations = {
        d["data_use"]: d["data_categories"]
        for d in system_manifest(scan(tree))["system"][0]["privacy_declarations"]
    }
    assert declarations["marketing.advertising"] == ["user.content.private"]
    assert declarations["marketing.communications.email"] == ["user"]
    assert declarations["essential.service.operations"] == ["user", "user.content.private"]


def test_a_constant_that_is_not_a_literal_stays_dynamic(tmp_path: Path) -> None:
    (tmp_path / "m.py").write_text(
        "import os\nimport purposeguard as pg\nKEY = os.environ['K']\n"
        "@pg.purpose(KEY)\ndef f(x):\n    return x\n"
    )
    (finding,) = scan(tmp_path).findings
    assert finding.dynamic and finding.keys == ()


def test_constants_that_refer_to_each_other_in_a_cycle_stay_dynamic(tmp_path: Path) -> None:
    (tmp_path / "m.py").write_text(
        "import purposeguard as pg\nA = B\nB = A\n@pg.purpose(A)\ndef f(x):\n    return x\n"
    )
    (finding,) = scan(tmp_path).findings
    assert finding.dynamic


def test_what_a_route_loads_reaches_the_features_it_calls(tmp_path: Path) -> None:
    write_tree(
        tmp_path,
        {
            "web/__init__.py": "",
            "web/models.py": """
            from typing import Annotated

            import purposeguard as pg
            from sqlalchemy.orm import Mapped


            class Note:
                body: Mapped[Annotated[str, pg.Category("customer_data.content.document")]]


            class User:
                email: Mapped[Annotated[str, pg.Category("customer_data")]]
        """,
            "web/features.py": """
            import purposeguard as pg


            @pg.purpose("advertising")
            def pick_ad(text):
                return "ad"


            @pg.purpose("marketing.direct")
            def mail(address):
                return None
        """,
            "web/app.py": """
            from . import features
            from .models import Note, User


            def create_app(app):
                def own_note(session, note_id):
                    return session.get(Note, note_id)

                @app.get("/ad")
                def ad(session):
                    return features.pick_ad(own_note(session, 1).body)

                @app.post("/mail")
                def newsletter(session):
                    for user in session.query(User):
                        features.mail(user.email)

                return app
        """,
        },
    )
    assert scan(tmp_path).flows() == {
        (DOCUMENT, "advertising"): ["web.features.pick_ad"],
        ("customer_data", "marketing.direct"): ["web.features.mail"],
    }
