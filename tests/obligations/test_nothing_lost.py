"""Nothing lost, nothing forged: records the writer cannot encode are escaped
and kept, failing batches are retried in smaller pieces, text output cannot
be forged, and real processes killed mid-burst or a WAL damaged on disk are
named by `audit verify --key-file`."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import purposeguard as pg
from purposeguard._errors import SinkFailure
from purposeguard.audit import AuditError, AuditLog, AuditSink
from purposeguard.cli import main

KEY = "nothing-lost-" + "0123456789abcdef" * 3


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    path = tmp_path / "audit.key"
    path.write_text(KEY + "\n")
    return path


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "purposeguard", *args], capture_output=True, text=True, timeout=60
    )


def violation(n: int, tenant: str = "contoso", mode: str = "trace", padding: int = 0) -> pg.Violation:
    return pg.Violation(
        category="customer_data.content.email",
        purpose="advertising",
        rule="no-advertising",
        via="argument",
        function=f"tests.f{n}" + "x" * padding,
        tenant=tenant,
        mode=mode,
        timestamp=time.time(),
    )


# -- records the writer cannot encode ------------------------------------------------


def test_a_lone_surrogate_is_escaped_stored_and_flagged_never_lost_with_its_batch(log_path: Path) -> None:
    sink = AuditSink(AuditLog(log_path), owns_log=True, interval=60)
    for n in range(10):
        sink(violation(n))
    sink(violation(10, tenant="bad\udc80tenant"))
    for n in range(11, 21):
        sink(violation(n))
    sink.flush()
    assert sink.written == 21 and sink.error is None
    sink.close()
    with AuditLog(log_path, readonly=True) as log:
        entries = list(log.records())
        assert log.verify().ok
    assert [e.data["function"] for e in entries] == [f"tests.f{n}" for n in range(21)]
    odd = entries[10].data
    assert odd["tenant"] == "bad\\udc80tenant" and odd["escaped"] == ["tenant"]
    assert all("escaped" not in e.data for e in entries if e.seq != 11)


def test_non_finite_numbers_and_foreign_objects_are_kept_by_name(log_path: Path) -> None:
    class Opaque:
        def __repr__(self) -> str:
            return "could hold anything"

    with AuditLog(log_path) as log:
        log.append({"kind": "note", "ratio": float("nan"), "limit": float("-inf"), "timestamp": float("inf")})
        log.append({"kind": "note", "thing": Opaque()})
        first, second = list(log.records())
        assert log.verify().ok
    assert first.data["ratio"] == "nan" and first.data["limit"] == "-inf" and first.data["timestamp"] == "inf"
    assert sorted(first.data["escaped"]) == ["limit", "ratio", "timestamp"]
    assert abs(first.timestamp - time.time()) < 60  # the entry's own time, not infinity
    assert second.data["thing"] == "<Opaque>" and second.data["escaped"] == ["thing"]


# -- a failing batch ---------------------------------------------------------------------


def test_a_batch_that_does_not_fit_is_written_in_smaller_pieces(log_path: Path) -> None:
    # A log capped at 48 pages: a batch of 512 large records cannot fit, part of it can.
    log = AuditLog(log_path, max_bytes=48 * 4096)
    sink = AuditSink(log, owns_log=True, interval=60, batch_size=512)
    for n in range(600):
        sink(violation(n, padding=1000))
    with pytest.raises(AuditError, match="full"):
        sink.flush()
    written = sink.written
    assert 0 < written < 600 and sink.pending == 600 - written
    with AuditLog(log_path, readonly=True) as reader:
        assert len(reader) == written
        result = reader.verify()
        assert result.ok and result.count == written
        functions = [e.data["function"][:12].rstrip("x") for e in reader.records()]
    assert functions == [f"tests.f{n}" for n in range(written)]
    # Enforce mode denies while the log cannot keep its records.
    with pytest.raises(SinkFailure, match="cannot keep records"):
        sink(violation(999, mode="enforce"))
    sink.close()


# -- text output ---------------------------------------------------------------------------


def test_tail_escapes_what_could_forge_a_line_or_a_field(
    log_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with AuditLog(log_path) as log:
        log.append(violation(1, tenant="evil\n     2  2026-01-01T00:00:00Z  consent          action=grant"))
        log.append(violation(2, tenant="a rule=forged \x1b[2J\u202e\udc80"))
    assert main(["audit", "tail", str(log_path)]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert len(lines) == 2
    assert "\x1b" not in out and "\u202e" not in out
    assert "function=tests.f1 " in lines[0] and "function=tests.f2 " in lines[1]
    assert 'tenant="evil\\x0a     2  2026-01-01T00:00:00Z  consent          action=grant"' in lines[0]
    assert 'tenant="a rule=forged \\x1b[2J\\u202e\\\\udc80"' in lines[1] and "(escaped)" in lines[1]
    assert main(["audit", "tail", str(log_path), "--json"]) == 0
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert records[0]["data"]["tenant"].startswith("evil\n")


# -- real processes ------------------------------------------------------------------------

BURST_WRITER = textwrap.dedent(
    """
    import sys, time
    import purposeguard as pg
    from purposeguard.audit import AuditLog, AuditSink

    sink = AuditSink(AuditLog(sys.argv[1]), owns_log=True, durability="sync")
    ident = sys.argv[2]
    i = 0
    while True:
        sink(pg.Violation("customer_data", "advertising", "no-advertising", "argument",
                          f"{ident}.{i}", "contoso", "trace", time.time()))
        # Printed only once the sink returned: a record the caller saw handed over.
        print(f"{ident}.{i}", flush=True)
        i += 1
    """
)


def _start(script: Path, *args: str, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(script), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def test_sigkill_during_bursts_from_several_processes_loses_no_acknowledged_record(
    tmp_path: Path, log_path: Path, key_file: Path
) -> None:
    script = tmp_path / "burst_writer.py"
    script.write_text(BURST_WRITER)
    AuditLog(log_path, key=key_file).close()
    env = {**os.environ, "PURPOSEGUARD_AUDIT_KEY_FILE": str(key_file)}
    writers = [_start(script, str(log_path), f"w{n}", env=env) for n in range(3)]
    acknowledged: list[str] = []
    try:
        deadline = time.monotonic() + 60
        for writer in writers:
            assert writer.stdout is not None
            for _ in range(40):  # each writer well into its burst
                line = writer.stdout.readline()
                assert line, writer.stderr.read() if writer.stderr else ""
                acknowledged.append(line.strip())
            assert time.monotonic() < deadline
    finally:
        for writer in writers:
            writer.send_signal(signal.SIGKILL)
        for writer in writers:
            out, _ = writer.communicate(timeout=30)
            # Acknowledged before the kill, still in the pipe: whole lines only
            # (the last one may have been cut by the kill).
            acknowledged += [line for line in out.split("\n")[:-1] if re.fullmatch(r"w\d\.\d+", line)]
    done = cli("audit", "verify", str(log_path), "--key-file", str(key_file))
    assert done.returncode == 0, done.stderr
    assert "keyed chain" in done.stdout
    with AuditLog(log_path, readonly=True, key=key_file) as log:
        stored = {e.data["function"] for e in log.records()}
    assert set(acknowledged) <= stored
    assert len(acknowledged) >= 120


WAL_WRITER = textwrap.dedent(
    """
    import os, signal, sys, time
    import purposeguard as pg
    from purposeguard.audit import AuditLog

    log = AuditLog(sys.argv[1], checkpoint_every=20)
    for batch in range(30):
        log.append_many([
            pg.Violation("customer_data", "advertising", "no-advertising", "argument",
                         f"b{batch}.{i}" + "x" * 200, "contoso", "trace", time.time())
            for i in range(10)
        ])
    print("written", flush=True)
    os.kill(os.getpid(), signal.SIGKILL)  # the WAL stays, as after a crash
    """
)


@pytest.fixture
def crashed_log(tmp_path: Path, log_path: Path, key_file: Path) -> Iterator[Path]:
    script = tmp_path / "wal_writer.py"
    script.write_text(WAL_WRITER)
    env = {**os.environ, "PURPOSEGUARD_AUDIT_KEY_FILE": str(key_file)}
    done = subprocess.run(
        [sys.executable, str(script), str(log_path)], capture_output=True, text=True, timeout=120, env=env
    )
    assert done.returncode == -signal.SIGKILL and done.stdout == "written\n", done.stderr
    wal = Path(str(log_path) + "-wal")
    assert wal.stat().st_size > 100_000  # the records are still in the WAL, not yet in the file
    yield log_path


def _wal_copy(log_path: Path, tmp_path: Path, name: str) -> tuple[Path, Path]:
    """A copy of the crashed log (file, WAL, checkpoint) to damage."""
    folder = tmp_path / name
    folder.mkdir()
    for suffix in ("", "-wal", "-checkpoint"):
        shutil.copy(str(log_path) + suffix, str(folder / log_path.name) + suffix)
    copy = folder / log_path.name
    return copy, Path(str(copy) + "-wal")


def test_a_crashed_writer_leaves_a_log_that_verifies(
    crashed_log: Path, key_file: Path, tmp_path: Path
) -> None:
    copy, _ = _wal_copy(crashed_log, tmp_path, "intact")
    done = cli("audit", "verify", str(copy), "--key-file", str(key_file))
    assert done.returncode == 0, done.stderr
    assert "intact, 300 records" in done.stdout


@pytest.mark.parametrize("damage", ["corrupted", "truncated"])
def test_a_damaged_wal_is_named(crashed_log: Path, key_file: Path, tmp_path: Path, damage: str) -> None:
    copy, wal = _wal_copy(crashed_log, tmp_path, damage)
    data = bytearray(wal.read_bytes())
    middle = len(data) // 2
    if damage == "corrupted":
        for offset in range(middle, middle + 64):
            data[offset] ^= 0xFF
        wal.write_bytes(bytes(data))
    else:
        wal.write_bytes(bytes(data[:middle]))
    done = cli("audit", "verify", str(copy), "--key-file", str(key_file))
    assert done.returncode == 1 and done.stderr.count("\n") == 1, done.stdout + done.stderr
    # Checkpoints every 20 records (the writer was killed before closing):
    # the last one names at least record 281, past where the WAL broke.
    found = re.search(
        r"records (\d+)-(\d+) are missing: the chain ends at record (\d+) but a signed checkpoint "
        r"says (\d+) were written \(a corrupted or truncated write-ahead log",
        done.stderr,
    )
    assert found, done.stderr
    first, last, end, said = map(int, found.groups())
    assert first == end + 1 and last == said and 281 <= said <= 300 and end < said


def test_a_swapped_file_is_named(tmp_path: Path, log_path: Path, key_file: Path) -> None:
    with AuditLog(log_path, key=key_file) as log:
        log.append_many([violation(n) for n in range(5)])
    other = tmp_path / "other" / "audit.db"
    other.parent.mkdir()
    with AuditLog(other, key=key_file) as log:
        log.append_many([violation(n) for n in range(50)])
    shutil.copy(other, log_path)  # the file only: its checkpoint stays
    done = cli("audit", "verify", str(log_path), "--key-file", str(key_file))
    assert done.returncode == 1 and "the file was swapped" in done.stderr
    # A writer that goes on with the swapped file does not erase the evidence.
    with AuditLog(log_path, key=key_file) as log:
        log.append(violation(99))
    done = cli("audit", "verify", str(log_path), "--key-file", str(key_file))
    assert done.returncode == 1 and "the file was swapped" in done.stderr


def test_an_older_copy_of_the_log_put_back_is_named(tmp_path: Path, log_path: Path, key_file: Path) -> None:
    with AuditLog(log_path, key=key_file) as log:
        log.append_many([violation(n) for n in range(5)])
    older = tmp_path / "older.db"
    shutil.copy(log_path, older)
    with AuditLog(log_path, key=key_file) as log:
        log.append_many([violation(n) for n in range(5, 12)])
    shutil.copy(older, log_path)
    done = cli("audit", "verify", str(log_path), "--key-file", str(key_file))
    assert done.returncode == 1
    assert (
        "records 6-12 are missing: the chain ends at record 5 but a signed checkpoint says 12" in done.stderr
    )


def test_a_deleted_or_forged_checkpoint_is_named(tmp_path: Path, log_path: Path, key_file: Path) -> None:
    with AuditLog(log_path, key=key_file) as log:
        log.append_many([violation(n) for n in range(5)])
    checkpoint = Path(str(log_path) + "-checkpoint")
    saved = json.loads(checkpoint.read_text())
    checkpoint.write_text(json.dumps({**saved, "seq": 3}))
    done = cli("audit", "verify", str(log_path), "--key-file", str(key_file))
    assert done.returncode == 1 and "is not signed with the key (forged)" in done.stderr
    checkpoint.write_text("{not json")
    done = cli("audit", "verify", str(log_path), "--key-file", str(key_file))
    assert done.returncode == 1 and "is damaged" in done.stderr
    checkpoint.unlink()
    done = cli("audit", "verify", str(log_path), "--key-file", str(key_file))
    assert done.returncode == 1 and "checkpoint file" in done.stderr and "is missing" in done.stderr


# -- a disk that fills ---------------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A real 2 MiB filesystem (tmpfs), unmounted afterwards."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.fail("this test mounts a tmpfs: run the services tests as root")
    folder = tmp_path / "small"
    folder.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2M", "tmpfs", str(folder)], check=True, timeout=30)
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False, timeout=30)


@pytest.mark.services
def test_a_disk_that_fills_loses_nothing_once_space_is_back(small_disk: Path, key_file: Path) -> None:
    filler = small_disk / "filler"
    filler.write_bytes(b"\0" * 600_000)  # what is freed later
    log_path = small_disk / "audit.db"
    sink = AuditSink(AuditLog(log_path, key=key_file), owns_log=True, interval=60)
    total = 0
    try:
        while sink.error is None and total < 20_000:
            for _ in range(100):
                sink(violation(total, padding=300))
                total += 1
            try:
                sink.flush()
            except AuditError:
                break
        assert sink.error is not None and "full" in sink.error.reason
        assert 0 < sink.written < total
        # What was written is a sound, keyed chain.
        done = cli("audit", "verify", str(log_path), "--key-file", str(key_file))
        assert done.returncode == 0, done.stderr
        assert f"intact, {sink.written} records" in done.stdout
        with pytest.raises(SinkFailure):
            sink(violation(total, mode="enforce"))
        total += 1  # kept in the queue for the retry, though the caller was denied
        filler.unlink()
        sink.flush()
        assert sink.error is None and sink.written == total and sink.pending == 0
    finally:
        sink.close()
    done = cli("audit", "verify", str(log_path), "--key-file", str(key_file))
    assert done.returncode == 0, done.stderr
    assert f"intact, {total} records" in done.stdout
