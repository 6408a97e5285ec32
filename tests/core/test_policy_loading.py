"""Loading and validating policies: a bad policy raises PolicyError and is never half-loaded."""

from __future__ import annotations

from pathlib import Path

import pytest

import purposeguard as pg

VALID = """
[policy]
name = "small"
default = "deny"

[[rules]]
id = "ops"
categories = ["customer_data"]
purposes = ["service.operations"]
effect = "allow"
"""


def write(tmp_path: Path, text: str, name: str = "policy.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_pack_loads_by_name() -> None:
    policy = pg.Policy.load("trust-center")
    assert policy.name == "trust-center"
    # The pack leaves the rollout to PURPOSEGUARD_MODE and configure().
    assert policy.mode is None and policy.context_mode == "trace"
    assert "usage-aggregate" in policy.transforms
    assert policy.destination_for("ads.example.net") is not None
    assert policy.requires_tls(["customer_data.content.email", "usage_data"]) == (
        "customer_data.content.email",
    )


def test_from_toml_and_load_agree(tmp_path: Path) -> None:
    from_text = pg.Policy.from_toml(VALID)
    from_file = pg.Policy.load(write(tmp_path, VALID))
    for policy in (from_text, from_file):
        assert policy.decide(["customer_data.content"], "service.operations").allowed
        assert not policy.decide(["customer_data"], "advertising").allowed


@pytest.mark.parametrize(
    ("text", "rule", "field", "words"),
    [
        (VALID.replace('effect = "allow"', 'effect = "permit"'), "ops", "effect", "unknown effect"),
        (VALID + 'mode = "loud"\n', "ops", "mode", "unknown mode"),
        (VALID.replace('default = "deny"', 'default = "maybe"'), None, "policy.default", "unknown default"),
        (VALID.replace('name = "small"', 'name = "small"\nmode = "x"'), None, "policy.mode", "unknown mode"),
        (VALID + 'colour = "red"\n', "ops", "colour", "unknown key"),
        (VALID + VALID.split("[policy]")[1].split("[[rules]]")[0] + "", None, None, None),
        (VALID.replace('["customer_data"]', "[]"), "ops", "categories", "at least one"),
        (VALID.replace('["service.operations"]', "[]"), "ops", "purposes", "at least one"),
        (VALID.replace('["customer_data"]', '["Customer Data"]'), "ops", "categories", "malformed"),
        (
            VALID.replace('["customer_data"]', '["customer_data.secret"]'),
            "ops",
            "categories",
            "unknown category",
        ),
        (
            VALID.replace('["service.operations"]', '["service.unknown"]'),
            "ops",
            "purposes",
            "unknown purpose",
        ),
        (
            VALID
            + '\n[[rules]]\nid = "ops"\ncategories = ["customer_data"]\npurposes = ["advertising"]\neffect = "deny"\n',
            "ops",
            "id",
            "duplicate rule id",
        ),
        (VALID + "consentable = 1\n", "ops", "consentable", "true or false"),
        (VALID + 'obligations = ["dance"]\n', "ops", "obligations", "unknown obligation"),
        (
            VALID.replace('id = "ops"', 'id = "ads"')
            .replace("service.operations", "advertising")
            .replace('"allow"', '"deny"\nconsentable = true'),
            "ads",
            "consentable",
            "never widen",
        ),
        (
            VALID + '\n[[transforms]]\nid = "t"\nfrom = ["customer_data"]\nto = "nothing_like_this"\n',
            "t",
            "to",
            "unknown category",
        ),
        (
            VALID + '\n[[transforms]]\nid = "t"\nfrom = ["customer_datum"]\nto = "usage_data"\n',
            "t",
            "from",
            "unknown category",
        ),
        (
            VALID + '\n[[destinations]]\nid = "d"\nhosts = ["x.example"]\npurpose = "adverts"\n',
            "d",
            "purpose",
            "unknown purpose",
        ),
        (
            VALID + '\n[[destinations]]\nid = "d"\nhosts = []\npurpose = "advertising"\n',
            "d",
            "hosts",
            "non-empty",
        ),
        (
            VALID + '\n[transport]\nrequire_tls = ["contentish"]\n',
            None,
            "transport.require_tls",
            "unknown category",
        ),
        (VALID + "\n[extras]\nx = 1\n", None, "extras", "unknown section"),
        (
            VALID + '\n[taxonomy.categories]\n"customer_data.content.chat" = "chat"\n"orphan.child" = "x"\n',
            None,
            "taxonomy.categories",
            "unknown category",
        ),
    ],
)
def test_invalid_policies_name_file_rule_and_field(
    tmp_path: Path, text: str, rule: str | None, field: str | None, words: str | None
) -> None:
    path = write(tmp_path, text)
    if words is None:  # a duplicated [policy] table is a TOML syntax error
        with pytest.raises(pg.PolicyError) as caught:
            pg.Policy.load(path)
        assert str(path) in str(caught.value)
        return
    with pytest.raises(pg.PolicyError) as caught:
        pg.Policy.load(path)
    error = caught.value
    assert error.path == str(path)
    assert str(path) in str(error)
    assert error.rule == rule
    assert error.field == field
    assert words in str(error)


def test_toml_syntax_error_names_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, VALID + "\n[[rules]\nid = 'broken'\n")
    with pytest.raises(pg.PolicyError) as caught:
        pg.Policy.load(path)
    assert caught.value.line == VALID.count("\n") + 2
    assert f"{path}:{caught.value.line}" in str(caught.value)


