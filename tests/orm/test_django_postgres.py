"""Django on a real PostgreSQL: ORM values arrive labelled with their row's
tenant, violations are raised, PostgreSQL's own field types included.

The notes site of test_django.py (tests/orm/django_site), plus a ledger app
of PostgreSQL-only fields (djnotes/pg), on a database of the session's
throwaway PostgreSQL server. Django's settings are made once per process and
test_django.py makes them for SQLite, so this module's Django runs in a
process of its own, started once for the module: each test runs a probe
there (the functions marked ``@_probe``, in this file), which hands back what
it saw (plain values, labels, tenants), and asserts on it here."""

from __future__ import annotations

import asyncio
import json
import os
import pickle
import select
import struct
import subprocess
import sys
import time
import traceback
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit

import pytest

import purposeguard as pg
from purposeguard._context import MIXED_TENANT

pytestmark = pytest.mark.services

SITE = Path(__file__).parent / "django_site"
DOCUMENT = "customer_data.content.document"
BODY = "Minutes of the board meeting: merger talks with Fabrikam"
SHOPPING = "Bob's shopping list"
MIXED = MIXED_TENANT
# Django's first connection and migrate take a few seconds; a probe far less.
ANSWER_WITHIN = 120.0

Seen = tuple[Any, frozenset[str], "str | None"]
Probe = Callable[[dict[str, Any]], Any]
PROBES: dict[str, Probe] = {}


def _probe(function: Probe) -> Probe:
    PROBES[function.__name__] = function
    return function


def _seen(value: Any) -> Seen:
    """(the value as plain JSON data, its labels, its tenant): what crosses back to the test."""
    tenant = pg.tenant_of(value)
    plain = json.loads(json.dumps(value, default=str))
    return plain, frozenset(pg.labels_of(value)), None if tenant is None else str.__str__(tenant)


# -- the Django process ------------------------------------------------------------------------


def _send(stream: IO[bytes], message: Any) -> None:
    data = pickle.dumps(message)
    stream.write(struct.pack(">I", len(data)) + data)
    stream.flush()


def _receive_exactly(fd: int, size: int, deadline: float) -> bytes:
    data = b""
    while len(data) < size:
        ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            raise TimeoutError(f"no answer from the Django process within {ANSWER_WITHIN:.0f} s")
        chunk = os.read(fd, size - len(data))
        if not chunk:
            raise EOFError("the Django process exited")
        data += chunk
    return data


class _Django:
    """The Django process of this module, and the probes it runs."""

    def __init__(self, url: str, log: Path) -> None:
        self.log = log
        env = dict(os.environ, PYTHONSAFEPATH="1")
        with log.open("wb") as errors:
            self.process = subprocess.Popen(
                [sys.executable, str(Path(__file__).resolve()), url],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=errors,
                env=env,
            )
        try:
            self.ids: dict[str, int] = self._answer("setup")
        except BaseException:
            self.close()
            raise

    def _answer(self, probe: str) -> Any:
        assert self.process.stdout is not None
        fd = self.process.stdout.fileno()
        deadline = time.monotonic() + ANSWER_WITHIN
        try:
            (size,) = struct.unpack(">I", _receive_exactly(fd, 4, deadline))
            status, value = pickle.loads(_receive_exactly(fd, size, deadline))
        except (TimeoutError, EOFError) as error:
            pytest.fail(f"{probe}: {error}; its log:\n{self.log.read_text(errors='replace')[-4000:]}")
        if status != "ok":
            pytest.fail(f"{probe} failed in the Django process:\n{value}", pytrace=False)
        return value

    def run(self, probe: Probe) -> Any:
        assert self.process.stdin is not None
        _send(self.process.stdin, probe.__name__)
        return self._answer(probe.__name__)

    def tenant(self, user: str) -> str:
        return str(self.ids[user])

    def close(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()  # the process's loop ends at end of input
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=30)
        if self.process.stdout is not None:
            self.process.stdout.close()


