"""Real databases for the ORM tests: SQLite files in a temporary folder, and the
same tests on a throwaway PostgreSQL server (the distributed tests' fixture)."""

from __future__ import annotations

import sys
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.services)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of a new, empty database of each backend under test."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'app.db'}"
    url: str = request.getfixturevalue("postgres_server").create_database()
    return url.replace("postgresql://", "postgresql+psycopg://", 1)


@pytest.fixture
def sqlalchemy_instrumented() -> Iterator[None]:
    """SQLAlchemy labelling switched on for one test and off after it."""
    from purposeguard.integrations import sqlalchemy as pg_sqlalchemy

    pg_sqlalchemy.instrument()
    yield
    pg_sqlalchemy.uninstrument()


@pytest.fixture
def engine(database_url: str) -> Iterator[Any]:
    engine = sqlalchemy.create_engine(database_url)
    yield engine
    engine.dispose()


DJANGO_SITE = Path(__file__).resolve().parent / "django_site"


def set_up_notes_site(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Django set up for the notes test site (tests/orm/django_site), once per
    process: settings cannot be configured twice, so the test files that use
    the site share what the first one set up (SQLite in a temporary folder,
    migrated)."""
    import django
    from django.conf import settings

    if str(DJANGO_SITE) not in sys.path:
        sys.path.insert(0, str(DJANGO_SITE))
    if settings.configured:
        if "djnotes" not in settings.INSTALLED_APPS:
            pytest.fail("Django was configured for another site in this process: run this file on its own")
        return
    import djnotes_settings as site_settings

    values = {k: v for k, v in vars(site_settings).items() if k.isupper()}
    values["DATABASES"] = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": str(tmp_path_factory.mktemp("django") / "db.sqlite3"),
        }
    }
    settings.configure(**values)
    django.setup()
    from django.core.management import call_command

    call_command("migrate", run_syncdb=True, verbosity=0)


def served_django_asgi() -> Generator[str, None, None]:
    """The configured Django project served by uvicorn on a free loopback
    port, in a thread, until the generator is closed: its base URL."""
    import socket
    import threading
    import time

    import uvicorn
    from django.core.asgi import get_asgi_application

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    config = uvicorn.Config(
        get_asgi_application(), host="127.0.0.1", port=port, log_level="error", lifespan="off"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 15
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture
def temporary_models(site: dict[str, Any]) -> Iterator[list[str]]:
    """Models a Django test defines on the fly, taken out of the app registry
    afterwards (``site`` is the test file's own set-up of the notes site)."""
    from django.apps import apps
    from purposeguard.integrations import django as pg_django

    names: list[str] = []
    yield names
    for name in names:
        apps.all_models["djnotes"].pop(name.lower(), None)
    apps.clear_cache()
    pg_django.uninstrument()  # forgets their declarations
    pg_django.instrument()
