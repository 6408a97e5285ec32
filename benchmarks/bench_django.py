"""Reading a declared field of a Django model instance against a plain one,
and loading rows of a declared model with and without labelling.

Django reads a loaded field straight from the instance's dict (its field
descriptor is a non-data descriptor). Instrumented, a declared field's
descriptor tells the request's zone what a read hands out, so every read of
that field runs Python code: this is the hot path of a Django app, measured
against reading an undeclared field of the same instance (a plain dict
read). Loading a queryset (instances, ``values()`` rows, a flat
``values_list()``) labels each row's declared value, with the row's tenant
where the row holds it: those rows are the load with the integration on
against the same load with it off. The integration is switched on or off
in each statement's setup, which is not timed. Django runs on an in-memory
SQLite database.
"""

from typing import Annotated, Any

from harness import Case, Group

import purposeguard as pg

READS = 1000
ROWS = 700  # 100 of them of the zone's tenant
LOAD = 500  # rows a queryset loads
BODY = "Quarterly numbers attached; the forecast for the next two quarters is in the second sheet. " * 2


def _namespace() -> dict[str, object]:
    import django
    from django.conf import settings

    settings.configure(
        INSTALLED_APPS=["django.contrib.contenttypes", "django.contrib.auth"],
        DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}},
        DEFAULT_AUTO_FIELD="django.db.models.AutoField",
        USE_TZ=True,
    )
    django.setup()
    from django.db import connection, models
    from purposeguard.integrations import django as pg_django

    pg.configure("trust-center")

    class Message(models.Model):
        __purposeguard_tenant__ = "tenant"
        tenant = models.CharField(max_length=40)
        subject = models.CharField(max_length=200)
        body: Annotated[str, pg.Category("customer_data.content.email")] = models.TextField()

        class Meta:
            app_label = "bench"

    with connection.schema_editor() as editor:
        editor.create_model(Message)
    Message.objects.bulk_create(
        Message(tenant=f"tenant-{i % 7}", subject=f"subject {i}", body=BODY) for i in range(ROWS)
    )
    pg_django.instrument()
    loaded: Any = Message.objects.get(pk=1)
    many: list[Any] = list(Message.objects.filter(tenant="tenant-0"))
    assert pg.labels_of(loaded.body) and type(Message.__dict__["body"]).__name__ == "ReadingDeferredAttribute"

    def plain() -> int:
        with pg.zone(tenant="tenant-0"):
            total = 0
            for _ in range(READS):
                total += len(loaded.subject)
            return total

    class Bare:
        """The least a data descriptor can do: hand out the instance's dict value."""

        def __get__(self, instance: Any, cls: Any = None) -> Any:
            return instance.__dict__["body"]

        def __set__(self, instance: Any, value: Any) -> None:
            instance.__dict__["body"] = value

    class Holder:
        body = Bare()

    holder = Holder()
    holder.body = BODY

    def floor() -> int:
        with pg.zone(tenant="tenant-0"):
            total = 0
            for _ in range(READS):
                total += len(holder.body)
            return total

    def declared() -> int:
        total = 0
        for _ in range(READS):
            total += len(loaded.body)
        return total

    def declared_in_zone() -> int:
        with pg.zone(tenant="tenant-0"):
            return declared()

    def plain_many() -> int:
        with pg.zone(tenant="tenant-0"):
            return sum(len(message.subject) for message in many)

    def declared_many() -> int:
        with pg.zone(tenant="tenant-0"):
            return sum(len(message.body) for message in many)

    def switch_on() -> None:
        # The model is in no installed app: its first load declares it.
        pg_django.instrument()
        Message.objects.get(pk=1)
        assert type(Message.__dict__["body"]).__name__ == "ReadingDeferredAttribute"

    # Loading: every row of the slice is really fetched and built (a fresh queryset each time).
    def load_instances() -> int:
        return len(list(Message.objects.order_by("id")[:LOAD]))

    def load_values() -> int:
        return len(list(Message.objects.order_by("id")[:LOAD].values("id", "tenant", "subject", "body")))

    def load_flat() -> int:
        return len(list(Message.objects.order_by("id")[:LOAD].values_list("body", flat=True)))

    (row,) = Message.objects.filter(pk=1).values("tenant", "body")
    assert pg.tenant_of(row["body"]) == "tenant-0" and pg.labels_of(row["body"])
    assert pg.labels_of(next(iter(Message.objects.values_list("body", flat=True))))

    pg_django.uninstrument()
    return {
        "load_instances": load_instances,
        "load_values": load_values,
        "load_flat": load_flat,
        "switch_on": switch_on,
        "plain": plain,
        "declared": declared,
        "declared_in_zone": declared_in_zone,
        "plain_many": plain_many,
        "floor": floor,
        "declared_many": declared_many,
        "pg_django": pg_django,
    }


OFF = "pg_django.uninstrument()"
ON = "switch_on()"


def groups() -> list[Group]:
    namespace = _namespace()
    return [
        Group(
            f"Django: {READS} reads of a field of a loaded instance",
            Case(f"{READS} reads of an undeclared field, instrumented, in a zone", "plain()", setup=ON),
            [
                # What any descriptor that sees reads costs, before it does anything.
                Case(f"{READS} reads through a bare Python data descriptor", "floor()"),
                Case(f"{READS} reads of a declared field, not instrumented", "declared_in_zone()", setup=OFF),
                Case(
                    f"{READS} reads of a declared field, instrumented, outside a zone", "declared()", setup=ON
                ),
                # Each read tells the zone what flows (a set test once it knows).
                Case(
                    f"{READS} reads of a declared field, instrumented, in a zone",
                    "declared_in_zone()",
                    setup=ON,
                ),
            ],
            globals=namespace,
            number=200,
            rounds=9,
            baseline_label="the same reads of an undeclared field",
        ),
        Group(
            f"Django: one read of a field of each of {ROWS // 7} loaded instances, in a zone",
            Case(f"{ROWS // 7} reads of an undeclared field, instrumented", "plain_many()", setup=ON),
            [
                Case(
                    f"{ROWS // 7} reads of a declared field, not instrumented", "declared_many()", setup=OFF
                ),
                Case(f"{ROWS // 7} reads of a declared field, instrumented", "declared_many()", setup=ON),
            ],
            globals=namespace,
            number=200,
            rounds=9,
            baseline_label="the same reads of an undeclared field",
        ),
        *(
            Group(
                f"Django: {what}, {LOAD} rows (one declared field each)",
                Case(f"{case}, not instrumented", statement, setup=OFF),
                [Case(f"{case}, labelled at the source", statement, "informative", setup=ON)],
                globals=namespace,
                number=20,
                rounds=9,
                baseline_label="the same load without purposeguard",
            )
            for what, case, statement in (
                ("iterate a queryset of instances", f"load {LOAD} instances", "load_instances()"),
                (".values() rows", f"load {LOAD} .values() rows", "load_values()"),
                (".values_list(flat=True) of the declared field", f"load {LOAD} flat values", "load_flat()"),
            )
        ),
    ]