def test_missing_and_unreadable_files_raise_policy_error_with_the_path(tmp_path: Path) -> None:
    with pytest.raises(pg.PolicyError) as caught:
        pg.Policy.load(tmp_path / "absent.toml")
    assert str(tmp_path / "absent.toml") in str(caught.value)
    binary = tmp_path / "binary.toml"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(pg.PolicyError) as caught:
        pg.Policy.load(binary)
    assert caught.value.path == str(binary)
    directory = tmp_path / "dir.toml"
    directory.mkdir()
    with pytest.raises(pg.PolicyError):
        pg.Policy.load(directory)


def test_unknown_key_error_is_a_policy_error() -> None:
    assert issubclass(pg.UnknownKeyError, pg.PolicyError)
    with pytest.raises(pg.UnknownKeyError) as caught:
        pg.Policy.from_toml(VALID.replace("service.operations", "service.nothing"))
    assert caught.value.key == "service.nothing"


def test_a_bad_policy_never_replaces_the_running_one(tmp_path: Path) -> None:
    guard = pg.configure(pg.Policy.from_toml(VALID))
    bad = write(tmp_path, VALID.replace('effect = "allow"', 'effect = "sometimes"'))
    with pytest.raises(pg.PolicyError):
        pg.configure(bad)
    assert pg.get_guard() is guard
    assert pg.decide(["customer_data"], "service.operations").allowed
    with pytest.raises(pg.PolicyError):
        guard.reload(bad)
    assert guard.policy.name == "small"


def test_reload_swaps_in_a_good_policy(tmp_path: Path) -> None:
    path = write(tmp_path, VALID)
    guard = pg.configure(path)
    assert not pg.decide(["customer_data"], "service.security").allowed
    path.write_text(VALID.replace('["service.operations"]', '["service.operations", "service.security"]'))
    guard.reload()
    assert pg.decide(["customer_data"], "service.security").allowed


def test_taxonomy_section_adds_keys_that_imply_their_ancestors() -> None:
    policy = pg.Policy.from_toml(
        VALID
        + '\n[taxonomy.categories]\n"customer_data.content.chat" = "chat bodies"\n'
        + '[taxonomy.purposes]\n"service.operations.backup" = "backups"\n'
    )
    assert policy.decide(["customer_data.content.chat"], "service.operations.backup").allowed
    assert policy.decide(["customer_data.content.chat"], "service.operations").rule == "ops"


def test_most_specific_rule_wins_then_deny_wins_ties() -> None:
    policy = pg.Policy.from_toml(
        """
[policy]
default = "allow"
[[rules]]
id = "broad-deny"
categories = ["customer_data"]
purposes = ["service"]
effect = "deny"
[[rules]]
id = "deeper-category-allow"
categories = ["customer_data.content"]
purposes = ["service"]
effect = "allow"
[[rules]]
id = "deeper-purpose-allow"
categories = ["customer_data"]
purposes = ["service.operations"]
effect = "allow"
[[rules]]
id = "tie-allow"
categories = ["usage_data"]
purposes = ["service.security"]
effect = "allow"
[[rules]]
id = "tie-deny"
categories = ["usage_data"]
purposes = ["service.security"]
effect = "deny"
"""
    )
    # Deepest category first, before purpose depth.
    assert policy.decide(["customer_data.content"], "service.operations").rule == "deeper-category-allow"
    assert policy.decide(["customer_data"], "service.operations").rule == "deeper-purpose-allow"
    assert policy.decide(["customer_data"], "service.security").rule == "broad-deny"
    tie = policy.decide(["usage_data"], "service.security")
    assert not tie.allowed and tie.rule == "tie-deny"
    default = policy.decide(["payment_data"], "advertising")
    assert default.allowed and default.rule is None


class Consents:
    """A consent lookup backed by a set, as the ConsentLookup protocol asks."""

    def __init__(self, granted: set[tuple[str, str, str]]) -> None:
        self.granted = granted

    def has_consent(self, tenant: str, purpose: str, category: str) -> bool:
        from purposeguard._taxonomy import ancestors

        return any((tenant, p, c) in self.granted for p in ancestors(purpose) for c in ancestors(category))


