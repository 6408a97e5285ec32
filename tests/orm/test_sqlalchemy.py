"""SQLAlchemy 2: values loaded from the database arrive labelled, one declaration per column."""

from typing import Annotated, Any, Optional

import pytest
import sqlalchemy as sa
from purposeguard.integrations import sqlalchemy as pg_sqlalchemy
from sqlalchemy import (
    Column,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Table,
    event,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.orm import (
    DeclarativeBase,
    Mapped,
    Session,
    aliased,
    column_property,
    mapped_column,
    relationship,
)

import purposeguard as pg
from purposeguard._context import MIXED_TENANT

EMAIL = "customer_data.content.email"
BODY = "Quarterly numbers attached, call me"


class Base(DeclarativeBase):
    pass


class Author(Base):
    __tablename__ = "authors"
    __purposeguard_tenant__ = "tenant"
    id: Mapped[int] = mapped_column(primary_key=True)
    tenant: Mapped[str]
    email: Mapped[str] = mapped_column(info={"purposeguard": "administrator_data"})
    posts: Mapped[list["Post"]] = relationship(back_populates="author")


class Post(Base):
    __tablename__ = "posts"
    __purposeguard_tenant__ = "tenant"
    id: Mapped[int] = mapped_column(primary_key=True)
    tenant: Mapped[str]
    title: Mapped[str]
    body: Mapped[Annotated[str, pg.Category(EMAIL)]]
    note: Mapped[Optional[str]] = mapped_column(info={"purposeguard": ["customer_data"]}, deferred=True)
    author_id: Mapped[Optional[int]] = mapped_column(ForeignKey("authors.id"))
    author: Mapped[Optional[Author]] = relationship(back_populates="posts")


class Digest(Base):
    """Columns computed in SQL, declared on the property or not at all."""

    __tablename__ = "digests"
    __purposeguard_tenant__ = "tenant"
    id: Mapped[int] = mapped_column(primary_key=True)
    tenant: Mapped[str] = mapped_column()
    title: Mapped[str] = mapped_column()
    body: Mapped[Annotated[str, pg.Category(EMAIL)]] = mapped_column()
    # Undeclared: derived in SQL from a labelled column, it is labelled as it.
    lowered: Mapped[str] = column_property(func.lower(body))
    # Declared on the property itself.
    shouted: Mapped[str] = column_property(func.upper(title), info={"purposeguard": "customer_data"})
    # A correlated subquery over another model's labelled column.
    post_body: Mapped[Optional[str]] = column_property(
        select(Post.body).where(Post.title == title).limit(1).scalar_subquery()
    )
    # Made by the database: fetched during the flush that inserts the row.
    summary: Mapped[Annotated[str, pg.Category(EMAIL)]] = mapped_column(server_default="(no summary)")
    __mapper_args__ = {"eager_defaults": True}


class Staff(Base):
    """Joined-table inheritance: the tenant is in the parent's table."""

    __tablename__ = "staff"
    __purposeguard_tenant__ = "tenant"
    id: Mapped[int] = mapped_column(primary_key=True)
    tenant: Mapped[str] = mapped_column()
    kind: Mapped[str] = mapped_column()
    __mapper_args__ = {"polymorphic_on": "kind", "polymorphic_identity": "staff"}


class Manager(Staff):
    __tablename__ = "managers"
    id: Mapped[int] = mapped_column(ForeignKey("staff.id"), primary_key=True)
    notes: Mapped[Annotated[str, pg.Category(EMAIL)]] = mapped_column()
    __mapper_args__ = {"polymorphic_identity": "manager"}


core = MetaData()
messages = Table(
    "messages",
    core,
    Column("id", Integer, primary_key=True),
    Column("mailbox", String),
    Column("body", String, info={"purposeguard": EMAIL}),
    info={"purposeguard_tenant": "mailbox"},
)
documents = Table(
    "documents",
    core,
    Column("id", Integer, primary_key=True),
    Column("data", sa.JSON, info={"purposeguard": "customer_data"}),
)


# SQLAlchemy labelling on for each test, off after it (tests/orm/conftest.py).
pytestmark = pytest.mark.usefixtures("sqlalchemy_instrumented")


@pytest.fixture
def db(engine: Any) -> Any:
    Base.metadata.create_all(engine)
    core.create_all(engine)
    with Session(engine) as session:
        author = Author(tenant="contoso", email="admin@contoso.example")
        session.add(Post(tenant="contoso", title="hello", body=BODY, note="a note", author=author))
        session.add(Post(tenant="fabrikam", title="other", body="Fabrikam's mail", note=None))
        session.commit()
    with engine.begin() as connection:
        connection.execute(insert(messages).values(mailbox="contoso", body=BODY))
        connection.execute(insert(Digest).values(tenant="contoso", title="hello", body=BODY))
    return engine


def _first_post(session: Session) -> Post:
    return session.scalars(select(Post).where(Post.title == "hello")).one()


# -- the ORM's machinery handed to guarded code -------------------------------------------


def test_sessions_queries_results_and_generators_over_them_are_not_walked_past_the_bound(db: Any) -> None:
    """Handed to a guarded function they hold no data of their own (rows are
    labelled as they are fetched): no refusal for a walk that hit its bound."""
    pg.configure("trust-center", mode="enforce")

    @pg.purpose("service.operations")
    def export(rows: Any) -> int:
        return sum(1 for _ in rows)

    with Session(db) as session, pg.testing.assert_no_violations():
        assert export(session.execute(select(Post))) == 2
        assert export(session.scalars(select(Post))) == 2
        assert export(session.query(Post)) == 2
        assert export(post.title for post in session.query(Post)) == 2
        assert export(iter(session.scalars(select(Post)).all())) == 2
        with db.connect() as connection:
            assert export(connection.execute(select(messages))) == 1
        export([session])


def test_a_generator_over_loaded_instances_still_carries_their_labels(db: Any) -> None:
    pg.configure("trust-center", mode="enforce")

    @pg.purpose("advertising")
    def target(rows: Any) -> None:
        return None

    with Session(db) as session:
        posts = session.scalars(select(Post)).all()
        with pytest.raises(pg.PurposeViolation):
            target(post.body for post in posts)


def test_the_machinery_carries_what_it_holds(db: Any) -> None:
    """Read, not walked: a labelled result's columns and rows' tenants, what a
    query selects (of no one tenant) and binds, what a session keeps in info."""
    pg.configure("trust-center", mode="enforce")

    @pg.purpose("advertising")
    def target(value: Any) -> None:
        return None

    with Session(db) as session:
        bodies = select(Post.body, Post.tenant).where(Post.title == "hello")
        handed_over = {
            "result": lambda: session.execute(bodies),
            "scalars": lambda: session.scalars(select(Post.body)),
            "mappings": lambda: session.execute(bodies).mappings(),
            "query": lambda: session.query(Post),
            "query bound to a labelled value": lambda: session.query(Author.id).filter(
                Author.email == pg.label("x@contoso.example", EMAIL)
            ),
        }
        for name, handed in handed_over.items():
            with pytest.raises(pg.PurposeViolation):
                target(handed())
                pytest.fail(f"{name} passed")
        assert pg.tenant_of(session.execute(bodies)) == "contoso"
        assert pg.tenant_of(session.query(Post)) == MIXED_TENANT  # it has not run: whose rows is unknown
        session.info["last_body"] = pg.label(BODY, EMAIL)
        with pytest.raises(pg.PurposeViolation):
            target(session)
        with pg.testing.assert_no_violations():
            target(session.execute(select(Post.title)))  # no declared column
            target(select(Post.title).where(Post.title == "hello"))
            target(Base.metadata)
        for statement in (
            select(Post),
            select(Post.body),
            select(Author.id).where(Author.email == session.info["last_body"]),
        ):
            with pytest.raises(pg.PurposeViolation):
                target(statement)


# -- instances -------------------------------------------------------------------------


def test_a_loaded_attribute_carries_its_annotated_category_and_the_row_tenant(db: Any) -> None:
    with Session(db) as session:
        post = _first_post(session)
        assert post.body == BODY
        assert pg.labels_of(post.body) == {EMAIL}
        assert pg.tenant_of(post.body) == "contoso"


def test_info_declares_a_category_as_well(db: Any) -> None:
    with Session(db) as session:
        author = session.scalars(select(Author)).one()
        assert pg.labels_of(author.email) == {"administrator_data"}
        assert pg.tenant_of(author.email) == "contoso"


def test_unlabelled_columns_stay_plain(db: Any) -> None:
    with Session(db) as session:
        post = _first_post(session)
        assert type(post.title) is str and type(post.id) is int
        assert pg.labels_of(post.title) == frozenset()


def test_the_instance_carries_every_category_of_its_columns(db: Any) -> None:
    with Session(db) as session:
        post = _first_post(session)
        assert pg.labels_of(post) >= {EMAIL, "customer_data"}
        assert pg.tenant_of(post) == "contoso"


def test_each_row_gets_its_own_tenant(db: Any) -> None:
    with Session(db) as session:
        posts = session.scalars(select(Post).order_by(Post.id)).all()
        assert [pg.tenant_of(p.body) for p in posts] == ["contoso", "fabrikam"]


def test_deferred_columns_are_labelled_when_they_load(db: Any) -> None:
    with Session(db) as session:
        post = _first_post(session)
        assert "note" not in post.__dict__
        assert pg.labels_of(post.note) == {"customer_data"}


def test_expired_and_refreshed_attributes_are_labelled_again(db: Any) -> None:
    with Session(db) as session:
        post = _first_post(session)
        session.expire(post, ["body"])
        assert pg.labels_of(post.body) == {EMAIL}
        session.refresh(post)
        assert pg.labels_of(post.body) == {EMAIL} and pg.tenant_of(post.body) == "contoso"


def test_related_objects_loaded_lazily_are_labelled(db: Any) -> None:
    with Session(db) as session:
        author = session.scalars(select(Author)).one()
        assert [pg.labels_of(p.body) for p in author.posts] == [{EMAIL}]


def test_aliased_entities_are_labelled(db: Any) -> None:
    with Session(db) as session:
        alias = aliased(Post)
        post = session.scalars(select(alias).where(alias.title == "hello")).one()
        assert pg.labels_of(post.body) == {EMAIL}


def test_null_values_stay_none(db: Any) -> None:
    with Session(db) as session:
        post = session.scalars(select(Post).where(Post.title == "other")).one()
        assert post.note is None


# -- rows ---------------------------------------------------------------------------------


def test_selected_columns_are_labelled_with_the_tenant_of_their_row(db: Any) -> None:
    with Session(db) as session:
        rows = session.execute(select(Post.id, Post.body, Post.tenant).order_by(Post.id)).all()
        assert [pg.labels_of(r.body) for r in rows] == [{EMAIL}, {EMAIL}]
        assert [pg.tenant_of(r.body) for r in rows] == ["contoso", "fabrikam"]
        assert pg.labels_of(rows[0].id) == frozenset()


def test_without_its_tenant_column_a_row_value_is_no_one_tenants(db: Any) -> None:
    with Session(db) as session:
        bodies = session.scalars(select(Post.body).order_by(Post.id)).all()
        assert [pg.labels_of(b) for b in bodies] == [{EMAIL}, {EMAIL}]
        # Whose row it came from is unknown: several tenants', which no one
        # tenant's consent covers (a value with no tenant would take the zone's).
        assert [pg.tenant_of(b) for b in bodies] == [MIXED_TENANT, MIXED_TENANT]


def test_the_request_tenants_consent_does_not_release_another_tenants_row(db: Any, tmp_path: Any) -> None:
    from purposeguard.consent import ConsentStore

    with ConsentStore(tmp_path / "consent.db") as store:
        pg.configure("trust-center", consents=store)
        store.grant("contoso", "improvement", ["customer_data"], granted_by="admin@contoso")
        with Session(db) as session:
            # Every tenant's bodies, the tenant column not selected.
            bodies = session.scalars(select(Post.body).order_by(Post.id)).all()
            own = session.execute(select(Post.body, Post.tenant).where(Post.tenant == "contoso")).one()
        with pg.zone(tenant="contoso"):
            assert pg.decide(pg.labels_of(own.body), "improvement", tenant=pg.tenant_of(own.body)).allowed
            for body in bodies:
                with pytest.raises(pg.PurposeViolation):
                    pg.check(body, "improvement")


def test_a_self_join_never_takes_the_tenant_of_the_other_row(db: Any) -> None:
    other = aliased(Post)
    with Session(db) as session:
        rows = session.execute(
            select(Post.body, other.tenant).join(other, other.id != Post.id).order_by(Post.id)
        ).all()
        assert [r.tenant for r in rows] == ["fabrikam", "contoso"]
        assert {pg.tenant_of(r.body) for r in rows} == {MIXED_TENANT}
        # Through the same alias, the row's own tenant.
        mine = session.execute(select(other.body, other.tenant).where(other.title == "hello")).one()
        assert pg.tenant_of(mine.body) == "contoso"


def test_labelled_columns_under_another_name_are_labelled(db: Any) -> None:
    with Session(db) as session:
        row = session.execute(select(Post.body.label("text")).where(Post.title == "hello")).one()
        assert pg.labels_of(row.text) == {EMAIL}


def test_values_computed_in_sql_from_a_labelled_column_are_labelled(db: Any) -> None:
    with Session(db) as session:
        upper = session.scalars(select(func.upper(Post.body)).where(Post.title == "hello")).one()
        count = session.scalars(select(func.count()).select_from(Post)).one()
        assert upper == BODY.upper() and pg.labels_of(upper) == {EMAIL}
        assert count == 2 and pg.labels_of(count) == frozenset()


def test_rows_of_entities_and_columns_together(db: Any) -> None:
    with Session(db) as session:
        post, body = session.execute(select(Post, Post.body).where(Post.title == "hello")).one()
        assert pg.labels_of(post.body) == {EMAIL} and pg.labels_of(body) == {EMAIL}


def test_joined_columns_of_two_models(db: Any) -> None:
    with Session(db) as session:
        row = session.execute(select(Author.email, Author.tenant, Post.body).join(Post.author)).one()
        assert pg.labels_of(row.email) == {"administrator_data"}
        assert pg.tenant_of(row.email) == "contoso"
        assert pg.labels_of(row.body) == {EMAIL}


def test_core_rows_of_a_table_with_column_info(db: Any) -> None:
    with db.connect() as connection:
        row = connection.execute(select(messages.c.id, messages.c.body, messages.c.mailbox)).one()
        assert pg.labels_of(row.body) == {EMAIL} and pg.tenant_of(row.body) == "contoso"
        assert pg.labels_of(row.mailbox) == frozenset()


def test_core_rows_of_a_mapped_table(db: Any) -> None:
    with db.connect() as connection:
        table = Post.__table__
        rows = connection.execute(select(table.c.body, table.c.tenant).order_by(table.c.id)).all()
        assert [(pg.labels_of(r.body), pg.tenant_of(r.body)) for r in rows] == [
            ({EMAIL}, "contoso"),
            ({EMAIL}, "fabrikam"),
        ]


def test_an_orm_select_run_on_a_connection(db: Any) -> None:
    with db.connect() as connection:
        bodies = connection.execute(select(Post.body)).scalars().all()
        assert {pg.labels_of(b) for b in bodies} == {frozenset({EMAIL})}


def test_core_rows_through_a_session(db: Any) -> None:
    with Session(db) as session:
        body = session.execute(select(messages.c.body)).scalar_one()
        assert pg.labels_of(body) == {EMAIL}


def test_mappings_of_labelled_rows(db: Any) -> None:
    with Session(db) as session:
        mapping = session.execute(select(Post.body).where(Post.title == "hello")).mappings().one()
        assert pg.labels_of(mapping["body"]) == {EMAIL}


# -- subqueries, aliases, CTEs, unions, RETURNING: the declarations are the tables' -------


def test_columns_of_a_subquery_are_labelled_as_their_table_columns(db: Any) -> None:
    with Session(db) as session:
        inner = select(Post.body, Post.tenant).where(Post.title == "hello").subquery()
        row = session.execute(select(inner.c.body, inner.c.tenant)).one()
        assert pg.labels_of(row.body) == {EMAIL} and pg.tenant_of(row.body) == "contoso"
    with db.connect() as connection:
        inner = select(messages.c.body).subquery()
        assert pg.labels_of(connection.execute(select(inner.c.body)).scalar_one()) == {EMAIL}


def test_columns_of_an_alias_and_a_cte_are_labelled(db: Any) -> None:
    with db.connect() as connection:
        alias = messages.alias("m")
        assert pg.labels_of(connection.execute(select(alias.c.body)).scalar_one()) == {EMAIL}
        cte = select(messages.c.body).cte("recent")
        assert pg.labels_of(connection.execute(select(cte.c.body)).scalar_one()) == {EMAIL}
    with Session(db) as session:
        cte = select(Post.body).where(Post.title == "hello").cte()
        assert pg.labels_of(session.execute(select(cte.c.body)).scalar_one()) == {EMAIL}


def test_an_expression_selected_in_a_subquery_keeps_the_labels_of_its_columns(db: Any) -> None:
    with Session(db) as session:
        inner = select(func.lower(Post.body).label("lowered")).where(Post.title == "hello").subquery()
        twice = select(func.upper(inner.c.lowered).label("again")).subquery()
        value = session.execute(select(twice.c.again)).scalar_one()
        assert value == BODY.upper() and pg.labels_of(value) == {EMAIL}


def test_each_select_of_a_union_labels_its_position(db: Any) -> None:
    with Session(db) as session:
        both = sa.union_all(select(Post.title), select(Post.body)).subquery()
        values = session.scalars(select(both.c.title)).all()
        assert {pg.labels_of(v) for v in values} == {frozenset({EMAIL})}
    with db.connect() as connection:
        rows = connection.execute(sa.union(select(messages.c.body), select(Post.__table__.c.title))).all()
        assert {pg.labels_of(row[0]) for row in rows} == {frozenset({EMAIL})}


def test_rows_returned_by_update_and_delete_returning_are_labelled(db: Any) -> None:
    with db.begin() as connection:
        result = connection.execute(
            update(messages).values(mailbox=messages.c.mailbox).returning(messages.c.body, messages.c.mailbox)
        )
        row = result.one()
        assert pg.labels_of(row.body) == {EMAIL} and pg.tenant_of(row.body) == "contoso"
    with Session(db) as session:
        bodies = session.scalars(
            update(Post).where(Post.title == "hello").values(title="hi").returning(Post.body)
        ).all()
        assert [pg.labels_of(b) for b in bodies] == [{EMAIL}]
        gone = session.execute(sa.delete(Post).where(Post.title == "other").returning(Post.body)).scalar_one()
        assert pg.labels_of(gone) == {EMAIL}
        session.commit()


def test_a_subquery_per_query_keeps_nothing_alive(db: Any) -> None:
    # Followed to their tables, subqueries and aliases are not remembered: a
    # per-request subquery (and the values bound in it) is not kept.
    with db.connect() as connection:
        connection.execute(select(messages.c.body)).all()
        before = len(pg_sqlalchemy._STATE.tables)
        for number in range(50):
            inner = select(messages.c.body).where(messages.c.body != f"secret-{number}").subquery()
            connection.execute(select(inner.c.body)).all()
            connection.execute(select(messages.alias().c.body)).all()
    kept = [entry.table for entry in pg_sqlalchemy._STATE.tables.values()]
    assert all(isinstance(table, Table) for table in kept)
    assert len(kept) == before


def test_a_statement_nested_too_deep_to_follow_is_refused_not_returned_unlabelled(db: Any) -> None:
    expression: Any = messages.c.body
    for depth in range(pg_sqlalchemy.MAX_NESTING + 1):
        expression = select(func.lower(expression).label(f"level{depth}")).subquery().c[f"level{depth}"]
    with db.connect() as connection, pytest.raises(pg.PurposeGuardError, match="nested more than"):
        connection.execute(select(expression))


def test_column_properties_are_labelled_as_what_they_are_computed_from(db: Any) -> None:
    with Session(db) as session:
        digest = session.scalars(select(Digest)).one()
        assert digest.lowered == BODY.lower()
        assert pg.labels_of(digest.lowered) == {EMAIL} and pg.tenant_of(digest.lowered) == "contoso"
        assert pg.labels_of(digest.shouted) == {"customer_data"}
        assert digest.post_body == BODY and pg.labels_of(digest.post_body) == {EMAIL}
        # Read from another table's row: not of the digest's tenant.
        assert pg.tenant_of(digest.post_body) == MIXED_TENANT
        assert pg.labels_of(digest) >= {EMAIL, "customer_data"}
        # Selected as columns, the same.
        row = session.execute(select(Digest.lowered, Digest.shouted)).one()
        assert pg.labels_of(row.lowered) == {EMAIL} and pg.labels_of(row.shouted) == {"customer_data"}


def test_connection_scalar_labels_like_execute(db: Any) -> None:
    with db.connect() as connection:
        assert pg.labels_of(connection.scalar(select(Post.body).where(Post.title == "hello"))) == {EMAIL}
        assert pg.labels_of(connection.scalar(select(messages.c.body))) == {EMAIL}
        body = connection.scalar(select(messages.c.body, messages.c.mailbox))
        assert pg.labels_of(body) == {EMAIL} and pg.tenant_of(body) == "contoso"
        assert connection.scalar(select(func.count()).select_from(messages)) == 1
    with Session(db) as session:
        assert pg.labels_of(session.connection().scalar(select(Post.body).limit(1))) == {EMAIL}


def test_async_streaming_still_works_and_labels(tmp_path: Any) -> None:
    import asyncio

    from sqlalchemy.ext.asyncio import create_async_engine

    engine = sa.create_engine(f"sqlite:///{tmp_path / 'async.db'}")
    core.create_all(engine)
    with engine.begin() as connection:
        connection.execute(insert(messages).values(mailbox="contoso", body=BODY))
    engine.dispose()

    async def read() -> list[Any]:
        async_engine = create_async_engine(f"sqlite+aiosqlite:///{tmp_path / 'async.db'}")
        try:
            async with async_engine.connect() as connection:
                streamed = [row.body async for row in await connection.stream(select(messages.c.body))]
                scalar = await connection.scalar(select(messages.c.body))
                return [*streamed, scalar]
        finally:
            await async_engine.dispose()

    values = asyncio.run(read())
    assert values == [BODY, BODY]
    assert [pg.labels_of(v) for v in values] == [{EMAIL}, {EMAIL}]


def test_columns_of_a_table_valued_function_are_labelled_as_its_arguments(db: Any) -> None:
    with db.begin() as connection:
        connection.execute(insert(documents).values(data={"tags": ["urgent"]}))
        if db.dialect.name == "sqlite":
            items = func.json_each(documents.c.data, "$.tags").table_valued("value")
        else:
            items = func.json_array_elements_text(documents.c.data["tags"]).table_valued("value")
        tag = connection.execute(
            select(items.c.value).select_from(documents).join(items, sa.true())
        ).scalar_one()
        assert tag == "urgent" and pg.labels_of(tag) == {"customer_data"}


def test_values_the_database_makes_during_a_flush_are_labelled(db: Any) -> None:
    with Session(db) as session:
        digest = Digest(tenant="fabrikam", title="new", body="fresh")
        session.add(digest)
        session.flush()
        assert "summary" in digest.__dict__  # fetched by the flush, not by a later load
        assert digest.summary == "(no summary)"
        assert pg.labels_of(digest.summary) == {EMAIL} and pg.tenant_of(digest.summary) == "fabrikam"
        # What the application set itself stays as it set it.
        assert pg.labels_of(digest.__dict__["title"]) == frozenset()
        session.rollback()


def test_members_of_a_bundle_are_labelled_each_as_its_column(db: Any) -> None:
    from sqlalchemy.orm import Bundle

    with Session(db) as session:
        inner: Any = Bundle("owner", Post.tenant, Post.body)
        row = session.execute(
            select(Bundle("post", Post.id, Post.body, Post.tenant), inner).where(Post.title == "hello")
        ).one()
        assert pg.labels_of(row.post.body) == {EMAIL} and pg.tenant_of(row.post.body) == "contoso"
        assert pg.labels_of(row.post.id) == frozenset()
        assert pg.labels_of(row.owner.body) == {EMAIL} and pg.tenant_of(row.owner.body) == "contoso"
        assert row.post.body == BODY and row.post._fields == ("id", "body", "tenant")


def test_a_self_join_inside_a_subquery_or_cte_never_takes_the_other_rows_tenant(db: Any) -> None:
    other = aliased(Post)
    joined = select(other.body, Post.tenant).join(other, other.id != Post.id)
    with Session(db) as session:
        for inner in (joined.subquery(), joined.cte()):
            rows = session.execute(select(inner.c.body, inner.c.tenant)).all()
            assert len(rows) == 2 and {pg.tenant_of(r.body) for r in rows} == {MIXED_TENANT}
        # Both columns of one row, through one subquery: that row's tenant.
        own = select(Post.body, Post.tenant).subquery()
        rows = session.execute(select(own.c.body, own.c.tenant)).all()
        assert sorted((pg.tenant_of(r.body), r.tenant) for r in rows) == [
            ("contoso", "contoso"),
            ("fabrikam", "fabrikam"),
        ]


def test_values_of_many_rows_are_several_tenants(db: Any) -> None:
    with Session(db) as session:
        windowed = session.execute(
            select(Post.tenant, func.max(Post.body).over().label("longest")).order_by(Post.id)
        ).all()
        assert [pg.tenant_of(r.longest) for r in windowed] == [MIXED_TENANT, MIXED_TENANT]
        assert {pg.labels_of(r.longest) for r in windowed} == {frozenset({EMAIL})}
        grouped = session.execute(
            select(func.max(Post.body), func.count(Post.tenant)).group_by(Post.title)
        ).all()
        assert {pg.tenant_of(r[0]) for r in grouped} == {MIXED_TENANT}


def test_only_the_tenant_column_itself_is_the_rows_tenant(db: Any) -> None:
    with Session(db) as session:
        rows = session.execute(select(Post.body, Post.tenant == "contoso").order_by(Post.id)).all()
        assert {pg.tenant_of(r[0]) for r in rows} == {MIXED_TENANT}  # a truth value is no tenant
        renamed = session.execute(select(Post.body, Post.tenant.label("owner")).order_by(Post.id)).all()
        assert [pg.tenant_of(r.body) for r in renamed] == ["contoso", "fabrikam"]


def test_a_union_of_bundles_is_labelled(db: Any) -> None:
    from sqlalchemy.orm import Bundle

    bundle: Any = Bundle("post", Post.body, Post.tenant)
    with Session(db) as session:
        rows = session.execute(
            select(bundle).where(Post.title == "hello").union_all(select(bundle).where(Post.title == "other"))
        ).all()
        assert len(rows) == 2 and {pg.labels_of(r[0]) for r in rows} == {frozenset({EMAIL})}


def test_a_subclass_table_under_joined_inheritance_is_several_tenants(db: Any) -> None:
    with Session(db) as session:
        session.add(Manager(tenant="contoso", notes="raise for the team"))
        session.commit()
        row = session.execute(select(Manager.notes, Manager.tenant)).one()
        assert pg.labels_of(row.notes) == {EMAIL} and pg.tenant_of(row.notes) == MIXED_TENANT
        # Loaded as an instance, the row's own tenant.
        manager = session.scalars(select(Manager)).one()
        assert pg.tenant_of(manager.notes) == "contoso"


def test_model_tables_are_never_the_cache_that_is_forgotten(db: Any, monkeypatch: Any) -> None:
    monkeypatch.setattr(pg_sqlalchemy._declarations, "TABLES_LIMIT", 8)
    throwaway = MetaData()
    tables = [Table(f"throwaway{n}", throwaway, Column("id", Integer, primary_key=True)) for n in range(20)]
    throwaway.create_all(db)
    with db.connect() as connection:
        for table in tables:
            connection.execute(select(table.c.id)).all()
    assert len(pg_sqlalchemy._STATE.tables) <= 8
    with Session(db) as session:
        row = session.execute(select(Post.body, Post.tenant).where(Post.title == "hello")).one()
        assert pg.labels_of(row.body) == {EMAIL} and pg.tenant_of(row.body) == "contoso"


def test_returning_results_keep_what_the_driver_told(db: Any) -> None:
    with db.begin() as connection:
        result = connection.execute(
            insert(messages).values(mailbox="contoso", body="new").returning(messages.c.body)
        )
        assert result.is_insert and pg.labels_of(result.scalar_one()) == {EMAIL}


def test_a_statement_shape_is_planned_once(db: Any, monkeypatch: Any) -> None:
    planned: list[Any] = []
    positions = pg_sqlalchemy._plans._positions

    def counting(statement: Any) -> Any:
        planned.append(statement)
        return positions(statement)

    monkeypatch.setattr(pg_sqlalchemy._plans, "_positions", counting)
    with Session(db) as session:
        for title in ("hello", "other", "hello"):
            # Built afresh each time, as a request does: the same shape, other values.
            row = session.execute(select(Post.body, Post.tenant).where(Post.title == title)).one()
            assert pg.labels_of(row.body) == {EMAIL} and pg.tenant_of(row.body) == row.tenant
        session.execute(select(Post.title).where(Post.id > 0)).all()
    assert len(planned) == 2  # one plan per shape, whatever the bound values


# -- writes and queries keep working -------------------------------------------------------


def test_loading_marks_nothing_to_flush(db: Any) -> None:
    statements: list[str] = []
    with Session(db) as session:
        posts = session.scalars(select(Post)).all()
        assert all(pg.labels_of(p.body) for p in posts)
        event.listen(db, "before_cursor_execute", lambda *args: statements.append(args[2]))
        assert not session.dirty
        session.commit()
    assert not any(s.lstrip().upper().startswith("UPDATE") for s in statements)


def test_labelled_values_bound_as_parameters_store_the_plain_value(db: Any) -> None:
    with Session(db) as session:
        post = _first_post(session)
        post.body = post.body + " (edited)"
        post.title = pg.label("labelled title", "customer_data")
        session.add(Post(tenant="contoso", title="new", body=pg.label("from a form", EMAIL)))
        session.commit()
    with db.connect() as connection:
        stored = (
            connection.exec_driver_sql("select title, body, typeof(body) from posts order by id").all()
            if db.dialect.name == "sqlite"
            else connection.exec_driver_sql(
                "select title, body, pg_typeof(body)::text from posts order by id"
            ).all()
        )
    assert [tuple(r[:2]) for r in stored] == [
        ("labelled title", BODY + " (edited)"),
        ("other", "Fabrikam's mail"),
        ("new", "from a form"),
    ]
    assert all(type(v) is str for row in stored for v in row)


def test_where_clauses_with_labelled_values_match(db: Any) -> None:
    with Session(db) as session:
        body = _first_post(session).body
        assert pg.labels_of(body) == {EMAIL}
        assert session.scalars(select(Post.title).where(Post.body == body)).all() == ["hello"]
        session.execute(update(Post).where(Post.body == body).values(title=body[:5]))
        session.commit()
        assert session.scalars(select(Post.title).order_by(Post.id)).all() == [BODY[:5], "other"]


# -- the policy applies to what was loaded --------------------------------------------------


def test_a_loaded_value_reaching_a_forbidden_purpose_is_refused(db: Any) -> None:
    pg.configure("trust-center", mode="enforce")

    @pg.purpose("advertising")
    def pick_ads(text: str) -> str:
        return "ad"

    with Session(db) as session:
        post = _first_post(session)
        with pytest.raises(pg.PurposeViolation) as caught:
            pick_ads(post.body)
        (row,) = session.execute(select(Post.body, Post.tenant).where(Post.title == "hello")).all()
        with pytest.raises(pg.PurposeViolation):
            pick_ads(row.body)
    violation = caught.value.violations[0]
    assert (violation.category, violation.purpose, violation.tenant) == (EMAIL, "advertising", "contoso")


def test_a_loaded_instance_is_checked_by_its_values_as_an_argument(db: Any) -> None:
    """The check looks into the instance's columns and loaded relationships, not
    the ORM's own state (session, mapper, engine), which would exceed the walk's bound."""
    pg.configure("trust-center", mode="enforce")

    @pg.purpose("service.operations")
    def troubleshoot(post: Post) -> int:
        return len(post.body)

    @pg.purpose("advertising")
    def pick_ads(post: Post) -> str:
        return "ad"

    with Session(db) as session:
        post = _first_post(session)
        assert post.author is not None  # a loaded relationship is looked into too
        assert troubleshoot(post) == len(BODY)
        with pytest.raises(pg.PurposeViolation) as caught:
            pick_ads(post)
    assert {(v.category, v.via) for v in caught.value.violations} >= {(EMAIL, "argument")}
    assert "administrator_data" in {v.category for v in caught.value.violations}


def test_loading_an_instance_inside_a_zone_leaves_the_zone_as_it_was(db: Any) -> None:
    """A loaded row is not yet a flow: the login layer loading the user does not taint the request."""
    with pg.zone(tenant="contoso") as zone, Session(db) as session:
        post = _first_post(session)
        assert post.title == "hello" and post.author is not None
        assert zone.categories == frozenset()
        assert pg.labels_of(post.__dict__["body"]) == {EMAIL}  # labelled all the same


def test_reading_a_labelled_attribute_inside_a_zone_adds_its_categories(db: Any) -> None:
    with pg.zone(tenant="contoso") as zone, Session(db) as session:
        post = _first_post(session)
        laundered = f"{post.body}!"  # an f-string drops the label: the zone has it
        assert pg.labels_of(laundered) == frozenset()
        assert EMAIL in zone.categories and "contoso" in zone.owners


def test_a_lazy_deferred_read_inside_a_zone_adds_its_categories(db: Any) -> None:
    with pg.zone(tenant="contoso") as zone, Session(db) as session:
        post = _first_post(session)
        assert post.note == "a note"
        assert zone.categories == {"customer_data"}


def test_selecting_a_labelled_column_inside_a_zone_is_a_read(db: Any) -> None:
    with pg.zone(tenant="contoso") as zone, Session(db) as session:
        session.execute(select(Post.id, Post.body)).all()
        assert EMAIL in zone.categories


def test_a_read_laundered_into_a_forbidden_purpose_is_refused_through_the_zone(db: Any) -> None:
    pg.configure("trust-center", mode="enforce", context_mode="enforce")

    @pg.purpose("advertising")
    def pick_ads(text: str) -> str:
        return "ad"

    with pg.zone(tenant="contoso"), Session(db) as session:
        post = _first_post(session)
        assert pick_ads("house ad") == "ad"  # loaded, never read: nothing flows
        laundered = f"about {post.body}"
        assert pg.labels_of(laundered) == frozenset()
        with pytest.raises(pg.PurposeViolation) as caught:
            pick_ads(laundered)
    assert {(v.via, v.rule) for v in caught.value.violations} == {("context", "no-advertising")}


def test_uninstrument_gives_the_attributes_their_own_class_back(db: Any) -> None:
    from sqlalchemy.orm.attributes import InstrumentedAttribute

    assert type(Post.__dict__["body"]) is not InstrumentedAttribute
    pg_sqlalchemy.uninstrument()
    assert type(Post.__dict__["body"]) is InstrumentedAttribute
    assert type(Post.__dict__["title"]) is InstrumentedAttribute


# -- switching on and off -------------------------------------------------------------------


def test_instrument_twice_labels_once(db: Any) -> None:
    pg_sqlalchemy.instrument()
    with Session(db) as session:
        assert pg.labels_of(_first_post(session).body) == {EMAIL}
    assert pg_sqlalchemy.is_instrumented()


def test_uninstrument_stops_labelling(db: Any) -> None:
    pg_sqlalchemy.uninstrument()
    pg_sqlalchemy.uninstrument()
    assert not pg_sqlalchemy.is_instrumented()
    with Session(db) as session:
        post = _first_post(session)
        assert type(post.body) is str
        assert type(session.scalars(select(Post.body)).first()) is str
    with db.connect() as connection:
        assert type(connection.execute(select(messages.c.body)).scalar_one()) is str


@pytest.mark.parametrize("version", ["1.4.54", "0.9"])
def test_an_unsupported_old_release_is_refused(version: str, monkeypatch: pytest.MonkeyPatch) -> None:
    pg_sqlalchemy.uninstrument()
    monkeypatch.setattr(sa, "__version__", version)
    with pytest.raises(RuntimeError, match=f"needs SQLAlchemy 2.0 or later; found {version}"):
        pg_sqlalchemy.instrument()
    assert not pg_sqlalchemy.is_instrumented()


def test_a_newer_release_than_tried_is_said(monkeypatch: pytest.MonkeyPatch) -> None:
    pg_sqlalchemy.uninstrument()
    monkeypatch.setattr(sa, "__version__", "3.0.1")
    with pytest.warns(RuntimeWarning, match="tried with SQLAlchemy 2.0 to 2.1; found 3.0.1"):
        pg_sqlalchemy.instrument()
    assert pg_sqlalchemy.is_instrumented()


def test_no_purposeguard_type_enters_the_schema() -> None:
    for table in [*Base.metadata.tables.values(), messages]:
        for column in table.columns:
            assert type(column.type).__module__.startswith("sqlalchemy."), (table.name, column.name)


# -- reading is a use ---------------------------------------------------------------------


def test_loading_under_a_purpose_that_may_not_read_it_is_refused(db: Any) -> None:
    pg.configure("trust-center", mode="enforce")
    with Session(db) as session, pg.purpose("advertising"), pytest.raises(pg.PurposeViolation) as caught:
        session.scalars(select(Post).where(Post.title == "hello")).all()
    violation = caught.value.violations[0]
    assert (violation.via, violation.purpose, violation.tenant) == ("source", "advertising", "contoso")


def test_selecting_columns_under_such_a_purpose_is_refused_too(db: Any) -> None:
    pg.configure("trust-center", mode="enforce")
    with Session(db) as session, pg.purpose("advertising"), pytest.raises(pg.PurposeViolation) as caught:
        session.scalars(select(Post.body)).all()
    assert caught.value.violations[0].via == "source"


def test_in_trace_mode_the_load_is_recorded_and_goes_on(db: Any) -> None:
    pg.configure("trust-center", mode="trace")
    with pg.testing.capture() as violations, Session(db) as session, pg.purpose("marketing.direct"):
        authors = session.scalars(select(Author)).all()
    assert [a.email for a in authors] == ["admin@contoso.example"]
    assert {(v.via, v.category, v.purpose) for v in violations} == {
        ("source", "administrator_data", "marketing.direct")
    }
    assert all(v.function.endswith("test_in_trace_mode_the_load_is_recorded_and_goes_on") for v in violations)


def test_loading_under_a_purpose_that_may_read_it_records_nothing(db: Any) -> None:
    pg.configure("trust-center", mode="enforce")
    with pg.testing.assert_no_violations(), Session(db) as session, pg.purpose("service.operations"):
        assert len(session.scalars(select(Post)).all()) == 2
