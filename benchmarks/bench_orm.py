"""Loading rows through SQLAlchemy with and without labelling at the source.

Each statement loads the same rows from an in-memory SQLite database, in a
fresh session (so every row is really loaded): once with the integration
switched off, once with it on (each row's labelled columns come back as
labelled values with the row's tenant). The ratio of the two is the cost of
labelling per loaded row; the per-row time is the load time divided by the
row count. A third group reads a declared attribute of a loaded instance
(instrumented, the read tells the request's zone what flows). The integration is switched on or off in each statement's setup,
which is not timed.
"""

from typing import Annotated

from harness import Case, Group, Row, run_group
from purposeguard.integrations import sqlalchemy as pg_sqlalchemy
from sqlalchemy import create_engine, select
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

import purposeguard as pg

ROWS = 200
READS = 1000
BODY = "Quarterly numbers attached; the forecast for the next two quarters is in the second sheet. " * 2


class Base(DeclarativeBase):
    pass


class Message(Base):
    __tablename__ = "bench_messages"
    __purposeguard_tenant__ = "tenant"
    id: Mapped[int] = mapped_column(primary_key=True)
    tenant: Mapped[str]
    subject: Mapped[str]
    sender: Mapped[Annotated[str, pg.Category("customer_data")]]
    body: Mapped[Annotated[str, pg.Category("customer_data.content.email")]]


def _namespace() -> dict[str, object]:
    pg.configure("trust-center")
    engine = create_engine("sqlite://")
    Base.metadata.create_all(engine)
    with Session(engine) as session:
        session.add_all(
            Message(
                tenant=f"tenant-{i % 7}", subject=f"subject {i}", sender=f"user{i}@example.org", body=BODY
            )
            for i in range(ROWS)
        )
        session.commit()

    def instances() -> int:
        with Session(engine) as session:
            return len(session.scalars(select(Message)).all())

    def rows() -> int:
        with Session(engine) as session:
            return len(session.execute(select(Message.id, Message.tenant, Message.body)).all())

    pg_sqlalchemy.instrument()
    with Session(engine, expire_on_commit=False) as session:
        loaded = session.scalars(select(Message)).first()
        assert loaded is not None and pg.labels_of(loaded.body)

    def reads() -> int:
        total = 0
        for _ in range(READS):
            total += len(loaded.body)
        return total

    def reads_in_zone() -> int:
        with pg.zone(tenant="tenant-0"):
            return reads()

    pg_sqlalchemy.uninstrument()
    return {
        "instances": instances,
        "rows": rows,
        "reads": reads,
        "reads_in_zone": reads_in_zone,
        "pg_sqlalchemy": pg_sqlalchemy,
    }


OFF = "pg_sqlalchemy.uninstrument()"
ON = "pg_sqlalchemy.instrument()"


def _groups(quick: bool) -> list[Group]:
    namespace = _namespace()
    number, rounds = (3, 3) if quick else (20, 9)
    return [
        Group(
            f"SQLAlchemy ORM: {ROWS} instances (2 labelled columns each)",
            Case(f"load {ROWS} instances, not instrumented", "instances()", setup=OFF),
            [Case(f"load {ROWS} instances, labelled at the source", "instances()", "informative", setup=ON)],
            globals=namespace,
            number=number,
            rounds=rounds,
            baseline_label="the same load without purposeguard",
        ),
        Group(
            f"SQLAlchemy select(Message.id, Message.tenant, Message.body): {ROWS} rows",
            Case(f"load {ROWS} rows, not instrumented", "rows()", setup=OFF),
            [Case(f"load {ROWS} rows, labelled at the source", "rows()", "informative", setup=ON)],
            globals=namespace,
            number=number,
            rounds=rounds,
            baseline_label="the same load without purposeguard",
        ),
        Group(
            f"SQLAlchemy: {READS} reads of a declared attribute of a loaded instance",
            Case(f"{READS} reads, not instrumented, in a zone", "reads_in_zone()", setup=OFF),
            [
                Case(f"{READS} reads, instrumented, outside a zone", "reads()", "informative", setup=ON),
                # Each read tells the zone what flows (a set test once it knows).
                Case(f"{READS} reads, instrumented, in a zone", "reads_in_zone()", "informative", setup=ON),
            ],
            globals=namespace,
            number=number,
            rounds=rounds,
            baseline_label="the same reads without purposeguard",
        ),
    ]


def rows(quick: bool = False) -> list[Row]:
    """The rows, with the per-row cost (load time / row count) in each note."""
    out: list[Row] = []
    try:
        for group in _groups(quick):
            for row in run_group(group):
                per = READS if "reads" in row.name else ROWS
                unit = "read" if "reads" in row.name else "row"
                row.note = (
                    row.note + " " if row.note else ""
                ) + f"({row.per_call_ns / per:.0f} ns per {unit})"
                out.append(row)
    finally:
        pg_sqlalchemy.uninstrument()
    return out
