"""Core hot paths against a bare call (targets: BENCHMARKS.md)."""

from __future__ import annotations

import statistics
import tempfile
import timeit
from collections.abc import Callable
from pathlib import Path
from typing import Any

from harness import Case, Group, Row

import purposeguard as pg

EMAIL = "customer_data.content.email"
BODY = (
    "Hello team, the quarterly numbers are attached. Please review them before Thursday's "
    "meeting and send comments to finance. Thanks, Alex"
)


def _setup_namespace() -> dict[str, object]:
    pg.configure("trust-center")

    def bare(x: object) -> object:
        return x

    def closure_decorator(fn):
        def wrapper(x):
            return fn(x)

        return wrapper

    passthrough = closure_decorator(bare)

    @pg.purpose("service.operations")
    def guarded(x: object) -> object:
        return x

    @pg.purpose("advertising")
    def denied(x: object) -> object:
        return x

    trace_guard = pg.Guard(pg.Policy.load("trust-center"), mode="trace")
    labelled = pg.label("ticket 4711", EMAIL)
    body = pg.label(BODY, EMAIL)
    policy = pg.get_guard().policy
    labels = frozenset({EMAIL})
    policy.decide(labels, "service.operations")
    return {
        "bare": bare,
        "passthrough": passthrough,
        "guarded": guarded,
        "denied": denied,
        "trace_guard": trace_guard,
        "labelled": labelled,
        "plain_body": BODY,
        "body": body,
        "label": pg.label,
        "EMAIL": EMAIL,
        "decide": policy.decide,
        "pg_decide": pg.decide,
        "email_list": [EMAIL],
        "labels": labels,
        "enforcer": _casbin_enforcer(),
    }


def _casbin_enforcer():
    import casbin

    folder = Path(tempfile.mkdtemp(prefix="pg-bench-casbin-"))
    (folder / "model.conf").write_text(
        "[request_definition]\nr = sub, obj, act\n\n[policy_definition]\np = sub, obj, act\n\n"
        "[policy_effect]\ne = some(where (p.eft == allow))\n\n"
        "[matchers]\nm = r.sub == p.sub && r.obj == p.obj && r.act == p.act\n"
    )
    policy = pg.Policy.load("trust-center")
    lines = []
    for category in policy.taxonomy.categories:
        for purpose in policy.taxonomy.purposes:
            if policy.decide([category], purpose).allowed:
                lines.append(f"p, {category}, {purpose}, use")
    (folder / "policy.csv").write_text("\n".join(lines) + "\n")
    return casbin.Enforcer(str(folder / "model.conf"), str(folder / "policy.csv"))


