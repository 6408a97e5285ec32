"""No protected value reaches the audit log, the CLI or the logs."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import pytest

import purposeguard as pg
from purposeguard import audit
from purposeguard.cli import main
from purposeguard.consent import ConsentStore

EMAIL = "customer_data.content.email"


def test_every_kind_of_record_keeps_names_never_values(
    log_path: Path,
    marker: str,
    file_bytes: Callable[[Path], bytes],
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    @pg.purpose("advertising")
    def recommend_ads(text: str) -> int:
        return len(text)

    @pg.transform("usage-aggregate")
    def size(text: str) -> int:
        return len(text)

    store = ConsentStore(log_path)
    pg.configure("trust-center", mode="trace", audit=log_path, consents=store)
    secret = pg.label(marker, EMAIL, tenant="contoso")
    with caplog.at_level(logging.DEBUG):
        recommend_ads(secret)
        recommend_ads(secret.upper() + " and more")
        size(secret)
        store.grant("contoso", "improvement", [EMAIL], granted_by="admin@contoso")
        with pg.compelled_disclosure(
            case="LE-1",
            tenant="contoso",
            authority="court",
            redirect_attempted=True,
            notification_prohibited=True,
            prohibition_ref="order 7",
        ) as disclosure:
            released = disclosure.release({"body": secret, "owner": "megan"}, fields=["body"])
        assert released["body"] == marker  # the requester gets the value; the log does not
        audit.detach()
    store.close()
    kinds: set[str] = set()
    assert main(["audit", "verify", str(log_path)]) == 0
    assert main(["audit", "tail", str(log_path), "-n", "100"]) == 0
    assert main(["audit", "tail", str(log_path), "-n", "100", "--json"]) == 0
    out, err = capsys.readouterr()
    for line in out.splitlines():
        kinds.update(k for k in ("violation", "declassification", "consent", "disclosure") if k in line)
    assert kinds == {"violation", "declassification", "consent", "disclosure"}
    assert marker not in out + err
    assert marker.encode() not in file_bytes(log_path)
    assert marker.upper().encode() not in file_bytes(log_path)
    assert marker not in caplog.text


def test_an_internal_error_is_not_chained_to_an_exception_that_quotes_the_value() -> None:
    """A property that fails on what it parses quotes it; the refusal names the error's type only."""
    import traceback
    from typing import Annotated

    class Mail:
        subject: Annotated[str, pg.Category(EMAIL)]

        def __init__(self, raw: str) -> None:
            self._raw = raw

        @property  # type: ignore[no-redef]
        def subject(self) -> str:
            raise ValueError(f"cannot parse a subject from {self._raw!r}")

    @pg.purpose("service.operations")
    def triage(mail: Mail) -> str:
        return "ok"

    pg.configure("trust-center", mode="enforce")
    raw = " ".join(["Quarterly", "numbers", "for", "the", "board"])  # the traceback shows source lines
    with pytest.raises(pg.PurposeViolation) as refused:
        triage(Mail(raw))
    shown = "".join(traceback.format_exception(refused.value))
    assert refused.value.violations[0].rule == "purposeguard.internal-error"
    assert "ValueError" in str(refused.value)
    assert raw not in shown and "cannot parse" not in shown and refused.value.__cause__ is None
    assert refused.value.__context__ is None  # error trackers walk it whatever __suppress_context__ says


def test_errors_about_a_labelled_argument_name_its_type_never_its_value(log_path: Path) -> None:
    secret = pg.label("Quarterly numbers for the board", EMAIL)
    with pytest.raises(pg.PolicyError) as unknown:
        pg.transform(secret)
    with ConsentStore(log_path) as store, pytest.raises(pg.PolicyError) as malformed:
        store.grant(secret, "improvement", ["customer_data"], granted_by="admin")
    for error in (unknown.value, malformed.value):
        assert "Quarterly" not in str(error) and "LabelledStr" in str(error)
        assert "Quarterly" not in repr(vars(error))
