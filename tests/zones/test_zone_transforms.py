"""Policy transforms: the one way labels are removed, and always on the record."""

from __future__ import annotations

import pytest

import purposeguard as pg

EMAIL = "customer_data.content.email"
MARKER = "zq-7731-marker-do-not-leak"


@pg.transform("usage-aggregate")
def mailbox_size(messages: list[str]) -> int:
    return sum(len(m) for m in messages)


@pg.transform("usage-aggregate")
def first_words(messages: list[str]) -> list[str]:
    return [m.split()[0] for m in messages]


@pg.purpose("service.communications")
def notify_admin(size: object) -> str:
    return f"mailbox holds {size} characters"


def mail() -> list[str]:
    return [pg.label(f"{MARKER} body one", EMAIL), pg.label(f"{MARKER} body two", EMAIL)]


def test_the_result_carries_the_to_category_and_loses_the_inputs() -> None:
    size = mailbox_size(mail())
    assert size == 2 * len(f"{MARKER} body one")
    assert pg.labels_of(size) == {"usage_data"}


def test_items_of_a_returned_container_lose_the_inputs_labels_too() -> None:
    words = first_words(mail())
    assert pg.labels_of(words) == {"usage_data"}
    # Items read from the result carry its category, not the inputs'.
    assert all(pg.labels_of(w) == {"usage_data"} for w in words)


def test_transformed_data_may_go_where_the_input_could_not() -> None:
    with pytest.raises(pg.PurposeViolation):
        notify_admin(mail()[0])  # content in a service communication
    with pg.testing.assert_no_violations():
        assert notify_admin(mailbox_size(mail())).startswith("mailbox holds")


def test_every_use_is_a_declassification_record() -> None:
    with pg.testing.capture_records() as records, pg.testing.capture() as violations:
        with pg.purpose("service.operations"):
            mailbox_size(mail())
        mailbox_size(mail())
    declassifications = [r for r in records if isinstance(r, pg.Declassification)]
    assert len(declassifications) == 2
    first = declassifications[0]
    assert first.kind == "declassification"
    assert first.transform == "usage-aggregate"
    assert first.from_categories == (EMAIL,)
    assert first.to == "usage_data"
    assert first.purpose == "service.operations"
    assert first.function.endswith("mailbox_size")
    assert declassifications[1].purpose is None
    # A declassification is not a violation.
    assert violations == []


def test_on_record_handlers_see_declassifications_and_on_violation_ones_do_not() -> None:
    records: list[pg.Record] = []
    violations: list[pg.Violation] = []
    stop_records = pg.on_record(records.append)
    stop_violations = pg.on_violation(violations.append)
    try:
        mailbox_size(mail())
    finally:
        stop_records()
        stop_violations()
    assert [type(r) for r in records] == [pg.Declassification]
    assert violations == []


def test_a_declassification_record_never_holds_the_value() -> None:
    with pg.testing.capture_records() as records:
        mailbox_size(mail())
    (record,) = records
    assert MARKER not in repr(record)
    assert MARKER not in str(record.to_dict())


def test_the_tenant_is_recorded() -> None:
    with pg.testing.capture_records() as records:
        with pg.zone(tenant="contoso"):
            mailbox_size(mail())
        mailbox_size([pg.label("x", EMAIL, tenant="fabrikam")])
    assert [r.tenant for r in records] == ["contoso", "fabrikam"]  # type: ignore[attr-defined]
    assert pg.labels_of(mailbox_size([pg.label("x", EMAIL, tenant="fabrikam")])) == {"usage_data"}


def test_an_input_outside_from_raises_in_enforce_before_the_transform_runs() -> None:
    ran: list[object] = []

    @pg.transform("usage-aggregate")
    def count(value: object) -> int:
        ran.append(value)
        return 1

    card = pg.label(f"{MARKER} 4111 1111", "payment_data")
    with pg.testing.capture_records() as records:
        with pytest.raises(pg.PurposeViolation) as raised:
            count(card)
    assert ran == []
    (violation,) = raised.value.violations
    assert violation.via == "argument"
    assert violation.category == "payment_data"
    assert violation.rule == "usage-aggregate"
    assert violation.mode == "enforce"
    assert violation.function.endswith("count")
    assert violation.fix == "block"
    assert "usage-aggregate" in violation.remediation
    assert MARKER not in violation.remediation and MARKER not in str(raised.value)
    # Refused: no declassification took place.
    assert [type(r) for r in records] == [pg.Violation]


