"""Zone precision: decision frames keep what they read out of the request's zone.

A login layer loads the user to decide who is calling; a quota check reads a
mailbox to decide whether a notice is due. With ``context_mode="enforce"``
those reads used to taint the whole request, so a house ad that touches no
user data was refused. ``@pg.purpose(..., output="decision")`` keeps what a
decision reads in its own frame; only what it returns flows on. Every
laundered forbidden flow stays refused.
"""

from __future__ import annotations

from typing import Any

import pytest

import purposeguard as pg

CONTACT = "customer_data"
EMAIL = "customer_data.content.email"
BODY = "Quarterly numbers attached; call me before the board meeting"


@pytest.fixture
def enforcing() -> pg.Guard:
    return pg.configure("trust-center", mode="enforce", context_mode="enforce")


@pg.purpose("service.security", output="decision")
def log_in(token: str) -> int:
    """Loads the user (customer data) to decide who is calling; returns only the numeric id."""
    user = {"id": 21, "token": token, "address": pg.label("megan@contoso.example", CONTACT)}
    return int(user["id"])  # type: ignore[call-overload]


@pg.purpose("service.security")
def log_in_unmarked(token: str) -> str:
    user = {"id": token, "address": pg.label("megan@contoso.example", CONTACT)}
    return "user-" + str(len(user["address"]))


@pg.purpose("service.security", output="decision")
def log_in_returning_user(token: str) -> dict[str, Any]:
    return {"id": token, "address": pg.label("megan@contoso.example", CONTACT)}


@pg.purpose("service.security", output="decision")
def spam_verdict(body: str) -> bool:
    return "lottery" in body


@pg.purpose("service.security", output="decision")
def laundering_decision(body: str) -> str:
    # Returns content rebuilt in C: the frame's own zone knew it, the result
    # carries no label, so the caller's zone must have known it already.
    return f"re: {body}"


@pg.purpose("service.security", output="decision")
def reads_and_launders() -> str:
    body = pg.label(BODY, EMAIL)
    return f"re: {body}"


@pg.transform("end-user-usage")
def bytes_used(bodies: list[str]) -> int:
    return sum(len(b) for b in bodies)


@pg.purpose("service.operations", output="decision")
def quota_used() -> int:
    """Reads the mailbox to compute a usage figure; what flows on is the figure."""
    bodies = [pg.label(BODY, EMAIL), pg.label(BODY[:10], EMAIL)]
    return bytes_used(bodies)  # type: ignore[no-any-return]


@pg.purpose("advertising")
def house_ad(slot: str) -> str:
    return f"house ad in {slot}"


@pg.purpose("service.communications")
def quota_notice(used: Any) -> str:
    return f"your mailbox holds {int(used)} bytes"


@pg.purpose("advertising")
def ads(value: Any) -> str:
    return "ad"


def test_a_house_ad_after_a_marked_login_is_allowed(enforcing: pg.Guard) -> None:
    """Secure: the login's read of customer data stays in its frame; a house ad touching none is served."""
    with pg.zone(tenant="contoso") as state:
        user_id = log_in("t0k")
        assert house_ad("sidebar") == "house ad in sidebar"
        assert CONTACT not in state.categories
        assert user_id == 21


def test_an_unmarked_login_still_taints_the_request(enforcing: pg.Guard) -> None:
    """Secure (and the false positive this fixes): without the marker the login's read taints the zone."""
    with pg.zone(tenant="contoso"):
        log_in_unmarked("t0k")
        with pytest.raises(pg.PurposeViolation) as raised:
            house_ad("sidebar")
    assert raised.value.violations[0].via == "context"


def test_a_decision_that_returns_the_user_hands_its_labels_on(enforcing: pg.Guard) -> None:
    """Secure: what a decision returns flows on; its labels reach the zone and the ad is refused."""
    with pg.zone(tenant="contoso") as state:
        user = log_in_returning_user("t0k")
        assert CONTACT in state.categories
        with pytest.raises(pg.PurposeViolation):
            house_ad("sidebar")
        with pytest.raises(pg.PurposeViolation):
            ads(user["address"])


def test_a_quota_notice_built_from_a_transformed_count_is_allowed(enforcing: pg.Guard) -> None:
    """Secure: only the transform's usage figure flows on; the notice is a service communication."""
    with pg.zone(tenant="contoso") as state:
        used = quota_used()
        assert quota_notice(used).startswith("your mailbox holds")
        assert EMAIL not in state.categories
        assert pg.labels_of(used) == {"usage_data.end_user"}