def groups() -> list[Group]:
    namespace = _setup_namespace()
    hot = Group(
        "core",
        Case("bare call f(x)", "bare(1)"),
        [
            Case("closure passthrough", "passthrough(1)"),
            Case("@purpose, unlabelled argument", "guarded(1)", "<= 10x", ratio_limit=10),
            Case("@purpose, labelled argument, allowed", "guarded(labelled)", "<= 12x", ratio_limit=12),
            Case(
                "@purpose, denied argument, trace mode",
                "with trace_guard.activate(): denied(labelled)",
                "informative",
            ),
            Case("label('ticket 4711', category)", "label('ticket 4711', EMAIL)", "<= 12x", ratio_limit=12),
            Case("decide() of a label set seen before", "decide(labels, 'service.operations')", ""),
        ],
        globals=namespace,
        number=20000,
    )
    # Each labelled operation against the same operation on the plain string.
    operations = [
        Group(
            f"labelled str, 146 chars: {title}",
            Case(f"plain {stmt}", f"plain_body{stmt}"),
            [Case(f"labelled {stmt}", f"body{stmt}", target, ratio_limit=limit)],
            globals=namespace,
            number=20000,
            baseline_label="plain operation",
        )
        for title, stmt, target, limit in [
            ("upper()", ".upper()", "<= 3x", 3.0),
            ("replace()", ".replace('team', 'all')", "<= 3x", 3.0),
            # 22 pieces, each a labelled instance: informative, not a single-result op.
            ("split()", ".split()", "informative", None),
            ("slice", "[10:90]", "informative", None),
            ("concatenation", " + ' -- sent'", "informative", None),
        ]
    ]
    # The public call against the memoised lookup it ends in.
    public_decide = Group(
        "pg.decide() against the memoised decision",
        Case("Policy.decide(frozenset seen before)", "decide(labels, 'service.operations')"),
        [
            Case("pg.decide(frozenset)", "pg_decide(labels, 'service.operations')", "<= 2x", ratio_limit=2),
            Case("pg.decide('category')", "pg_decide(EMAIL, 'service.operations')", "<= 2x", ratio_limit=2),
            # Held in a variable, as the baseline's frozenset is.
            Case(
                "pg.decide(['category'])",
                "pg_decide(email_list, 'service.operations')",
                "<= 2x",
                ratio_limit=2,
            ),
            Case(
                "pg.decide([EMAIL]) building the list",
                "pg_decide([EMAIL], 'service.operations')",
                "informative",
            ),
        ],
        globals=namespace,
        number=20000,
        baseline_label="memoised decision",
    )
    signatures_ns = _signatures_namespace(namespace)
    # Each guarded signature against the same function undecorated, called
    # the same way: Python's own cost of packing *args/**kwargs and of the
    # body's args[0]/kwargs["x"] is in both. Its ratio to the bare f(x) is
    # kept as an informative row beside it.
    signature_rows = [
        ("f(*args)", "star(labelled)", "bare_star(labelled)"),
        ("f(**kwargs)", "star_kw(x=labelled)", "bare_star_kw(x=labelled)"),
        ("f(*args, **kwargs)", "both(labelled)", "bare_both(labelled)"),
        ("f(*, x)", "keyword_only(x=labelled)", "bare_keyword_only(x=labelled)"),
        ("f(x, /)", "positional_only(labelled)", "bare_positional_only(labelled)"),
        ("method", "service.method(labelled)", "service.bare_method(labelled)"),
        ("object with __call__", "handler(labelled)", "bare_handler(labelled)"),
    ]
    signatures = Group(
        "every signature on the fast path (one labelled allowed argument)",
        Case("bare call f(labelled)", "bare(labelled)"),
        [
            Case("@purpose f(x)", "guarded(labelled)", "<= 12x", ratio_limit=12),
            *(Case(f"bare {what}", bare, "informative") for what, _, bare in signature_rows),
            *(
                Case(f"@purpose {what}", stmt, "<= 12x", ratio_limit=12, relative_to=f"bare {what}")
                for what, stmt, _ in signature_rows
            ),
            # What a guard cannot go below: a passthrough wrapper with the same
            # signature (Python builds the argument tuple and dicts twice).
            Case("passthrough f(*args), no guard (floor)", "pass_star(labelled)", "informative"),
            Case("passthrough f(**kwargs), no guard (floor)", "pass_star_kw(x=labelled)", "informative"),
            Case(
                "@purpose method, self with 3 attributes",
                "mailbox.method(labelled)",
                "informative",
                relative_to="bare method",
            ),
        ],
        globals=signatures_ns,
        number=20000,
    )
    many_arguments = Group(
        "32 labelled arguments",
        Case("@purpose f(a0, ..., a31)", "params32(*labelled32)"),
        [Case("@purpose f(*args) with 32", "star32(*labelled32)", "<= 2x", ratio_limit=2)],
        globals=signatures_ns,
        number=5000,
        baseline_label="32 positional parameters",
    )
    objects = Group(
        "labelling other objects (why side table first, proxy as fallback)",
        Case("plain object attribute", "mailbox.owner"),
        [
            Case("side-table-labelled object attribute", "labelled_mailbox.owner", "informative"),
            Case("wrapt ObjectProxy attribute", "proxied_mailbox.owner", "informative"),
            Case("labels_of(side-table object)", "labels_of(labelled_mailbox)", "informative"),
        ],
        globals=_objects_namespace(),
        number=20000,
    )
    return [hot, *operations, public_decide, signatures, many_arguments, objects]


