"""ORM declarations that cannot work fail at instrument(), naming the class and field; missing extras are named."""

import gc
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import pytest
from purposeguard.integrations import sqlalchemy as pg_sqlalchemy
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

import purposeguard as pg


@pytest.fixture
def base() -> Iterator[type[DeclarativeBase]]:
    """A declarative base of its own, disposed after the test so its models go too."""

    class Base(DeclarativeBase):
        pass

    yield Base
    pg_sqlalchemy.uninstrument()
    Base.registry.dispose()
    gc.collect()


def test_an_unknown_key_in_info_names_the_class_and_field(base: type[DeclarativeBase]) -> None:
    class Note(base):  # type: ignore[valid-type,misc]
        __tablename__ = "notes"
        id: Mapped[int] = mapped_column(primary_key=True)
        text: Mapped[str] = mapped_column(info={"purposeguard": "customer_data.contnet"})

    with pytest.raises(pg.UnknownKeyError) as caught:
        pg_sqlalchemy.instrument()
    message = str(caught.value)
    assert "Note" in message and "'text'" in message and "customer_data.contnet" in message
    assert caught.value.field == "text"
    assert not pg_sqlalchemy.is_instrumented()


def test_an_info_value_that_is_not_a_key_is_refused(base: type[DeclarativeBase]) -> None:
    class Note(base):  # type: ignore[valid-type,misc]
        __tablename__ = "notes"
        id: Mapped[int] = mapped_column(primary_key=True)
        text: Mapped[str] = mapped_column(info={"purposeguard": 42})

    with pytest.raises(pg.PolicyError, match="must be a category key or a list of keys, not int"):
        pg_sqlalchemy.instrument()


def test_a_missing_tenant_column_names_the_class(base: type[DeclarativeBase]) -> None:
    class Note(base):  # type: ignore[valid-type,misc]
        __tablename__ = "notes"
        __purposeguard_tenant__ = "tenant_id"
        id: Mapped[int] = mapped_column(primary_key=True)
        owner: Mapped[str]
        text: Mapped[Annotated[str, pg.Category("customer_data")]]

    with pytest.raises(pg.PolicyError) as caught:
        pg_sqlalchemy.instrument()
    message = str(caught.value)
    assert "Note" in message and "'tenant_id'" in message and "id, owner, text" in message
    assert caught.value.field == "__purposeguard_tenant__"


def test_a_model_defined_after_instrument_is_checked_when_it_is_mapped(base: type[DeclarativeBase]) -> None:
    pg_sqlalchemy.instrument()
    with pytest.raises(pg.PolicyError, match="Late.*__purposeguard_tenant__"):

        class Late(base):  # type: ignore[valid-type,misc]
            __tablename__ = "late"
            __purposeguard_tenant__ = "nobody"
            id: Mapped[int] = mapped_column(primary_key=True)


def test_a_category_annotation_with_an_unknown_key_fails_where_it_is_written() -> None:
    with pytest.raises(pg.UnknownKeyError, match="customer_data.contnet"):
        pg.Category("customer_data.contnet")


def test_importing_the_integration_imports_no_sqlalchemy() -> None:
    code = "import sys, purposeguard.integrations.sqlalchemy; print('sqlalchemy' in sys.modules)"
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip() == "False"


def test_without_sqlalchemy_instrument_names_the_extra(tmp_path: Path) -> None:
    stub = tmp_path / "stubs" / "sqlalchemy"
    stub.mkdir(parents=True)
    (stub / "__init__.py").write_text("raise ImportError('no sqlalchemy here')\n", encoding="utf-8")
    code = (
        f"import sys; sys.path.insert(0, {str(tmp_path / 'stubs')!r})\n"
        "from purposeguard.integrations import sqlalchemy as m; m.instrument()\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert "pip install 'purposeguard[sqlalchemy]'" in done.stderr.strip().splitlines()[-1]


def test_importing_the_django_integration_imports_no_django() -> None:
    code = "import sys, purposeguard.integrations.django; print('django' in sys.modules)"
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip() == "False"


@pytest.mark.parametrize("use", ["PurposeGuardMiddleware", "instrument()"])
def test_without_django_the_integration_names_the_extra(use: str, tmp_path: Path) -> None:
    stub = tmp_path / "stubs" / "django"
    stub.mkdir(parents=True)
    (stub / "__init__.py").write_text("raise ImportError('no django here')\n", encoding="utf-8")
    code = (
        f"import sys; sys.path.insert(0, {str(tmp_path / 'stubs')!r})\n"
        f"from purposeguard.integrations import django as m; m.{use}\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert "pip install 'purposeguard[django]'" in done.stderr.strip().splitlines()[-1]
