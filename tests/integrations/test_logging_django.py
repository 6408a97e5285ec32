"""The logging filter with Django's own log lines and handlers: a model whose
text loads a declared field only when the record is formatted, the query
log (``django.db.backends``) of a query with a labelled parameter, and the
admin mail of a 500 (``AdminEmailHandler(include_html=True)``), which shows
the local values of the failing view's frames.

The notes site of tests/orm (tests/orm/django_site), on SQLite, set up as
the ORM tests set it up (Django's settings are made once per process)."""

from __future__ import annotations

import importlib.util
import io
import logging
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from purposeguard.integrations.logging import setup, teardown

import purposeguard as pg

ORM_TESTS = Path(__file__).resolve().parents[1] / "orm"
SITE = ORM_TESTS / "django_site"
DOCUMENT = "customer_data.content.document"
URLCONF = "pgtest_logging_urls"


def set_up_notes_site(tmp_path_factory: pytest.TempPathFactory) -> None:
    spec = importlib.util.spec_from_file_location("pgtest_orm_conftest", ORM_TESTS / "conftest.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.set_up_notes_site(tmp_path_factory)


def crash(request: Any) -> Any:
    """A view that fails after reading a note: the body is a local of its frame."""
    from djnotes.models import Note

    body = Note.objects.get(title="logging-note").body  # noqa: F841 - what the admin mail would show
    raise RuntimeError("could not index the note")


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory, marker: str) -> Iterator[dict[str, Any]]:
    set_up_notes_site(tmp_path_factory)
    from django.apps import apps
    from django.contrib.auth.models import User
    from django.db import connection, models
    from django.urls import path
    from djnotes.models import Note
    from purposeguard.integrations import django as pg_django

    was_instrumented = pg_django.is_instrumented()
    pg_django.instrument()

    def mention_text(mention: Any) -> str:
        return f"mention {mention.pk} of: {mention.note.body[:40]}"

    # Declares no field of its own: its text names the related note's body,
    # which Django loads the first time the text is made.
    Mention: Any = type(
        "LoggingMention",
        (models.Model,),
        {
            "__module__": "djnotes.models",
            "Meta": type("Meta", (), {"app_label": "djnotes"}),
            "note": models.ForeignKey(Note, on_delete=models.CASCADE),
            "__str__": mention_text,
        },
    )
    with connection.schema_editor() as editor:
        editor.create_model(Mention)
    carol = User.objects.create_user("logging-carol", password="pw-carol")
    note = Note.objects.create(owner=carol, title="logging-note", body=marker)
    mention = Mention.objects.create(note=note)
    urls = types.ModuleType(URLCONF)
    urls.urlpatterns = [path("logging-crash/", crash)]  # type: ignore[attr-defined]
    sys.modules[URLCONF] = urls
    try:
        yield {"carol": carol, "note": note, "Mention": Mention, "mention": mention.pk}
    finally:
        del sys.modules[URLCONF]
        Mention.objects.all().delete()
        with connection.schema_editor() as editor:
            editor.delete_model(Mention)
        apps.all_models["djnotes"].pop("loggingmention", None)
        apps.clear_cache()
        Note.objects.filter(title="logging-note").delete()
        User.objects.filter(username__startswith="logging-").delete()
        pg_django.uninstrument()  # forgets the model made here
        if was_instrumented:
            pg_django.instrument()
        sys.path.remove(str(SITE))


@pytest.fixture(autouse=True)
def configured(site: dict[str, Any]) -> None:
    from purposeguard.integrations.django import _settings

    _settings.apply()


class Captured:
    """A logger's own handler writing to a string, under setup(); the logger left as it was found."""

    def __init__(self, name: str, handler: logging.Handler | None = None, fmt: str = "%(message)s") -> None:
        self.stream = io.StringIO()
        self.logger = logging.getLogger(name)
        self.handler = handler or logging.StreamHandler(self.stream)
        self.handler.setFormatter(logging.Formatter(fmt))
        self.before = (self.logger.level, self.logger.propagate)

    def __enter__(self) -> Captured:
        self.logger.setLevel(logging.DEBUG)
        self.logger.propagate = False
        self.logger.addHandler(self.handler)
        self.guard_filter = setup(self.logger)
        return self

    def __exit__(self, *exc: object) -> None:
        teardown(self.guard_filter, self.logger)
        self.logger.removeHandler(self.handler)
        self.logger.setLevel(self.before[0])
        self.logger.propagate = self.before[1]

    def text(self) -> str:
        return self.stream.getvalue()


@pytest.mark.parametrize("context_mode", ["trace", "enforce"])
def test_a_models_text_that_loads_a_declared_field_when_formatted_is_redacted(
    site: dict[str, Any], marker: str, context_mode: str
) -> None:
    pg.configure("trust-center", mode="enforce", context_mode=context_mode)
    with Captured("pgtest.django.mentions") as captured, pg.testing.capture() as violations:
        with pg.zone(tenant=str(site["carol"].pk)):
            mention = site["Mention"].objects.get(pk=site["mention"])  # its note is not loaded yet
            captured.logger.info("processing %s", mention)
    assert marker not in captured.text()
    assert f"it carried {DOCUMENT}" in captured.text()
    assert [(v.category, v.via) for v in violations] == [(DOCUMENT, "egress")]


def test_the_query_log_of_a_labelled_parameter_keeps_no_statement(site: dict[str, Any], marker: str) -> None:
    """Django logs each query with the statement, its parameters interpolated,
    in ``extra={"sql": ...}`` beside the parameters: the statement goes with them."""
    from django.db import connection
    from djnotes.models import Note

    with Captured("django.db.backends", fmt="%(message)s | sql=%(sql)s | took %(duration).4f") as captured:
        connection.force_debug_cursor = True  # what DEBUG=True does
        try:
            with pg.zone(tenant=str(site["carol"].pk)):
                body = Note.objects.get(pk=site["note"].pk).body
                assert Note.objects.filter(body=body).exists()
        finally:
            connection.force_debug_cursor = False
    lines = [line for line in captured.text().splitlines() if "redacted" in line]
    assert marker not in captured.text()
    assert lines and all(f"| sql=[redacted: {DOCUMENT}] | took " in line for line in lines)


def test_the_admin_mail_of_a_500_shows_no_local_value_of_its_frames(
    site: dict[str, Any], marker: str
) -> None:
    from django.core import mail
    from django.test import Client, override_settings
    from django.utils.log import AdminEmailHandler

    mail.outbox = []
    settings = override_settings(
        ROOT_URLCONF=URLCONF,
        ADMINS=[("ops", "ops@example.com")],
        EMAIL_BACKEND="django.core.mail.backends.locmem.EmailBackend",
    )
    with settings, Captured("django.request", AdminEmailHandler(include_html=True)):
        with pg.testing.capture() as violations:
            response = Client(raise_request_exception=False).get("/logging-crash/")
    assert response.status_code == 500
    [sent] = mail.outbox
    html = "".join(str(content) for content, _ in sent.alternatives)
    assert "Internal Server Error: /logging-crash/" in sent.subject
    assert marker not in sent.body and marker not in html
    assert "could not index the note" not in html  # the frames, and the values they held, are gone
    assert (DOCUMENT, "egress") in {(v.category, v.via) for v in violations}
