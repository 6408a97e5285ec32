"""Migrations never see a purposeguard type: Alembic's autogenerate finds nothing to change."""

from typing import Any

import sqlalchemy
from alembic.autogenerate import compare_metadata, produce_migrations, render_python_code
from alembic.migration import MigrationContext
from alembic.operations import Operations
from purposeguard.integrations import sqlalchemy as pg_sqlalchemy
from sqlalchemy import MetaData

from .test_sqlalchemy import Base, core


def _metadata() -> MetaData:
    both = MetaData()
    for table in [*Base.metadata.tables.values(), *core.tables.values()]:
        table.to_metadata(both)
    return both


def _dedented(script: str) -> str:
    # Alembic renders the body of upgrade(), indented, after a comment at column 0.
    return "\n".join(line.removeprefix("    ") for line in script.splitlines())


def test_autogenerate_sees_no_difference_once_instrumented(engine: Any) -> None:
    metadata = _metadata()
    metadata.create_all(engine)
    pg_sqlalchemy.instrument()
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            assert compare_metadata(context, metadata) == []
    finally:
        pg_sqlalchemy.uninstrument()


def test_a_rendered_migration_names_only_sqlalchemy_types(engine: Any) -> None:
    pg_sqlalchemy.instrument()
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(connection)
            upgrade = produce_migrations(context, _metadata()).upgrade_ops
            assert upgrade is not None
            script = render_python_code(upgrade)
    finally:
        pg_sqlalchemy.uninstrument()
    assert "op.create_table('posts'" in script and "sa.Column('body', sa.String()" in script
    # Column and table info are plain dicts in the migration; no purposeguard name is imported or called.
    assert "purposeguard." not in script and "Labelled" not in script and "import" not in script
    # The rendered migration runs with nothing but alembic's op and sqlalchemy in scope.
    with engine.begin() as connection:
        operations = Operations(MigrationContext.configure(connection))
        exec(_dedented(script), {"op": operations, "sa": sqlalchemy})  # noqa: S102 - the migration under test
    assert set(sqlalchemy.inspect(engine).get_table_names()) >= {"authors", "posts", "messages"}