def test_an_input_outside_from_is_recorded_in_trace_and_keeps_its_label() -> None:
    pg.configure("trust-center", mode="trace")

    @pg.transform("usage-aggregate")
    def count(*values: object) -> int:
        return len(values)

    card = pg.label("4111 1111", "payment_data")
    body = pg.label("body", EMAIL)
    with pg.testing.capture_records() as records:
        result = count(card, body)
    assert result == 2
    kinds = [(type(r).__name__, getattr(r, "via", None), getattr(r, "mode", None)) for r in records]
    assert kinds == [("Violation", "argument", "trace"), ("Declassification", None, None)]
    # The transform declassified what it accepts, and nothing else.
    assert pg.labels_of(result) == {"usage_data", "payment_data"}
    assert records[1].from_categories == (EMAIL,)  # type: ignore[attr-defined]


def test_an_input_outside_from_in_off_mode_records_nothing_but_keeps_its_label() -> None:
    pg.configure("trust-center", mode="off")

    @pg.transform("usage-aggregate")
    def count(value: object) -> int:
        return 1

    with pg.testing.capture() as violations:
        result = count(pg.label("4111", "payment_data"))
    assert violations == []
    assert pg.labels_of(result) == {"usage_data", "payment_data"}


def test_an_unknown_transform_id_fails_at_decoration() -> None:
    with pytest.raises(pg.PolicyError) as raised:
        pg.transform("launder-everything")
    assert "launder-everything" in str(raised.value)
    assert "usage-aggregate" in str(raised.value)  # the ids that do exist


def test_a_non_string_transform_id_fails_at_decoration() -> None:
    with pytest.raises(pg.PolicyError):
        pg.transform(None)  # type: ignore[arg-type]


def test_a_generator_cannot_be_a_transform() -> None:
    with pytest.raises(TypeError):

        @pg.transform("usage-aggregate")
        def counts(messages: list[str]):
            yield from (len(m) for m in messages)


def test_a_transform_does_not_remove_categories_from_the_zone() -> None:
    with pg.testing.capture() as violations:
        with pg.zone() as state:
            size = mailbox_size(mail())
            assert state.categories >= {EMAIL, "usage_data"}
            notify_admin(size)  # the size is allowed; the zone still holds content
    assert [(v.via, v.category, v.purpose) for v in violations] == [
        ("context", EMAIL, "service.communications")
    ]


def test_a_transform_adds_its_inputs_to_the_zone_even_when_refused() -> None:
    @pg.transform("usage-aggregate")
    def count(value: object) -> int:
        return 1

    card = pg.label("4111", "payment_data")
    with pg.zone() as state:
        with pytest.raises(pg.PurposeViolation):
            count(card)
        assert "payment_data" in state.categories


async def test_an_async_transform_works_like_a_sync_one() -> None:
    @pg.transform("end-user-usage")
    async def storage_used(messages: list[str]) -> int:
        return sum(len(m) for m in messages)

    with pg.testing.capture_records() as records:
        used = await storage_used(mail())
    assert pg.labels_of(used) == {"usage_data.end_user"}
    assert [r.transform for r in records] == ["end-user-usage"]  # type: ignore[attr-defined]
    assert storage_used.__purposeguard_transform__ == "end-user-usage"  # type: ignore[attr-defined]


def test_a_transform_of_a_policy_that_is_later_replaced_fails_clearly() -> None:
    policy = pg.Policy.from_toml(
        """
        [policy]
        name = "no-transforms"
        [[rules]]
        id = "ops"
        categories = ["customer_data"]
        purposes = ["service.operations"]
        effect = "allow"
        """
    )
    pg.configure(policy)
    with pytest.raises(pg.PolicyError, match="no transform"):
        mailbox_size(mail())


def test_a_transform_that_returns_none_returns_none() -> None:
    @pg.transform("usage-aggregate")
    def nothing(body: str) -> None:
        return None

    assert nothing(pg.label("mail", "customer_data.content.email")) is None
