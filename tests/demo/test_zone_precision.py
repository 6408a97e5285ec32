"""The mail service with every zone flow enforced (``context_mode="enforce"``): no allowed
use is refused, and every forbidden one is, however the data was rebuilt on the way."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from purposeguard.integrations import sqlalchemy as pg_sqlalchemy

import purposeguard as pg
from purposeguard._demo import Store, features, running
from purposeguard._demo.scenario import run
from purposeguard.consent import ConsentStore

from .conftest import MARKER, MEGAN

BODY = f"The Q3 numbers are attached {MARKER}."


def test_every_scenario_step_is_what_the_policy_says_with_every_zone_flow_enforced(tmp_path: Path) -> None:
    """No false positive: each allowed use answers 2xx and records nothing; each forbidden one is refused."""
    consents = ConsentStore()
    pg.configure("trust-center", mode="enforce", context_mode="enforce", consents=consents)
    try:
        with running(consents=consents, audit=tmp_path / "audit.db") as service:
            outcomes = run(service.url, outside=service.outside)
    finally:
        consents.close()
    assert [(o.step.use, o.problem) for o in outcomes if not o.ok] == []
    judged = [o for o in outcomes if o.step.purpose]
    allowed = [o for o in judged if o.decision.startswith("allowed")]
    refused = [o for o in judged if not o.decision.startswith("allowed")]
    assert len(allowed) == 8 and len(refused) == 6
    assert [(o.step.use, v.rule, v.via) for o in allowed for v in o.violations] == []
    assert all(o.status in (403, 409) for o in refused)
    assert "house ad, no customer data" in {o.step.use for o in allowed}


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    pg.configure("trust-center", mode="enforce", context_mode="enforce")
    pg_sqlalchemy.instrument()
    store = Store(tmp_path / "mail.db")
    store.add_user("contoso", MEGAN, "Megan Bowen", 100)
    store.add_administrator("contoso", "it-admin@contoso.example")
    store.add_message("contoso", MEGAN, "alex@contoso.example", "Q3 numbers", BODY, False)
    store.set_storage_used("contoso", MEGAN, 95)
    try:
        yield store
    finally:
        store.close()
        pg_sqlalchemy.uninstrument()


def test_loading_mail_and_users_without_reading_them_leaves_the_house_ad_and_the_notice_allowed(
    store: Store,
) -> None:
    with pg.zone(tenant="contoso") as zone:
        [message] = store.messages("contoso", MEGAN)
        [user] = store.users("contoso")
        assert message.id == 1 and user.quota == 100  # unlabelled columns
        assert zone.categories == frozenset()
        assert features.house_ad().startswith("Upgrade")
        used = store.storage_used("contoso")[MEGAN]
        notice = features.to_administrators(features.storage_notice(user, used))
    assert pg.labels_of(notice) == {"customer_data", "usage_data.end_user"}


# Each one reads a stored value, rebuilds it without its label, and hands it to a forbidden use.
LAUNDERED: dict[str, Callable[[Store], Any]] = {
    "ad after reading a mail": lambda s: (f"{s.messages('contoso')[0].body}!", features.house_ad()),
    "newsletter to a rebuilt address": lambda s: features.newsletter_recipients(
        ["{} ".format(s.users("contoso")[0].address)]
    ),
    "analytics over a rebuilt body": lambda s: features.product_analytics(
        [f"{s.messages('contoso')[0].body} "]
    ),
    "voluntary disclosure of a rebuilt body": lambda s: features.hand_over(
        {"body": f"{s.messages('contoso')[0].body} "}
    ),
    "notice quoting a rebuilt subject": lambda s: features.to_administrators(
        f"latest: {s.messages('contoso')[0].subject}"
    ),
}


@pytest.mark.parametrize("attack", sorted(LAUNDERED))
def test_every_laundered_forbidden_flow_is_refused_through_the_zone(store: Store, attack: str) -> None:
    with pg.testing.capture() as violations, pg.zone(tenant="contoso"):
        with pytest.raises(pg.PurposeViolation) as refused:
            LAUNDERED[attack](store)
    assert {v.via for v in refused.value.violations} == {"context"}
    assert all(v.tenant == "contoso" for v in violations)
    assert all(MARKER not in repr(v) for v in violations)
