"""The audit log and consent store on a real PostgreSQL, named by URL everywhere a path works."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest

import purposeguard as pg
from purposeguard import audit
from purposeguard._storage import AuditError, open_storage, redact
from purposeguard.audit import AuditLog
from purposeguard.consent import ConsentStore

CONTENT = "customer_data.content.email"


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "purposeguard", *args], capture_output=True, text=True, timeout=60
    )


def violation(n: int = 0, mode: str = "trace") -> pg.Violation:
    return pg.Violation(
        CONTENT, "advertising", "no-advertising", "argument", f"tests.f{n}", "contoso", mode, time.time()
    )


def test_an_audit_log_named_by_url_appends_and_verifies(pg_url: str) -> None:
    with AuditLog(pg_url) as log:
        assert log.append(violation()) == 1
        assert log.append_many([violation(i) for i in range(1, 4)]) == [2, 3, 4]
        result = log.verify()
        assert result.ok and result.count == 4 and len(log) == 4
        assert [e.data["function"] for e in log.tail(2)] == ["tests.f2", "tests.f3"]
    # Another connection (another replica) sees the same chain.
    with AuditLog(pg_url, create=False) as again:
        assert again.verify().head == result.head


def test_the_password_never_shows_in_names_or_messages(pg_url: str) -> None:
    with AuditLog(pg_url) as log:
        assert "pgtest-secret" not in log.path and "pgtest-secret" not in repr(log)
    assert redact("postgresql://u:pw@h:1/d?password=pw2") == "postgresql://u:***@h:1/d?password=***"


def test_configure_audit_url_records_violations(pg_url: str) -> None:
    pg.configure("trust-center", mode="trace", audit=pg_url)

    @pg.purpose("advertising")
    def advertise(body: str) -> None:
        pass

    advertise(pg.label("mail body", CONTENT))
    sink = audit.attached()
    assert sink is not None
    sink.flush()
    with AuditLog(pg_url, readonly=True) as log:
        kinds = [(e.kind, e.data["category"], e.data["rule"]) for e in log.records()]
        assert kinds == [("violation", CONTENT, "no-advertising")]
        assert log.verify().ok


def test_a_consent_store_named_by_url_decides(pg_url: str) -> None:
    with ConsentStore(pg_url) as store:
        pg.configure("trust-center", consents=store)
        body = pg.label("mail body", CONTENT)

        @pg.purpose("improvement")
        def improve(value: str) -> str:
            return "ok"

        with pg.zone(tenant="contoso"), pytest.raises(pg.PurposeViolation):
            improve(body)
        store.grant("contoso", "improvement", ["customer_data"], granted_by="admin@contoso")
        with pg.zone(tenant="contoso"):
            assert improve(body) == "ok"
        store.revoke("contoso", "improvement", revoked_by="admin@contoso")
        with pg.zone(tenant="contoso"), pytest.raises(pg.PurposeViolation):
            improve(body)
        assert [g.tenant for g in store.list()] == []
        with AuditLog(pg_url, readonly=True) as log:
            assert [e.data["action"] for e in log.records() if e.kind == "consent"] == ["grant", "revoke"]


def test_a_revoke_of_nothing_writes_nothing(pg_url: str) -> None:
    with ConsentStore(pg_url) as store:
        with pytest.raises(pg.PolicyError, match="has no consent"):
            store.revoke("contoso", "improvement", revoked_by="admin@contoso")
        assert len(store.audit) == 0


def test_cli_verify_and_tail_take_a_url(pg_url: str) -> None:
    with AuditLog(pg_url) as log:
        log.append_many([violation(i) for i in range(3)])
        head = log.verify().head
    verified = cli("audit", "verify", pg_url, "--anchor", str(head))
    assert verified.returncode == 0, verified.stderr
    assert f"intact, 3 records, head {head}" in verified.stdout
    assert "pgtest-secret" not in verified.stdout
    tail = cli("audit", "tail", pg_url, "-n", "2", "--json")
    assert tail.returncode == 0, tail.stderr
    assert [json.loads(line)["seq"] for line in tail.stdout.splitlines()] == [2, 3]


def test_report_takes_a_url(pg_url: str, tmp_path: Path) -> None:
    with AuditLog(pg_url) as log:
        log.append(violation())
    done = cli("report", "--audit", pg_url, "--out", str(tmp_path))
    assert done.returncode == 0, done.stderr
    assert "audit chain intact (1 records)" in done.stdout
    text = (tmp_path / "report.md").read_text()
    assert "no-advertising" in text and "pgtest-secret" not in text


def test_init_then_upgrade_report_the_schema_version(pg_url: str) -> None:
    init = cli("audit", "init", pg_url)
    assert init.returncode == 0 and "schema version 1" in init.stdout, init.stderr
    upgrade = cli("audit", "upgrade", pg_url)
    assert upgrade.returncode == 0 and "already current" in upgrade.stdout, upgrade.stderr
    with psycopg.connect(pg_url) as conn:
        assert conn.execute("SELECT version FROM purposeguard_schema_version").fetchall() == [(1,)]


# -- bad input: one line naming the cause, nothing written --------------------------


def _one_line_error(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    return lines[0]


@pytest.mark.parametrize(
    ("url", "cause"),
    [
        ("postgresql://u:p@127.0.0.1:notaport/db", "port 'notaport' is not a number"),
        ("postgresql://u:p@127.0.0.1:5432/db?nosuchoption=1", "malformed PostgreSQL URL"),
        ("mysql://u:p@127.0.0.1/db", "unsupported storage URL scheme 'mysql'"),
        ("sqlite://relative-without-slash", "malformed SQLite URL"),
    ],
)
def test_a_malformed_url_is_one_line_naming_it(url: str, cause: str) -> None:
    line = _one_line_error(cli("audit", "verify", url))
    assert cause in line
    with pytest.raises(AuditError, match=cause.replace("(", r"\(")):
        AuditLog(url)


def test_wrong_credentials_are_one_line(postgres: object, pg_url: str) -> None:
    wrong = pg_url.replace("pgtest-secret", "not-the-password")
    line = _one_line_error(cli("audit", "verify", wrong))
    assert "password authentication failed" in line and "not-the-password" not in line
    with pytest.raises(AuditError, match="password authentication failed"):
        ConsentStore(wrong)


def test_an_unreachable_server_is_one_line() -> None:
    from services import free_port

    line = _one_line_error(cli("audit", "tail", f"postgresql://u:p@127.0.0.1:{free_port()}/db"))
    assert "cannot connect" in line and "Connection refused" in line


def test_reading_an_empty_database_creates_nothing(pg_url: str) -> None:
    line = _one_line_error(cli("audit", "verify", pg_url))
    assert "no purposeguard tables" in line and "purposeguard audit init" in line
    with psycopg.connect(pg_url) as conn:
        assert conn.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'"
        ).fetchone() == (0,)


@pytest.mark.parametrize(
    ("version", "cause"), [(2, "newer than this purposeguard's"), (0, "purposeguard audit upgrade")]
)
def test_another_schema_version_is_refused(pg_url: str, version: int, cause: str) -> None:
    with AuditLog(pg_url) as log:
        log.append(violation())
    with psycopg.connect(pg_url) as conn:
        conn.execute("UPDATE purposeguard_schema_version SET version = %s", (version,))
    line = _one_line_error(cli("audit", "verify", pg_url))
    assert f"schema version {version}" in line and cause in line
    with pytest.raises(AuditError, match=f"schema version {version}"):
        ConsentStore(pg_url)
    if version > 1:
        assert "newer" in _one_line_error(cli("audit", "upgrade", pg_url))


def test_a_table_altered_by_hand_is_refused(pg_url: str) -> None:
    with AuditLog(pg_url) as log:
        log.append(violation())
    with psycopg.connect(pg_url) as conn:
        conn.execute("ALTER TABLE purposeguard_audit RENAME COLUMN prev_hash TO previous")
    line = _one_line_error(cli("audit", "verify", pg_url))
    assert "table purposeguard_audit has no column prev_hash" in line


def test_a_record_edited_by_hand_fails_verification_naming_it(pg_url: str) -> None:
    with AuditLog(pg_url) as log:
        log.append_many([violation(i) for i in range(5)])
    with psycopg.connect(pg_url) as conn:
        conn.execute(
            "UPDATE purposeguard_audit SET data = replace(data, 'contoso', 'fabrikam') WHERE seq = 3"
        )
    line = _one_line_error(cli("audit", "verify", pg_url))
    assert "NOT intact: record 3 was altered" in line


def test_a_deleted_record_fails_verification(pg_url: str) -> None:
    with AuditLog(pg_url) as log:
        log.append_many([violation(i) for i in range(5)])
    with psycopg.connect(pg_url) as conn:
        conn.execute("DELETE FROM purposeguard_audit WHERE seq = 5")
    assert "record 5 is missing" in _one_line_error(cli("audit", "verify", pg_url))


def test_a_foreign_database_is_left_untouched(pg_url: str) -> None:
    with psycopg.connect(pg_url) as conn:
        conn.execute("CREATE TABLE purposeguard_audit (id int)")
    with pytest.raises(AuditError, match="no purposeguard_schema_version table"):
        AuditLog(pg_url)
    with psycopg.connect(pg_url) as conn:
        tables = conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
        ).fetchall()
    assert tables == [("purposeguard_audit",)]


def test_max_bytes_is_refused_for_postgres(pg_url: str) -> None:
    with pytest.raises(AuditError, match="max_bytes applies to SQLite"):
        open_storage(pg_url, max_bytes=10)


def test_sqlite_urls_name_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with AuditLog("sqlite:///relative.db") as log:
        log.append(violation())
    assert (tmp_path / "relative.db").exists()
    absolute = tmp_path / "absolute.db"
    with AuditLog(f"sqlite:///{absolute}") as log:
        log.append(violation())
    done = cli("audit", "verify", f"sqlite:///{absolute}")
    assert done.returncode == 0 and "intact, 1 records" in done.stdout


def test_a_grant_inserted_by_hand_is_never_used(pg_url: str, caplog: pytest.LogCaptureFixture) -> None:
    with ConsentStore(pg_url) as store:
        store.grant("contoso", "improvement", ["customer_data"], granted_by="admin@contoso")
    with psycopg.connect(pg_url) as conn:
        conn.execute(
            "INSERT INTO purposeguard_consent VALUES ('fabrikam', 'improvement', 'customer_data', 'mallory', 1, NULL)"
        )
        conn.execute("UPDATE purposeguard_consent SET expires_at = 4102444800 WHERE tenant = 'contoso'")
    with caplog.at_level("ERROR", logger="purposeguard.audit"), ConsentStore(pg_url) as store:
        assert not store.has_consent("fabrikam", "improvement", "customer_data.content.email")
        # The recorded grant still holds, never longer than its record says (no expiry: the table's).
        assert store.has_consent("contoso", "improvement", "customer_data.content.email")
        # Listed as decided: the grant added by hand is not shown as held.
        assert [(g.tenant, g.expires_at) for g in store.list()] == [("contoso", 4102444800)]
        assert store.list("fabrikam") == []
    assert "differs from the chain's consent records" in caplog.text


def test_a_grant_whose_record_was_deleted_is_not_used(pg_url: str) -> None:
    with ConsentStore(pg_url) as store:
        store.grant("contoso", "improvement", ["customer_data"], granted_by="admin@contoso")
    with psycopg.connect(pg_url) as conn:
        conn.execute("DELETE FROM purposeguard_audit WHERE kind = 'consent'")
    with ConsentStore(pg_url) as store:
        assert not store.has_consent("contoso", "improvement", "customer_data.content.email")


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_verify_names_a_consent_table_edited_by_hand(backend: str, pg_url: str, tmp_path: Path) -> None:
    url = pg_url if backend == "postgres" else str(tmp_path / "audit.db")
    with ConsentStore(url) as store:
        store.grant("contoso", "improvement", ["customer_data"], granted_by="admin@contoso")
    assert cli("audit", "verify", url).returncode == 0
    statement = "INSERT INTO purposeguard_consent VALUES ('fabrikam', 'improvement', 'customer_data', 'mallory', 1, NULL)"
    if backend == "postgres":
        with psycopg.connect(url) as conn:
            conn.execute(statement)
    else:
        import sqlite3

        with sqlite3.connect(url) as lite:
            lite.execute(statement)
        lite.close()
    line = _one_line_error(cli("audit", "verify", url))
    assert (
        "NOT intact: the consent table grants 'fabrikam' improvement for customer_data with no consent record"
        in line
    )


def test_storage_options_set_the_consent_bound(pg_url: str) -> None:
    with AuditLog(pg_url, storage_options={"stale_after": 2.5, "heartbeat": 0.5}) as log:
        assert (log.storage.stale_after, log.storage.heartbeat) == (2.5, 0.5)  # type: ignore[attr-defined]
        with ConsentStore(log) as store:
            store.grant("contoso", "improvement", ["customer_data"], granted_by="admin@contoso")
            assert store.has_consent("contoso", "improvement", "customer_data.content.email")


@pytest.mark.parametrize(
    ("options", "cause"),
    [
        ({"stale_after": 0.1, "heartbeat": 0.2}, "stale_after must be longer than heartbeat"),
        ({"stale_after": "soon"}, "stale_after must be a positive number"),
        ({"stale": 1.0}, "unknown storage option 'stale' for PostgreSQL"),
    ],
)
def test_bad_storage_options_are_one_error(pg_url: str, options: dict[str, object], cause: str) -> None:
    with pytest.raises(AuditError, match=cause):
        AuditLog(pg_url, storage_options=options)


def test_postgres_options_are_refused_for_sqlite(tmp_path: Path) -> None:
    with pytest.raises(AuditError, match="unknown storage option 'stale_after' for SQLite"):
        AuditLog(str(tmp_path / "audit.db"), storage_options={"stale_after": 2.0})


# A row's expiry edited by hand to what no grant can have: SQLite stores
# +-Infinity (NaN becomes NULL there), PostgreSQL all three.
NON_FINITE = [
    ("sqlite", float("inf")),
    ("sqlite", -float("inf")),
    ("postgres", float("inf")),
    ("postgres", -float("inf")),
    ("postgres", float("nan")),
]


@pytest.mark.parametrize("recorded", [None, 4102444800.0], ids=["no-expiry", "expiry"])
@pytest.mark.parametrize(("backend", "expiry"), NON_FINITE, ids=[f"{b}-{e}" for b, e in NON_FINITE])
def test_a_non_finite_expiry_written_by_hand_is_refused_on_both_backends(
    backend: str,
    expiry: float,
    recorded: float | None,
    pg_url: str,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    url = pg_url if backend == "postgres" else str(tmp_path / "audit.db")
    with ConsentStore(url) as store:
        store.grant(
            "contoso", "improvement", ["customer_data"], granted_by="admin@contoso", expires_at=recorded
        )
        store.grant("fabrikam", "improvement", ["customer_data"], granted_by="admin@fabrikam")
    if backend == "postgres":
        with psycopg.connect(url) as conn:
            conn.execute(
                "UPDATE purposeguard_consent SET expires_at = %s WHERE tenant = 'contoso'", (expiry,)
            )
    else:
        import sqlite3

        with sqlite3.connect(url) as lite:
            lite.execute("UPDATE purposeguard_consent SET expires_at = ? WHERE tenant = 'contoso'", (expiry,))
        lite.close()
    with caplog.at_level("ERROR", logger="purposeguard.audit"), ConsentStore(url) as store:
        # Neither the record's expiry nor the row's: no consent at all (fail closed).
        assert not store.has_consent("contoso", "improvement", CONTENT)
        assert store.has_consent("fabrikam", "improvement", CONTENT)
    assert "differs from the chain's consent records" in caplog.text
    line = _one_line_error(cli("audit", "verify", url))
    assert "the consent table's grant to 'contoso' of improvement for customer_data expires otherwise" in line


@pytest.mark.parametrize("sink_on", ["postgres", "sqlite"])
def test_a_sink_on_another_log_verifies_and_the_store_still_proves_its_table(
    sink_on: str, pg_url: str, tmp_path: Path
) -> None:
    file = str(tmp_path / "other.db")
    store_url, sink_url = (file, pg_url) if sink_on == "postgres" else (pg_url, file)
    store = ConsentStore(store_url)
    pg.configure("trust-center", consents=store, audit=sink_url)
    store.grant("contoso", "improvement", ["customer_data"], granted_by="admin@contoso")
    pg.configure("trust-center", audit=False)
    store.close()
    for url in (sink_url, store_url):
        done = cli("audit", "verify", url)
        assert done.returncode == 0 and "intact, 1 records" in done.stdout, done.stderr
    if sink_on == "sqlite":
        with psycopg.connect(pg_url) as conn:
            conn.execute("DELETE FROM purposeguard_consent")
    else:
        import sqlite3

        with sqlite3.connect(file) as lite:
            lite.execute("DELETE FROM purposeguard_consent")
        lite.close()
    assert "lacks the grant to 'contoso'" in _one_line_error(cli("audit", "verify", store_url))
    assert cli("audit", "verify", sink_url).returncode == 0