def _signatures_namespace(base: dict[str, object]) -> dict[str, object]:
    def star(*args):
        return args[0]

    def star_kw(**kwargs):
        return kwargs["x"]

    def both(*args, **kwargs):
        return args[0]

    def keyword_only(*, x):
        return x

    def positional_only(x, /):
        return x

    guard = pg.purpose("service.operations")

    class Service:
        def bare_method(self, x):
            return x

        method = guard(bare_method)

    class Handler:
        def __call__(self, x):
            return x

    class Mailbox(Service):
        def __init__(self):
            self.owner, self.size, self.folder = "ops", 3, None

    def passthrough(fn):
        def star_wrapper(*args):
            return fn(*args)

        def star_kw_wrapper(**kwargs):
            return fn(**kwargs)

        return star_wrapper, star_kw_wrapper

    pass_star = passthrough(lambda *args: args[0])[0]
    pass_star_kw = passthrough(lambda **kwargs: kwargs["x"])[1]

    @pg.purpose("service.operations")
    def star32(*args):
        return args[0]

    source = "def params32(" + ", ".join(f"a{i}" for i in range(32)) + "):\n    return a0\n"
    made: dict[str, Any] = {}
    exec(source, made)
    plain: dict[str, Callable[..., Any]] = {
        "star": star,
        "star_kw": star_kw,
        "both": both,
        "keyword_only": keyword_only,
        "positional_only": positional_only,
        "handler": Handler(),
    }
    return {
        **base,
        **{f"bare_{name}": fn for name, fn in plain.items()},
        **{name: guard(fn) for name, fn in plain.items()},
        "service": Service(),
        "mailbox": Mailbox(),
        "pass_star": pass_star,
        "pass_star_kw": pass_star_kw,
        "star32": star32,
        "params32": pg.purpose("service.operations")(made["params32"]),
        "labelled32": tuple(pg.label(f"ticket {i}", EMAIL) for i in range(32)),
    }


def _objects_namespace() -> dict[str, object]:
    from purposeguard._labels import LabelledProxy, _kind_for

    class Mailbox:
        def __init__(self) -> None:
            self.owner = "a"

    labelled = pg.label(Mailbox(), "customer_data")
    proxied = LabelledProxy(Mailbox(), _kind_for(frozenset({"customer_data"}), None))
    return {
        "mailbox": Mailbox(),
        "labelled_mailbox": labelled,
        "proxied_mailbox": proxied,
        "labels_of": pg.labels_of,
    }


def rows(quick: bool = False, smoke: bool = False) -> list[Row]:
    """decide() of a cached label set against pycasbin's enforce, interleaved."""
    namespace = _setup_namespace()
    decide_timer = timeit.Timer("decide(labels, 'service.operations')", globals=namespace)
    casbin_timer = timeit.Timer(
        "enforcer.enforce('customer_data.content.email', 'service.operations', 'use')", globals=namespace
    )
    rounds, n_decide, n_casbin = (1, 20, 2) if smoke else (3, 2000, 50) if quick else (9, 20000, 300)
    ratios, decide_ns, casbin_ns = [], [], []
    for _ in range(rounds):
        d = decide_timer.timeit(n_decide) / n_decide
        c = casbin_timer.timeit(n_casbin) / n_casbin
        ratios.append(c / d)
        decide_ns.append(d * 1e9)
        casbin_ns.append(c * 1e9)
    ratio = statistics.median(ratios)
    return [
        Row("decide vs pycasbin", "pycasbin enforce (baseline)", statistics.median(casbin_ns), 1.0, "", None),
        Row(
            "decide vs pycasbin",
            "decide() of a label set seen before: times faster than casbin",
            statistics.median(decide_ns),
            ratio,
            ">= 100x faster",
            ratio >= 100,
        ),
    ]