def test_an_unmarked_quota_check_taints_the_notice(enforcing: pg.Guard) -> None:
    """Secure (and the second false positive this fixes): unmarked, the mailbox read refuses the notice."""

    @pg.purpose("service.operations")
    def quota_used_unmarked() -> int:
        return bytes_used([pg.label(BODY, EMAIL)])  # type: ignore[no-any-return]

    with pg.zone(tenant="contoso"):
        used = quota_used_unmarked()
        with pytest.raises(pg.PurposeViolation) as raised:
            quota_notice(used)
    assert raised.value.violations[0].via == "context"


def test_the_usage_figure_still_cannot_reach_advertising(enforcing: pg.Guard) -> None:
    """Secure: the transformed figure keeps its own label; usage data never reaches advertising."""
    with pg.zone(tenant="contoso"):
        used = quota_used()
        with pytest.raises(pg.PurposeViolation):
            ads(used)


def test_content_loaded_outside_the_frame_still_taints(enforcing: pg.Guard) -> None:
    """Secure: a decision frame scopes only what is read inside it; the request's own reads stay."""
    with pg.zone(tenant="contoso"):
        body = pg.label(BODY, EMAIL)
        assert spam_verdict(body) is False
        with pytest.raises(pg.PurposeViolation) as raised:
            house_ad(f"slot {len(body.split())}")
    assert raised.value.violations[0].via == "context"


@pytest.mark.parametrize(
    "launder",
    [
        lambda body: f"re: {body}",
        lambda body: body.encode("utf-8").hex(),
        lambda body: {"summary": f"{body[:10]}..."},
        lambda body: [f"{w}!" for w in body.split()],
        lambda body: bytes(body, "utf-8") + b"",
        lambda body: type("Carrier", (), {"text": f"{body}"})(),
    ],
    ids=["fstring", "hex", "dict", "list-of-text", "bytes", "object"],
)
def test_content_a_decision_reads_and_returns_rebuilt_taints_the_request(
    enforcing: pg.Guard, launder: Any
) -> None:
    """Secure: a decision that returns text, bytes or an object hands everything its frame saw on."""

    @pg.purpose("service.security", output="decision")
    def sneaky() -> Any:
        return launder(pg.label(BODY, EMAIL))

    with pg.zone(tenant="contoso") as state:
        rebuilt = sneaky()
        assert EMAIL in state.categories
        with pytest.raises(pg.PurposeViolation):
            ads(rebuilt)


@pytest.mark.parametrize(
    "verdict", [True, None, 0.93, 7, ("spam", 0.9)], ids=["bool", "none", "float", "int", "tuple-with-text"]
)
def test_a_decision_result_keeps_the_frame_closed_unless_it_holds_text(
    enforcing: pg.Guard, verdict: Any
) -> None:
    """Secure and precise: truth values and numbers keep the frame closed; a tuple with text opens it."""

    @pg.purpose("service.security", output="decision")
    def verdict_of() -> Any:
        pg.label(BODY, EMAIL)
        return verdict

    with pg.zone(tenant="contoso") as state:
        verdict_of()
        assert (EMAIL in state.categories) == isinstance(verdict, tuple)


def test_laundering_through_a_decision_of_content_the_request_read_is_refused(enforcing: pg.Guard) -> None:
    """Secure: content the request read, laundered by a decision and handed to ads, is refused."""
    with pg.zone(tenant="contoso"):
        body = pg.label(BODY, EMAIL)
        rebuilt = laundering_decision(body)
        with pytest.raises(pg.PurposeViolation):
            ads(rebuilt)


def test_a_decision_is_checked_against_the_zone_it_runs_in(enforcing: pg.Guard) -> None:
    """Secure: the frame starts from the request's zone, so a decision is refused what the zone forbids."""

    @pg.purpose("advertising", output="decision")
    def ad_decision() -> bool:
        return True

    with pg.zone(tenant="contoso"):
        pg.label(BODY, EMAIL)
        with pytest.raises(pg.PurposeViolation):
            ad_decision()


def test_what_a_decision_reads_is_still_refused_inside_its_frame(enforcing: pg.Guard) -> None:
    """Secure: inside its own frame a decision's reads taint the frame, so ads called there are refused."""

    @pg.purpose("service.security", output="decision")
    def decide_and_advertise() -> bool:
        pg.label(BODY, EMAIL)
        house_ad("inside")
        return True

    with pg.zone(tenant="contoso"), pytest.raises(pg.PurposeViolation):
        decide_and_advertise()


def test_an_async_decision_keeps_its_reads_in_its_frame(enforcing: pg.Guard) -> None:
    """Secure: coroutine decisions scope their reads the same way."""
    import asyncio

    @pg.purpose("service.security", output="decision")
    async def verdict() -> bool:
        pg.label(BODY, EMAIL)
        await asyncio.sleep(0)
        return False

    async def main() -> frozenset[str]:
        with pg.zone(tenant="contoso") as state:
            await verdict()
            house_ad("top")
            return state.categories

    assert EMAIL not in asyncio.run(main())


