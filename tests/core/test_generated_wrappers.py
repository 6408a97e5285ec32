"""The wrapper generated with a function's own signature behaves exactly like
the generic ``*args, **kwargs`` one, over random signatures and flag states."""

from __future__ import annotations

import linecache
import traceback
from dataclasses import dataclass
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import purposeguard as pg
from purposeguard._guarded import _generated_wrapper, _generic_wrapper
from purposeguard._state import STATE

EMAIL = "customer_data.content.email"
# Allowed for content, allowed for customer data only, denied for both.
PURPOSES = ("service.operations", "service.communications", "advertising")
# What an argument is: plain values, labelled ones (with and without a
# tenant), and a container holding a labelled value.
VALUES = ("plain", "number", "content", "customer", "tenant_content", "list_of_content", "none")
RETURNS = ("first", "fresh", "all", "plain")


@dataclass(frozen=True)
class Signature:
    positional_only: int
    positional: int
    defaults: int  # trailing positional parameters with a default
    var_args: bool
    keyword_only: tuple[bool, ...]  # one per keyword-only parameter: has a default
    var_kwargs: bool

    def names(self) -> list[str]:
        out = [f"p{i}" for i in range(self.positional_only)]
        out += [f"a{i}" for i in range(self.positional)]
        out += ["args"] if self.var_args else []
        out += [f"k{i}" for i in range(len(self.keyword_only))]
        out += ["kwargs"] if self.var_kwargs else []
        return out

    def source(self) -> str:
        params: list[str] = []
        positional = [f"p{i}" for i in range(self.positional_only)] + [
            f"a{i}" for i in range(self.positional)
        ]
        first_default = len(positional) - self.defaults
        for index, name in enumerate(positional):
            params.append(f"{name}=_default" if index >= first_default else name)
            if index == self.positional_only - 1:
                params.append("/")
        if self.var_args:
            params.append("*args")
        elif self.keyword_only:
            params.append("*")
        for index, has_default in enumerate(self.keyword_only):
            params.append(f"k{index}=_default" if has_default else f"k{index}")
        if self.var_kwargs:
            params.append("**kwargs")
        received = ", ".join(self.names())
        return (
            f"def fn({', '.join(params)}):\n"
            "    _seen.append(_current())\n"
            "    if _fail:\n"
            "        raise ValueError('the function failed')\n"
            f"    return _result(({received}{',' if received else ''}))\n"
        )


@st.composite
def signatures(draw: Any) -> Signature:
    if draw(st.integers(0, 3)) == 0:
        # Only *args (and **kwargs): the wrappers' branch for one item.
        return Signature(0, 0, 0, True, (), draw(st.booleans()))
    positional_only = draw(st.integers(0, 2))
    positional = draw(st.integers(0, 3))
    return Signature(
        positional_only,
        positional,
        draw(st.integers(0, positional_only + positional)),
        draw(st.booleans()),
        tuple(draw(st.lists(st.booleans(), max_size=2))),
        draw(st.booleans()),
    )


@dataclass(frozen=True)
class Call:
    """How one call passes its arguments (value kinds, not values: each
    wrapper gets values built after its own reset)."""

    positional: tuple[str, ...]
    keywords: tuple[tuple[str, str], ...]


@st.composite
def calls(draw: Any, signature: Signature) -> Call:
    value = st.sampled_from(VALUES)
    positional: list[str] = []
    keywords: list[tuple[str, str]] = []
    names = [f"p{i}" for i in range(signature.positional_only)] + [
        f"a{i}" for i in range(signature.positional)
    ]
    required = len(names) - signature.defaults
    given_count = draw(st.integers(required, len(names)))
    by_keyword = False
    for index, name in enumerate(names[:given_count]):
        # Positional-or-keyword ones may go by keyword, and then the rest do too.
        by_keyword = by_keyword or (index >= signature.positional_only and draw(st.booleans()))
        if by_keyword and not signature.var_args:
            keywords.append((name, draw(value)))
        else:
            positional.append(draw(value))
    if signature.var_args and given_count == len(names):
        # One item first: the wrappers have a branch of their own for it.
        positional.extend(draw(value) for _ in range(draw(st.sampled_from((1, 0, 2)))))
    for index, has_default in enumerate(signature.keyword_only):
        if not has_default or draw(st.booleans()):
            keywords.append((f"k{index}", draw(value)))
    if signature.var_kwargs:
        for index in range(draw(st.sampled_from((1, 0, 2)))):
            keywords.append((f"extra{index}", draw(value)))
    return Call(tuple(positional), tuple(keywords))


@dataclass(frozen=True)
class Flags:
    purpose: str
    mode: str
    zones_on: bool  # a zone was opened once in the process
    in_zone: bool  # the call runs inside a zone
    zone_saw: tuple[str, ...]  # categories that zone has seen before the call
    counting: bool  # telemetry counts checks
    returns: str
    fails: bool