def test_consent_turns_a_consentable_deny_into_allow_only_for_that_tenant() -> None:
    policy = pg.Policy.load("trust-center")
    consents = Consents({("contoso", "improvement", "customer_data")})
    yes = policy.decide(["customer_data.content.email"], "improvement", tenant="contoso", consents=consents)
    assert yes.allowed and yes.consent and yes.rule == "improvement-only-with-consent"
    no = policy.decide(["customer_data.content.email"], "improvement", tenant="fabrikam", consents=consents)
    assert not no.allowed and not no.consent
    consents.granted.clear()  # a revocation applies to the very next decision
    again = policy.decide(["customer_data.content.email"], "improvement", tenant="contoso", consents=consents)
    assert not again.allowed


def test_consent_never_widens_advertising() -> None:
    policy = pg.Policy.load("trust-center")
    consents = Consents({("contoso", "advertising", "customer_data")})
    assert not policy.decide(["customer_data"], "advertising", tenant="contoso", consents=consents).allowed


def test_consent_for_one_category_leaves_the_others_denied() -> None:
    policy = pg.Policy.load("trust-center")
    consents = Consents({("contoso", "improvement", "customer_data.content.email")})
    decision = policy.decide(
        ["customer_data.content.email", "customer_data.content.voice"],
        "improvement",
        tenant="contoso",
        consents=consents,
    )
    assert not decision.allowed
    assert decision.denied == ("customer_data.content.voice",)


def test_decisions_are_memoised_per_label_set() -> None:
    policy = pg.Policy.load("trust-center")
    first = policy.decide(frozenset({"customer_data"}), "service.operations")
    assert policy.decide(frozenset({"customer_data"}), "service.operations") is first


def test_a_decision_allowed_by_consent_reports_the_first_category_and_its_rule() -> None:
    policy = pg.Policy.from_toml(
        """
[[rules]]
id = "admin-improvement"
categories = ["administrator_data"]
purposes = ["improvement"]
effect = "allow"
[[rules]]
id = "improvement-only-with-consent"
categories = ["customer_data"]
purposes = ["improvement"]
effect = "deny"
consentable = true
"""
    )
    consents = Consents({("contoso", "improvement", "customer_data")})
    decision = policy.decide(
        ["customer_data", "administrator_data"], "improvement", tenant="contoso", consents=consents
    )
    assert decision.allowed and decision.consent
    assert (decision.category, decision.rule) == ("administrator_data", "admin-improvement")


def test_one_tenants_consent_never_covers_another_tenants_data() -> None:
    pg.configure("trust-center", consents=Consents({("contoso", "improvement", "customer_data")}))
    mine = pg.label("x", "customer_data.content.email", tenant="contoso")
    theirs = pg.label("y", "customer_data.content.email", tenant="fabrikam")
    assert pg.check(mine, "improvement").allowed
    with pytest.raises(pg.PurposeViolation):
        pg.check(theirs, "improvement")
    with pytest.raises(pg.PurposeViolation):
        pg.check(mine + theirs, "improvement")  # mixed data: no single tenant consented

    @pg.purpose("improvement")
    def train(a: str, b: str) -> str:
        return "trained"

    with pytest.raises(pg.PurposeViolation):
        train(mine, theirs)
    with pg.zone(tenant="contoso"):
        with pytest.raises(pg.PurposeViolation):  # the value's tenant wins over the zone's
            train(theirs, "plain")
    assert train(mine, "plain") == "trained"


def test_a_policy_path_that_is_not_a_regular_file_is_refused_without_reading_it(tmp_path: Path) -> None:
    """A FIFO would block forever and /dev/zero never ends: both are refused at once."""
    import os
    import threading

    fifo = tmp_path / "policy.toml"
    os.mkfifo(fifo)
    child = tmp_path / "child.toml"
    child.write_text(f'[policy]\nname = "child"\nextends = "{fifo}"\n')
    errors: list[BaseException] = []

    def load_each() -> None:
        for path in (fifo, Path("/dev/zero"), child):
            try:
                pg.Policy.load(path)
            except BaseException as error:  # noqa: BLE001 - what it raised is the assertion
                errors.append(error)

    # In a thread: a regression would block on the FIFO, and fail here rather than hang the suite.
    loading = threading.Thread(target=load_each, daemon=True)
    loading.start()
    loading.join(60)
    assert not loading.is_alive(), "reading a FIFO as a policy blocked"
    assert len(errors) == 3
    assert all(isinstance(e, pg.PolicyError) and "not a regular file" in str(e) for e in errors), errors


def test_a_policy_nested_too_deep_for_the_toml_reader_is_a_policy_error(tmp_path: Path) -> None:
    deep = tmp_path / "deep.toml"
    deep.write_text("x = " + "[" * 100_000 + "]" * 100_000 + "\n")
    with pytest.raises(pg.PolicyError, match="too deep"):
        pg.Policy.load(deep)
