"""Zones against a bare call: entry and exit, labelling inside a zone, and
guarded calls in zones that have seen 1, 10 and 100 categories.

The last rows repeat the core group's guarded calls outside a zone, once as
if no zone had ever opened in the process and once with zones in use, in
the same rounds: once a zone has opened, a guarded call outside any zone
pays one flag test and one context variable lookup for it.

Timed statements run in the benchmark's own context: each case's setup puts
the zone state it needs into the zone variable and every setup first resets
what the previous case set, so no zone is left open for other groups and
"outside a zone" has no zone variable in the context, as in a program.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from harness import Case, Group

import purposeguard as pg
from purposeguard._context import FLAGS, ZONE, ZoneState

EMAIL = "customer_data.content.email"
CATEGORIES = 120


def _policy() -> pg.Policy:
    """The trust-center pack plus 120 content categories, all allowed for operations."""
    from importlib import resources

    text = resources.files("purposeguard.packs").joinpath("trust-center.toml").read_text(encoding="utf-8")
    added = ['"customer_data.content.bench" = "benchmark categories"']
    added += [f'"customer_data.content.bench.c{i:03d}" = "benchmark category {i}"' for i in range(CATEGORIES)]
    return pg.Policy.from_toml(text + "\n[taxonomy.categories]\n" + "\n".join(added) + "\n")


def _zone_state(count: int) -> ZoneState:
    categories = [f"customer_data.content.bench.c{i:03d}" for i in range(count)]
    state = ZoneState("contoso", None, categories)
    assert len(state.categories) == count
    return state


def _namespace() -> dict[str, object]:
    policy = _policy()
    assert len(policy.taxonomy.categories) >= 100 + 12
    pg.configure(policy)

    def bare(x: object) -> object:
        return x

    @pg.purpose("service.operations")
    def guarded(x: object) -> object:
        return x

    labelled = pg.label("ticket 4711", EMAIL)
    with pg.zone():  # zones are now in use in this process
        pass
    states = {count: _zone_state(count) for count in (1, 10, 100)}
    email_state = ZoneState("contoso", None, [EMAIL])
    # Warm the memoised decisions the rows rely on.
    for state in states.values():
        policy.decide(state.categories, "service.operations")
    tokens: list[Any] = []
    return {
        "bare": bare,
        "guarded": guarded,
        "labelled": labelled,
        "label": pg.label,
        "EMAIL": EMAIL,
        "zone": pg.zone(tenant="contoso"),
        "ZONE": ZONE,
        "FLAGS": FLAGS,
        "TOKENS": tokens,
        "leave": _leaver(tokens),
        "S1": states[1],
        "S10": states[10],
        "S100": states[100],
        "SEMAIL": email_state,
    }


# Each setup states the process-wide zone flag it needs, so rows measured
# "as before zones existed" and "with zones in use" interleave in one group.
# Outside a zone the zone variable is not in the context at all (as after a
# zone closed, or before any opened): setups reset what the previous case
# set instead of setting None, which would leave one more variable in the
# context and make every purpose set and reset dearer than it is there.
NEVER = "leave(); FLAGS.zones = False; FLAGS.refresh()"
OUTSIDE = "leave(); FLAGS.zones = True; FLAGS.refresh()"


def _inside(state: str) -> str:
    return f"leave(); FLAGS.zones = True; FLAGS.refresh(); TOKENS.append(ZONE.set({state}))"


def _leaver(tokens: list[Any]) -> Callable[[], None]:
    def leave() -> None:
        while tokens:
            ZONE.reset(tokens.pop())

    return leave


def groups() -> list[Group]:
    namespace = _namespace()
    zones = Group(
        "zones",
        Case("bare call f(x)", "bare(1)", setup=NEVER),
        [
            Case("zone entry and exit", "with zone: pass", "informative", setup=OUTSIDE),
            Case(
                "label('ticket 4711', category), no zone ever opened",
                "label('ticket 4711', EMAIL)",
                "<= 12x",
                setup=NEVER,
                ratio_limit=12,
            ),
            Case(
                "label('ticket 4711', category) inside a zone",
                "label('ticket 4711', EMAIL)",
                "informative, ~ the row above",
                setup=_inside("SEMAIL"),
            ),
            Case(
                "@purpose, unlabelled argument, zone saw 1 category",
                "guarded(1)",
                "informative",
                setup=_inside("S1"),
            ),
            Case(
                "@purpose, unlabelled argument, zone saw 10 categories",
                "guarded(1)",
                "informative",
                setup=_inside("S10"),
            ),
            Case(
                "@purpose, unlabelled argument, zone saw 100 categories",
                "guarded(1)",
                "informative",
                setup=_inside("S100"),
            ),
            Case(
                "@purpose, labelled argument, allowed, zone saw it",
                "guarded(labelled)",
                "informative",
                setup=_inside("SEMAIL"),
            ),
            Case(
                "@purpose, unlabelled argument, no zone ever opened",
                "guarded(1)",
                "<= 10x",
                setup=NEVER,
                ratio_limit=10,
            ),
            Case(
                "@purpose, unlabelled argument, outside a zone (zones in use)",
                "guarded(1)",
                "<= 10x, ~ the row above",
                setup=OUTSIDE,
                ratio_limit=10,
            ),
            Case(
                "@purpose, labelled argument, no zone ever opened",
                "guarded(labelled)",
                "<= 12x",
                setup=NEVER,
                ratio_limit=12,
            ),
            # Last: its setup leaves no zone current for the groups that follow.
            Case(
                "@purpose, labelled argument, outside a zone (zones in use)",
                "guarded(labelled)",
                "<= 12x, ~ the row above",
                setup=OUTSIDE,
                ratio_limit=12,
            ),
        ],
        globals=namespace,
        number=20000,
    )
    return [zones]