flag_states = st.builds(
    Flags,
    purpose=st.sampled_from(PURPOSES),
    mode=st.sampled_from(("enforce", "trace")),
    zones_on=st.booleans(),
    in_zone=st.booleans(),
    zone_saw=st.sampled_from(((), (EMAIL,), ("customer_data",))),
    counting=st.booleans(),
    returns=st.sampled_from(RETURNS),
    fails=st.booleans(),
)


def build_value(kind: str) -> Any:
    if kind == "plain":
        return "plain text"
    if kind == "number":
        return 7
    if kind == "none":
        return None
    if kind == "content":
        return pg.label("Quarterly numbers attached", EMAIL)
    if kind == "customer":
        return pg.label("megan@contoso.example", "customer_data")
    if kind == "tenant_content":
        return pg.label("Contoso's numbers", EMAIL, tenant="contoso")
    return [pg.label("a body", EMAIL), "plain"]


def _shape(value: Any) -> Any:
    return (repr(value), sorted(pg.labels_of(value)))


def run(which: str, signature: Signature, call: Call, flags: Flags) -> dict[str, Any]:
    """Everything observable about two calls through one kind of wrapper."""
    pg.testing.reset()
    if flags.zones_on:
        with pg.zone():
            pass
    pg.configure("trust-center", mode=flags.mode)
    STATE.counters.enabled = flags.counting
    seen: list[str | None] = []

    def result(received: tuple[Any, ...]) -> Any:
        if flags.returns == "first":
            return received[0] if received else None
        if flags.returns == "fresh":
            return pg.label("a fresh body", EMAIL)
        if flags.returns == "all":
            return received
        return 42

    namespace: dict[str, Any] = {
        "_seen": seen,
        "_current": pg.current_purpose,
        "_fail": flags.fails,
        "_result": result,
        "_default": "default",
    }
    exec(signature.source(), namespace)
    fn = namespace["fn"]
    name = f"tests.generated.{which}"
    if which == "generated":
        wrapper = _generated_wrapper(fn, flags.purpose, name)
        assert wrapper is not None, signature.source()
    else:
        wrapper = _generic_wrapper(fn, flags.purpose, name)
    before = STATE.counters.snapshot()
    outcomes: list[Any] = []
    with pg.testing.capture() as violations:
        for _ in range(2):  # the second call may take a shortcut the first one learnt
            args = [build_value(kind) for kind in call.positional]
            kwargs = {key: build_value(kind) for key, kind in call.keywords}
            try:
                if flags.in_zone:
                    with pg.zone(tenant="fabrikam", categories=flags.zone_saw):
                        returned = wrapper(*args, **kwargs)
                else:
                    returned = wrapper(*args, **kwargs)
                outcomes.append(("returned", _shape(returned)))
            except pg.PurposeViolation as error:
                outcomes.append(
                    ("denied", [(v.category, v.rule, v.via, v.tenant, v.mode) for v in error.violations])
                )
            except ValueError as error:
                outcomes.append(("failed", str(error)))
            outcomes.append(("purpose after", pg.current_purpose()))
    after = STATE.counters.snapshot()
    counted = {key: after.get(key, 0) - before.get(key, 0) for key in set(after) | set(before)}
    return {
        "outcomes": outcomes,
        "purpose inside": seen,
        "violations": [
            (v.category, v.purpose, v.rule, v.via, v.tenant, v.mode, v.function.rsplit(".", 1)[0])
            for v in violations
        ],
        "counted": {key: n for key, n in counted.items() if n} if flags.counting else None,
    }


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data(), signature=signatures(), flags=flag_states)
def test_the_generated_wrapper_behaves_like_the_generic_one(
    data: st.DataObject, signature: Signature, flags: Flags
) -> None:
    call = data.draw(calls(signature))
    generated = run("generated", signature, call, flags)
    generic = run("generic", signature, call, flags)
    assert generated == generic, signature.source()


def test_a_generated_wrapper_shows_its_source_in_tracebacks() -> None:
    @pg.purpose("service.operations")
    def fails(ticket: str, *, retries: int = 0) -> None:
        raise ValueError("the guarded function failed")

    try:
        fails("4711")
    except ValueError as error:
        frames = traceback.extract_tb(error.__traceback__)
    wrapper_frame = next(f for f in frames if "purposeguard wrapper of" in f.filename)
    assert "fails" in wrapper_frame.filename
    assert wrapper_frame.line == "_pg_r = _pg_fn(ticket, retries=retries)"
    assert "def _pg_wrapper(ticket, *, retries=_pg_d1):" in "".join(
        linecache.getlines(wrapper_frame.filename)
    )
