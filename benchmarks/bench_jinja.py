"""Rendering a Jinja2 page of many rows with an instrumented environment
against a plain ``jinja2.Environment``.

The page is a table of order rows: a loop over objects with attribute
reads, a filter and ``~`` concatenation in every row, autoescape on. The
instrumented environment (``purposeguard.integrations.jinja2.Environment``)
notes every value the template reads and labels the page with what it read.
Each template is compiled once, before timing; a statement is one render.
The values are plain strings, or the same strings labelled as an ORM loads
them (a category and the row's tenant): plain Jinja2 rendering labelled
values pays for the labelled strings' own operations, shown beside.
"""

from typing import Any

import jinja2
from harness import Case, Group
from purposeguard.integrations.jinja2 import Environment

import purposeguard as pg

ROWS = 200
SOURCE = """<table>
{%- for order in orders %}
<tr><td>{{ order.number }}</td><td>{{ order.name|title }}</td>
<td>{{ order.email ~ " (" ~ order.plan ~ ")" }}</td><td>{{ order.total }}</td></tr>
{%- endfor %}
</table>"""


class Order:
    def __init__(self, number: int, name: str, email: str, plan: str, total: str) -> None:
        self.number = number
        self.name = name
        self.email = email
        self.plan = plan
        self.total = total


def _orders(labelled: bool) -> list[Order]:
    def mark(value: str, category: str, tenant: str) -> str:
        return pg.label(value, category, tenant=tenant) if labelled else value

    orders = []
    for i in range(ROWS):
        tenant = f"tenant-{i % 7}"
        orders.append(
            Order(
                i,
                mark(f"customer number {i}", "customer_data", tenant),
                mark(f"user{i}@contoso.example", "customer_data", tenant),
                "business" if i % 3 else "personal",
                f"{i * 7 % 500}.{i % 100:02d} EUR",
            )
        )
    return orders


def _namespace() -> dict[str, Any]:
    pg.configure("trust-center")
    plain = jinja2.Environment(autoescape=True).from_string(SOURCE)
    guarded = Environment(autoescape=True).from_string(SOURCE)
    unlabelled, labelled = _orders(False), _orders(True)
    page = guarded.render(orders=labelled)
    assert pg.labels_of(page) == {"customer_data"}
    assert not pg.labels_of(guarded.render(orders=unlabelled))
    assert plain.render(orders=unlabelled) == page
    return {"plain": plain, "guarded": guarded, "unlabelled": unlabelled, "labelled": labelled}


def groups() -> list[Group]:
    namespace = _namespace()
    plain_labelled = "plain Environment, labelled values"
    return [
        Group(
            f"Jinja2: render a page of {ROWS} rows (attribute reads, a filter, ~ in each row)",
            Case("plain Environment, unlabelled values", "plain.render(orders=unlabelled)"),
            [
                Case(
                    "instrumented Environment, unlabelled values",
                    "guarded.render(orders=unlabelled)",
                    "informative",
                ),
                # What the labelled strings' own operations (|title, ~, escaping) cost, with no hook.
                Case(plain_labelled, "plain.render(orders=labelled)", "informative"),
                Case(
                    "instrumented Environment, labelled values",
                    "guarded.render(orders=labelled)",
                    "informative",
                    relative_to=plain_labelled,
                ),
            ],
            globals=namespace,
            number=20,
            rounds=9,
            baseline_label="the same render by a plain jinja2.Environment",
        ),
    ]