@pytest.fixture(scope="module")
def site(postgres_server: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[_Django]:
    django = _Django(postgres_server.create_database(), tmp_path_factory.mktemp("django-pg") / "django.log")
    try:
        yield django
    finally:
        django.close()


def _setup(url: str) -> dict[str, Any]:
    """In the Django process: settings, apps (our AppConfig.ready()), tables, two users and their notes."""
    import django
    from django.conf import settings

    sys.path.insert(0, str(SITE))
    import djnotes_settings as site_settings

    values = {k: v for k, v in vars(site_settings).items() if k.isupper()}
    values["INSTALLED_APPS"] = [*values["INSTALLED_APPS"], "django.contrib.postgres", "djnotes.pg"]
    parts = urlsplit(url)
    values["DATABASES"] = {
        "default": {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": parts.path.lstrip("/"),
            "USER": parts.username,
            "PASSWORD": parts.password,
            "HOST": parts.hostname,
            "PORT": parts.port,
        }
    }
    settings.configure(**values)
    django.setup()
    from django.contrib.auth.models import User
    from django.core.management import call_command
    from djnotes.models import Note, Profile
    from djnotes.pg.models import Ledger

    # The apps with migrations first: PostgreSQL checks the notes' foreign
    # keys to auth_user when their tables are made (SQLite does not).
    call_command("migrate", verbosity=0)
    call_command("migrate", run_syncdb=True, verbosity=0)
    alice = User.objects.create_user("alice", password="pw-alice")
    bob = User.objects.create_user("bob", password="pw-bob")
    Note.objects.create(owner=alice, title="board", body=BODY)
    Note.objects.create(owner=bob, title="shopping", body=SHOPPING)
    Profile.objects.create(user=alice, email="alice@contoso.example")
    return {"alice": alice, "bob": bob, "User": User, "Note": Note, "Profile": Profile, "Ledger": Ledger}


def _serve(url: str) -> None:
    """In the Django process: answer probes, by name, one line of input each, till input ends."""
    warnings.simplefilter("error")  # as the test session's filterwarnings
    answers = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # what anything prints goes to the log, not into the answers
    try:
        site = _setup(url)
        _send(answers, ("ok", {"alice": site["alice"].pk, "bob": site["bob"].pk}))
    except BaseException:
        _send(answers, ("error", traceback.format_exc()))
        raise
    from purposeguard.integrations.django import _settings

    requests = sys.stdin.buffer
    while True:
        header = requests.read(4)
        if len(header) < 4:
            return
        (size,) = struct.unpack(">I", header)
        name = pickle.loads(requests.read(size))
        # As test_django.py's fixtures: a fresh guard, then the PURPOSEGUARD setting applied.
        pg.testing.reset()
        _settings.apply()
        try:
            answer: tuple[str, Any] = ("ok", PROBES[name](site))
        except BaseException:
            answer = ("error", traceback.format_exc())
        _send(answers, answer)


# -- model instances ---------------------------------------------------------------------------


@_probe
def loaded_instances(site: dict[str, Any]) -> dict[str, Any]:
    Note = site["Note"]
    note = Note.objects.get(title="board")

    async def first() -> Any:
        return await Note.objects.filter(title="board").afirst()

    from purposeguard.integrations import django as pg_django

    return {
        "instrumented": pg_django.is_instrumented(),
        "get": _seen(note.body),
        "title": _seen(note.title),
        "object": DOCUMENT in pg.labels_of(note),
        "all": [_seen(n.body) for n in Note.objects.order_by("id")],
        # A server-side cursor: PostgreSQL's chunked reads, which SQLite has not.
        "chunked": [_seen(n.body) for n in Note.objects.order_by("id").iterator(chunk_size=1)],
        "distinct_on": [_seen(n.body) for n in Note.objects.order_by("owner", "-id").distinct("owner")],
        "async": _seen(asyncio.run(first()).body),
    }


def test_loaded_instances_have_labelled_fields_and_their_row_tenant(site: _Django) -> None:
    seen = site.run(loaded_instances)
    alice, bob = site.tenant("alice"), site.tenant("bob")
    assert seen["instrumented"] is True
    assert seen["get"] == (BODY, {DOCUMENT}, alice)
    assert seen["title"] == ("board", frozenset(), None)
    assert seen["object"] is True
    both = [(BODY, {DOCUMENT}, alice), (SHOPPING, {DOCUMENT}, bob)]
    assert seen["all"] == both and seen["chunked"] == both and seen["distinct_on"] == both
    assert seen["async"] == (BODY, {DOCUMENT}, alice)


@_probe
def deferred_and_refreshed(site: dict[str, Any]) -> dict[str, Any]:
    Note = site["Note"]
    only = Note.objects.only("title").get(title="board")
    loaded_later = "body" not in only.__dict__
    deferred = Note.objects.defer("body").get(title="board")
    refreshed = Note.objects.get(title="board")
    refreshed.refresh_from_db(fields=["body"])
    whole = Note.objects.only("id").get(title="shopping")
    whole.refresh_from_db()
    moved = Note.objects.defer("body").get(title="board")
    moved.owner_id = site["bob"].pk  # changed in memory, not saved
    moved.refresh_from_db(fields=["body"])
    return {
        "loaded_later": loaded_later,
        "only": _seen(only.body),
        "deferred": _seen(deferred.body),
        "refreshed": _seen(refreshed.body),
        "whole": _seen(whole.body),
        "moved": _seen(moved.body),
    }


def test_only_and_defer_and_refresh_label_with_the_row_tenant(site: _Django) -> None:
    seen = site.run(deferred_and_refreshed)
    alice = site.tenant("alice")
    assert seen["loaded_later"] is True
    for key in ("only", "deferred", "refreshed"):
        assert seen[key] == (BODY, {DOCUMENT}, alice), key
    assert seen["whole"] == (SHOPPING, {DOCUMENT}, site.tenant("bob"))
    assert seen["moved"] == (BODY, {DOCUMENT}, MIXED)  # both tenants: never the wrong one


@_probe
def saving_a_labelled_value(site: dict[str, Any]) -> dict[str, Any]:
    from django.db import connection

    Note = site["Note"]
    note = Note.objects.get(title="board")
    note.title = note.body[:7]  # a labelled value written to a plain column
    note.save()
    with connection.cursor() as cursor:
        cursor.execute("select title, pg_typeof(title)::text from djnotes_note where id = %s", [note.pk])
        title, kind = cursor.fetchone()
    found = Note.objects.filter(body=note.body).count()  # a labelled value as a query parameter
    note.title = "board"
    note.save()
    return {"stored": (title, kind, type(title) is str), "found": found}


def test_saving_stores_the_plain_value_and_labelled_values_work_as_parameters(site: _Django) -> None:
    seen = site.run(saving_a_labelled_value)
    assert seen == {"stored": (BODY[:7], "character varying", True), "found": 1}


# -- values(), values_list(), annotations, subqueries -------------------------------------------


@_probe
def values_rows(site: dict[str, Any]) -> dict[str, Any]:
    Note, User = site["Note"], site["User"]
    with_owner = Note.objects.filter(title="board").values("title", "body", "owner").get()
    without = Note.objects.filter(title="board").values("title", "body").get()
    related = User.objects.filter(username="alice").values("profile__email", "profile__user").get()
    (title, body) = Note.objects.filter(title="board").values_list("title", "body").get()
    named = Note.objects.filter(title="board").values_list("body", "owner_id", named=True).get()
    return {
        "with_owner": (_seen(with_owner["body"]), _seen(with_owner["title"])),
        "without": _seen(without["body"]),
        "related": _seen(related["profile__email"]),
        "tuple": (_seen(title), _seen(body)),
        "named": _seen(named.body),
    }


def test_values_rows_are_labelled_with_the_tenant_when_it_is_selected(site: _Django) -> None:
    seen = site.run(values_rows)
    alice = site.tenant("alice")
    assert seen["with_owner"] == ((BODY, {DOCUMENT}, alice), ("board", frozenset(), None))
    assert seen["without"] == (BODY, {DOCUMENT}, MIXED)  # no one tenant's consent covers it
    assert seen["related"] == ("alice@contoso.example", {"customer_data"}, alice)
    assert seen["tuple"] == (("board", frozenset(), None), (BODY, {DOCUMENT}, MIXED))
    assert seen["named"] == (BODY, {DOCUMENT}, alice)


@_probe
def flat_values(site: dict[str, Any]) -> dict[str, Any]:
    Note = site["Note"]
    ordered = Note.objects.order_by("id")
    return {
        "bodies": [_seen(b) for b in ordered.values_list("body", flat=True)],
        "chunked": [_seen(b) for b in ordered.values_list("body", flat=True).iterator(chunk_size=1)],
        "titles": [type(t) is str for t in ordered.values_list("title", flat=True)],
        "owners": [_seen(o) for o in ordered.values_list("owner", flat=True)],
    }


def test_flat_values_lists_are_labelled(site: _Django) -> None:
    seen = site.run(flat_values)
    both = [(BODY, {DOCUMENT}, MIXED), (SHOPPING, {DOCUMENT}, MIXED)]
    assert seen["bodies"] == both and seen["chunked"] == both
    assert seen["titles"] == [True, True]
    assert [labels for _, labels, _ in seen["owners"]] == [frozenset(), frozenset()]


@_probe
def lowered(site: dict[str, Any]) -> dict[str, Any]:
    from django.db.models.functions import Lower

    Note = site["Note"]
    board = Note.objects.filter(title="board").annotate(low=Lower("body"))
    note = board.get()
    return {
        "instance": _seen(note.low),
        "values": _seen(board.values("low", "owner").get()["low"]),
        "flat": [_seen(v) for v in board.values_list("low", flat=True)],
        "plain": _seen(Note.objects.annotate(t=Lower("title")).get(title="board").t),
    }


def test_lower_annotations_are_labelled(site: _Django) -> None:
    seen = site.run(lowered)
    alice = site.tenant("alice")
    assert seen["instance"] == (BODY.lower(), {DOCUMENT}, alice)
    assert seen["values"] == (BODY.lower(), {DOCUMENT}, alice)
    assert seen["flat"] == [(BODY.lower(), {DOCUMENT}, MIXED)]
    assert seen["plain"] == ("board", frozenset(), None)


@_probe
def subqueries(site: dict[str, Any]) -> dict[str, Any]:
    from django.db.models import OuterRef, Subquery

    Note, User, Profile = site["Note"], site["User"], site["Profile"]
    first = Subquery(Note.objects.filter(owner=OuterRef("pk")).order_by("id").values("body")[:1])
    user = User.objects.annotate(first=first).get(username="alice")
    same = Subquery(Note.objects.filter(pk=OuterRef("pk")).values("body")[:1])
    row = Note.objects.filter(title="board").annotate(s=same).values("s", "owner").get()
    email = Subquery(Profile.objects.filter(user=OuterRef("pk")).values("email")[:1])
    nested = Subquery(User.objects.filter(pk=OuterRef("owner")).annotate(e=email).values("e")[:1])
    deep = Note.objects.filter(title="board").annotate(n=nested).values_list("n", flat=True).get()
    return {"instance": _seen(user.first), "values": _seen(row["s"]), "nested": _seen(deep)}


@_probe
def searched(site: dict[str, Any]) -> dict[str, Any]:
    from django.contrib.postgres.search import SearchHeadline, SearchQuery, SearchVector

    Note = site["Note"]
    query = SearchQuery("merger")
    hits = Note.objects.annotate(v=SearchVector("body")).filter(v=query)
    headline = hits.annotate(h=SearchHeadline("body", query)).get()
    return {
        "hits": [_seen(n.body) for n in hits],
        "headline": _seen(headline.h),
        "values": _seen(hits.annotate(h=SearchHeadline("body", query)).values("h", "owner").get()["h"]),
    }


def test_full_text_search_results_and_headlines_are_labelled(site: _Django) -> None:
    seen = site.run(searched)
    alice = site.tenant("alice")
    assert seen["hits"] == [(BODY, {DOCUMENT}, alice)]
    assert "<b>merger</b>" in seen["headline"][0]
    assert seen["headline"][1:] == ({DOCUMENT}, alice) and seen["values"][1:] == ({DOCUMENT}, alice)


def test_subquery_annotations_are_labelled_with_several_tenants(site: _Django) -> None:
    seen = site.run(subqueries)
    assert seen["instance"] == (BODY, {DOCUMENT}, MIXED)
    assert seen["values"] == (BODY, {DOCUMENT}, MIXED)  # other rows', even with the owner selected
    assert seen["nested"] == ("alice@contoso.example", {"customer_data"}, MIXED)


@_probe
def aggregates(site: dict[str, Any]) -> dict[str, Any]:
    from django.contrib.postgres.aggregates import ArrayAgg, StringAgg
    from django.db.models import Count, Max, Min

    Note = site["Note"]
    found = Note.objects.aggregate(
        most=Max("body"),
        least=Min("body"),
        joined=StringAgg("body", delimiter=" | "),
        listed=ArrayAgg("body"),
        n=Count("body"),
        t=Max("title"),
    )
    alone = Note.objects.filter(title="board").aggregate(m=Max("body"))["m"]

    async def later() -> Any:
        return (await Note.objects.aaggregate(m=Max("body")))["m"]

    return {
        **{key: _seen(value) for key, value in found.items() if key not in ("joined", "listed", "n")},
        "joined": (sorted(found["joined"].split(" | ")), *_seen(found["joined"])[1:]),
        "listed": (sorted(found["listed"]), *_seen(found["listed"])[1:]),
        "n": (type(found["n"]) is int, found["n"]),
        "alone": _seen(alone),
        "async": _seen(asyncio.run(later())),
    }


def test_aggregates_are_labelled_with_several_tenants(site: _Django) -> None:
    seen = site.run(aggregates)
    assert seen["most"] == (BODY, {DOCUMENT}, MIXED)
    assert seen["least"] == (SHOPPING, {DOCUMENT}, MIXED)
    assert seen["joined"] == (sorted([BODY, SHOPPING]), {DOCUMENT}, MIXED)
    assert seen["listed"] == (sorted([BODY, SHOPPING]), {DOCUMENT}, MIXED)
    assert seen["n"] == (True, 2) and seen["t"] == ("shopping", frozenset(), None)
    # One tenant's rows only, but aggregate() sums up rows: no one row's tenant.
    assert seen["alone"] == (BODY, {DOCUMENT}, MIXED)
    assert seen["async"] == (BODY, {DOCUMENT}, MIXED)


@_probe
def combined(site: dict[str, Any]) -> dict[str, Any]:
    Note = site["Note"]
    board, shopping = Note.objects.filter(title="board"), Note.objects.filter(title="shopping")
    pairs = board.values_list("body", "owner").union(shopping.values_list("body", "owner"))
    crossed = Note.objects.values_list("title", flat=True).union(Note.objects.values_list("body", flat=True))
    instances = board.union(shopping).order_by("id")
    rows = board.union(shopping).values("body", "owner")
    return {
        "pairs": sorted(_seen(b) for b, _ in pairs),
        "crossed": sorted({(labels, tenant) for _, labels, tenant in map(_seen, crossed)}),
        "instances": [_seen(n.body) for n in instances],
        "rows": sorted(_seen(r["body"]) for r in rows),
    }


def test_union_labels_what_any_combined_query_puts_in_a_column(site: _Django) -> None:
    seen = site.run(combined)
    alice, bob = site.tenant("alice"), site.tenant("bob")
    both = sorted([(BODY, frozenset({DOCUMENT}), alice), (SHOPPING, frozenset({DOCUMENT}), bob)])
    assert seen["pairs"] == both and seen["rows"] == both
    # Titles beside bodies: labelled too, and a flat column holds no tenant.
    assert seen["crossed"] == [(frozenset({DOCUMENT}), MIXED)]
    assert seen["instances"] == [(BODY, {DOCUMENT}, alice), (SHOPPING, {DOCUMENT}, bob)]


# -- in a transaction, and what INSERT ... RETURNING hands back -----------------------------------


@_probe
def locked(site: dict[str, Any]) -> dict[str, Any]:
    from django.db import transaction

    Note = site["Note"]
    with transaction.atomic():
        note = Note.objects.select_for_update().get(title="board")
        joined = Note.objects.select_for_update(of=("self",)).select_related("owner").get(title="shopping")
        bodies = list(Note.objects.select_for_update().order_by("id").values_list("body", "owner"))
        skipped = list(Note.objects.select_for_update(skip_locked=True).order_by("id"))
    return {
        "instance": _seen(note.body),
        "joined": _seen(joined.body),
        "values": [_seen(b) for b, _ in bodies],
        "skipped": [_seen(n.body) for n in skipped],
    }


def test_select_for_update_in_a_transaction_is_labelled(site: _Django) -> None:
    seen = site.run(locked)
    alice, bob = site.tenant("alice"), site.tenant("bob")
    assert seen["instance"] == (BODY, {DOCUMENT}, alice)
    assert seen["joined"] == (SHOPPING, {DOCUMENT}, bob)
    both = [(BODY, {DOCUMENT}, alice), (SHOPPING, {DOCUMENT}, bob)]
    assert seen["values"] == both and seen["skipped"] == both


@_probe
def inserted(site: dict[str, Any]) -> dict[str, Any]:
    Ledger, Note = site["Ledger"], site["Note"]
    try:
        made = Ledger.objects.create(account="ACCT-1")
        (bulk,) = Ledger.objects.bulk_create([Ledger(account="ACCT-2")])
        got, created = Ledger.objects.get_or_create(account="ACCT-3")
        # ON CONFLICT ... DO UPDATE ... RETURNING: PostgreSQL hands the rows back.
        (upserted,) = Ledger.objects.bulk_create(
            [Ledger(account="ACCT-2", note="again")],
            update_conflicts=True,
            unique_fields=["account"],
            update_fields=["note"],
        )
        notes = Note.objects.bulk_create([Note(owner=site["bob"], title="t1", body="one")])
        return {
            "create": (made.pk is not None, _seen(made.stamp), _seen(made.low)),
            "bulk": (bulk.pk is not None, _seen(bulk.stamp), _seen(bulk.low)),
            "get_or_create": (created, _seen(got.stamp)),
            "upsert": (upserted.pk == bulk.pk, _seen(upserted.stamp)),
            "notes": [n.pk is not None for n in notes],
        }
    finally:
        Ledger.objects.all().delete()
        Note.objects.filter(title="t1").delete()


def test_values_the_database_makes_on_insert_are_labelled(site: _Django) -> None:
    seen = site.run(inserted)
    secret = "server-side secret"
    assert seen["create"] == (
        True,
        (secret, {"customer_data"}, "ACCT-1"),
        ("acct-1", {"customer_data"}, "ACCT-1"),
    )
    assert seen["bulk"] == (
        True,
        (secret, {"customer_data"}, "ACCT-2"),
        ("acct-2", {"customer_data"}, "ACCT-2"),
    )
    assert seen["get_or_create"] == (True, (secret, {"customer_data"}, "ACCT-3"))
    # The upsert's row is the one bulk_create() made: its id and default come back with RETURNING.
    assert seen["upsert"] == (True, (secret, {"customer_data"}, "ACCT-2"))
    assert seen["notes"] == [True]


@_probe
def written(site: dict[str, Any]) -> dict[str, Any]:
    from django.db import connection

    Ledger, Note = site["Ledger"], site["Note"]
    try:
        made = Ledger.objects.create(account="acct-7", entries={"plan": "gold"}, tags=["vip"])
        (bulk,) = Ledger.objects.bulk_create(
            [Ledger(account="acct-7", entries={"plan": "silver"}, tags=["eu"])],
            update_conflicts=True,
            unique_fields=["account"],
            update_fields=["entries", "tags"],
        )
        note = Note.objects.create(owner=site["bob"], title="t2", body="two")
        note.body = "two, revised"
        Note.objects.bulk_update([note], ["body"])
        made.entries = {**made.entries, "seats": 3}  # a labelled document saved again
        made.save()
        with connection.cursor() as cursor:
            cursor.execute(
                "select entries->>'plan', entries->>'seats', tags from djnotes_pg_ledger where account = 'acct-7'"
            )
            stored = cursor.fetchone()
        return {
            "create": (_seen(made.entries), _seen(made.tags), _seen(made.stamp)),
            "upsert": (_seen(bulk.entries), _seen(bulk.tags)),
            "bulk_update": _seen(note.body),
            "stored": stored,
        }
    finally:
        Ledger.objects.all().delete()
        Note.objects.filter(title="t2").delete()


@_probe
def natural_keys(site: dict[str, Any]) -> dict[str, Any]:
    from django.core import serializers

    User, Note = site["User"], site["Note"]

    def by_address(user: Any) -> tuple[str]:
        # A natural key read through a relation: the address on the user's profile.
        return (f"{user.profile.email}",)

    own = User.__dict__.get("natural_key")
    User.natural_key = by_address
    try:
        notes = Note.objects.filter(title="board")
        text = serializers.serialize("json", notes, fields=("owner",), use_natural_foreign_keys=True)
        by_id = serializers.serialize("json", notes, fields=("owner",))
    finally:
        if own is None:
            del User.natural_key
        else:
            User.natural_key = own
    return {"text": _seen(text), "by_id": _seen(by_id)}


def test_natural_keys_in_serialized_text_carry_the_labels_of_what_they_are_made_from(site: _Django) -> None:
    seen = site.run(natural_keys)
    text, labels, tenant = seen["text"]
    assert "alice@contoso.example" in text and (labels, tenant) == ({"customer_data"}, site.tenant("alice"))
    assert "alice@contoso.example" not in seen["by_id"][0] and seen["by_id"][1:] == (frozenset(), None)


def test_instances_the_application_writes_are_labelled_with_their_row_tenant(site: _Django) -> None:
    seen = site.run(written)
    data = {"customer_data"}
    assert seen["create"] == (
        ({"plan": "gold", "seats": 3}, data, "acct-7"),
        (["vip"], data, "acct-7"),
        ("server-side secret", data, "acct-7"),
    )
    assert seen["upsert"] == (({"plan": "silver"}, data, "acct-7"), (["eu"], data, "acct-7"))
    assert seen["bulk_update"] == ("two, revised", {DOCUMENT}, site.tenant("bob"))
    assert seen["stored"] == ("gold", "3", ["vip"])


# -- PostgreSQL's own field types ----------------------------------------------------------------


@_probe
def documents_and_arrays(site: dict[str, Any]) -> dict[str, Any]:
    from django.contrib.postgres.aggregates import ArrayAgg, JSONBAgg
    from django.db import connection
    from django.db.models.fields.json import KT

    Ledger = site["Ledger"]
    Ledger.objects.create(account="acct-9", entries={"plan": "gold", "seats": 7}, tags=["vip", "eu"])
    try:
        ledger = Ledger.objects.get(account="acct-9")
        entries, tags = ledger.entries, ledger.tags
        plan = Ledger.objects.values("entries__plan", "account").get()["entries__plan"]
        keyed = Ledger.objects.annotate(plan=KT("entries__plan")).get()
        first_tag = Ledger.objects.values_list("tags__0", flat=True).get()
        whole = Ledger.objects.values("entries", "tags", "account").get()
        gathered = Ledger.objects.aggregate(e=JSONBAgg("entries"), t=ArrayAgg("tags"))
        found = Ledger.objects.filter(entries__plan=entries["plan"], tags__contains=tags).count()
        ledger.entries = {**entries, "seats": 8}  # a labelled document written back
        ledger.tags = [*tags, "new"]
        ledger.save()
        with connection.cursor() as cursor:
            cursor.execute("select entries->>'plan', tags from djnotes_pg_ledger where account = 'acct-9'")
            stored = cursor.fetchone()
        return {
            "entries": _seen(entries),
            "plan": _seen(entries["plan"]),
            "seats": _seen(entries["seats"]),
            "tags": _seen(tags),
            "tag": _seen(tags[0]),
            "values_key": _seen(plan),
            "annotated_key": _seen(keyed.plan),
            "first_tag": _seen(first_tag),
            "whole": (_seen(whole["entries"]), _seen(whole["tags"])),
            "gathered": (_seen(gathered["e"]), _seen(gathered["t"])),
            "found": found,
            "stored": (stored[0], stored[1], type(stored[0]) is str),
        }
    finally:
        Ledger.objects.all().delete()


def test_json_and_array_fields_come_back_labelled(site: _Django) -> None:
    seen = site.run(documents_and_arrays)
    data = {"customer_data"}
    assert seen["entries"] == ({"plan": "gold", "seats": 7}, data, "acct-9")
    assert seen["plan"] == ("gold", data, "acct-9") and seen["seats"] == (7, data, "acct-9")
    assert seen["tags"] == (["vip", "eu"], data, "acct-9") and seen["tag"] == ("vip", data, "acct-9")
    assert seen["values_key"] == ("gold", data, "acct-9")  # the tenant selected beside it
    assert seen["annotated_key"] == ("gold", data, "acct-9")
    assert seen["first_tag"] == ("vip", data, MIXED)  # a flat list: the tenant not in the row
    assert seen["whole"] == (({"plan": "gold", "seats": 7}, data, "acct-9"), (["vip", "eu"], data, "acct-9"))
    assert seen["gathered"] == (([{"plan": "gold", "seats": 7}], data, MIXED), ([["vip", "eu"]], data, MIXED))
    assert seen["found"] == 1
    assert seen["stored"] == ("gold", ["vip", "eu", "new"], True)


# -- violations ----------------------------------------------------------------------------------


@pg.purpose("advertising")
def _choose_ad(text: Any) -> str:
    return "ad-for-" + str(len(text))


def _violation(error: pg.PurposeViolation) -> list[tuple[Any, ...]]:
    return [(v.via, v.purpose, v.category, v.rule, v.tenant, v.mode) for v in error.violations]


@_probe
def refused(site: dict[str, Any]) -> dict[str, Any]:
    from django.test import Client

    Note, Ledger, Profile = site["Note"], site["Ledger"], site["Profile"]
    found: dict[str, Any] = {}
    try:
        _choose_ad(Note.objects.get(title="board").body)
    except pg.PurposeViolation as error:
        found["body"] = _violation(error)
    Ledger.objects.create(account="acct-5", entries={"plan": "gold"})
    try:
        _choose_ad(Ledger.objects.get().entries["plan"])
    except pg.PurposeViolation as error:
        found["json"] = _violation(error)
    finally:
        Ledger.objects.all().delete()

    @pg.purpose("advertising")
    def load() -> Any:
        return Profile.objects.get(user=site["alice"])

    try:
        load()
    except pg.PurposeViolation as error:
        found["source"] = _violation(error)
    client = Client()
    client.force_login(site["alice"])
    response = client.get("/ads/", HTTP_ACCEPT="application/json")
    found["http"] = (response.status_code, response.json(), BODY in response.content.decode())
    return found


def test_a_labelled_value_reaching_a_forbidden_purpose_is_refused(site: _Django) -> None:
    seen = site.run(refused)
    alice = site.tenant("alice")
    assert seen["body"] == [("argument", "advertising", DOCUMENT, "no-advertising", alice, "enforce")]
    assert seen["json"] == [
        ("argument", "advertising", "customer_data", "no-advertising", "acct-5", "enforce")
    ]
    assert [(via, purpose, category) for via, purpose, category, *_ in seen["source"]] == [
        ("source", "advertising", "customer_data")
    ]
    status, body, leaked = seen["http"]
    assert status == 403 and not leaked
    assert (body["purpose"], body["category"], body["rule"]) == ("advertising", DOCUMENT, "no-advertising")


if __name__ == "__main__":
    _serve(sys.argv[1])