def test_a_failing_decision_restores_the_request_zone_and_hands_on_what_it_saw(enforcing: pg.Guard) -> None:
    """Secure: an exception in a decision leaves the request's zone current,
    and hands on what the frame saw: its message or attributes can quote it."""

    @pg.purpose("service.security", output="decision")
    def broken() -> bool:
        body = pg.label(BODY, EMAIL)
        raise ValueError(f"bad mail: {body}")

    @pg.purpose("advertising")
    def advertise(text: str) -> None:
        return None

    with pg.zone(tenant="contoso") as state:
        with pytest.raises(ValueError) as raised:
            broken()
        assert pg.current_zone() is state
        assert EMAIL in state.categories
        with pytest.raises(pg.PurposeViolation):
            advertise(str(raised.value))


def test_a_violation_in_a_decision_hands_nothing_on(enforcing: pg.Guard) -> None:
    """A refusal names categories and rules, never values: the request's zone stays untainted."""

    @pg.purpose("advertising")
    def advertise(text: str) -> None:
        return None

    @pg.purpose("service.security", output="decision")
    def refused() -> bool:
        advertise(pg.label(BODY, EMAIL))
        return True

    with pg.zone(tenant="contoso") as state:
        with pytest.raises(pg.PurposeViolation):
            refused()
        assert pg.current_zone() is state
        assert EMAIL not in state.categories


@pytest.mark.parametrize("output", ["Decision", "", "value ", 3, None], ids=repr)
def test_an_unknown_output_kind_is_a_clear_error(output: Any) -> None:
    """Secure: a typo in output= is refused at decoration time, not silently a plain purpose."""
    with pytest.raises(ValueError, match="output must be one of"):
        pg.purpose("service.security", output=output)


def test_the_output_error_never_echoes_a_labelled_value() -> None:
    """Secure: a labelled value passed as output= is named by type, never printed."""
    secret = pg.label("megan@contoso.example", CONTACT)
    with pytest.raises(ValueError) as raised:
        pg.purpose("service.security", output=secret)
    assert "megan" not in str(raised.value)


def test_a_generator_cannot_be_a_decision() -> None:
    """Secure: a generator yields values on; it cannot be a decision frame."""
    with pytest.raises(TypeError, match="not generators"):

        @pg.purpose("service.security", output="decision")
        def gen() -> Any:
            yield 1


def test_outside_a_zone_a_decision_is_an_ordinary_guarded_call(enforcing: pg.Guard) -> None:
    """Secure: outside a zone the marker changes nothing: labelled arguments are still checked."""

    @pg.purpose("advertising", output="decision")
    def ad_decision(value: Any) -> bool:
        return True

    with pytest.raises(pg.PurposeViolation):
        ad_decision(pg.label(BODY, EMAIL))


def test_the_demo_mail_service_has_no_false_positive_with_every_zone_flow_enforced(tmp_path: Any) -> None:
    """Secure: under context_mode="enforce" every allowed feature of the demo runs (no context refusal)
    and every forbidden one is refused, as the scenario judges them."""
    from purposeguard._demo import running
    from purposeguard._demo.scenario import run
    from purposeguard.consent import ConsentStore

    consents = ConsentStore()
    pg.configure("trust-center", mode="enforce", context_mode="enforce", consents=consents)
    with running(consents=consents, audit=tmp_path / "audit.db") as service:
        outcomes = run(service.url, outside=service.outside)
    judged = [o for o in outcomes if o.step.purpose]
    allowed = [o for o in judged if o.decision.startswith("allow")]
    refused = [o for o in judged if not o.decision.startswith("allow")]
    assert [o.problem for o in outcomes if not o.ok] == []
    assert len(allowed) >= 7 and len(refused) >= 5
    assert [(o.step.use, v.rule) for o in allowed for v in o.violations] == []
    assert all(o.status >= 400 for o in refused)


def test_a_refusal_raised_while_handling_an_error_hands_that_error_on(enforcing: pg.Guard) -> None:
    """The refusal's chain (__context__) holds the first error, which can quote what was read."""

    @pg.purpose("advertising")
    def advertise(text: str) -> None:
        return None

    @pg.purpose("service.security", output="decision")
    def broken() -> bool:
        body = pg.label(BODY, EMAIL)
        try:
            raise ValueError(f"bad mail: {body}")
        except ValueError:
            advertise(body)  # refused, with the ValueError as its context
        return True

    with pg.zone(tenant="contoso") as state:
        with pytest.raises(pg.PurposeViolation) as raised:
            broken()
        assert EMAIL in state.categories
        with pytest.raises(pg.PurposeViolation):
            advertise(str(raised.value.__context__))
