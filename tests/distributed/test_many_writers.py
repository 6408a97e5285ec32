"""Several replica processes append to one PostgreSQL chain: no forks, no gaps,
and a SIGKILL loses no more than the durability option allows."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import psycopg

from purposeguard.audit import AuditLog

WRITER = Path(__file__).resolve().parent / "writer.py"


def start_writer(
    url: str, name: str, count: int, durability: str, batch_size: int = 512, pause: float = 0.0
) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(WRITER), url, name, str(count), durability, str(batch_size), str(pause)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def by_writer(url: str) -> dict[str, list[int]]:
    """Each writer's record numbers, in chain order."""
    found: dict[str, list[int]] = defaultdict(list)
    with AuditLog(url, readonly=True) as log:
        for entry in log.records():
            name, _, n = entry.data["function"].rpartition(".")
            found[name].append(int(n))
    return found


def test_four_processes_append_to_one_chain_without_forks_or_gaps(pg_url: str) -> None:
    AuditLog(pg_url).close()  # the schema exists before the writers race
    writers = [
        start_writer(pg_url, f"replica{i}", 300, "sync" if i == 0 else "batch", batch_size=7)
        for i in range(4)
    ]
    for process in writers:
        out, err = process.communicate(timeout=120)
        assert process.returncode == 0, err
        assert out.endswith("done\n")
    with AuditLog(pg_url, readonly=True) as log:
        result = log.verify()
    assert result.ok, result.reason
    assert result.count == 1200
    found = by_writer(pg_url)
    # Each writer's records are all there, in the order it wrote them.
    assert {name: numbers for name, numbers in found.items()} == {
        f"replica{i}": list(range(300)) for i in range(4)
    }
    with psycopg.connect(pg_url) as conn:
        seqs = [row[0] for row in conn.execute("SELECT seq FROM purposeguard_audit ORDER BY seq")]
        prevs = conn.execute("SELECT count(DISTINCT prev_hash) FROM purposeguard_audit").fetchone()
    assert seqs == list(range(1, 1201))
    assert prevs == (1200,)  # no two records claim the same predecessor: no fork


def _kill_after(process: subprocess.Popen[str], acks: int) -> list[int]:
    assert process.stdout is not None
    acknowledged: list[int] = []
    deadline = time.monotonic() + 60
    while len(acknowledged) < acks and time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        if line.startswith("ack "):
            acknowledged.append(int(line.split()[1]))
    process.send_signal(signal.SIGKILL)
    # What it acknowledged before it died, including lines not read yet.
    rest = process.stdout.read()  # through the same buffer readline() used
    process.wait(timeout=30)
    process.stdout.close()
    if process.stderr is not None:
        process.stderr.close()
    acknowledged += [int(line.split()[1]) for line in rest.splitlines() if line.startswith("ack ")]
    return acknowledged


def test_sigkill_with_sync_durability_loses_no_acknowledged_record(pg_url: str) -> None:
    AuditLog(pg_url).close()
    writers = [start_writer(pg_url, f"replica{i}", 100_000, "sync") for i in range(3)]
    acked = [_kill_after(process, 150 + 40 * i) for i, process in enumerate(writers)]
    with AuditLog(pg_url, readonly=True) as log:
        result = log.verify()
    assert result.ok, result.reason
    found = by_writer(pg_url)
    for i, numbers in enumerate(acked):
        assert len(numbers) >= 150 + 40 * i
        assert numbers == list(range(len(numbers)))
        kept = found[f"replica{i}"]
        # Everything acknowledged is there; at most the one record in flight beyond it.
        assert kept[: len(numbers)] == numbers
        assert len(kept) - len(numbers) <= 1


def test_sigkill_with_batch_durability_loses_only_a_tail_of_unflushed_records(pg_url: str) -> None:
    AuditLog(pg_url).close()
    # About 500 records a second each; the sink commits every 10 ms.
    writers = [
        start_writer(pg_url, f"replica{i}", 100_000, "batch", batch_size=50, pause=0.002) for i in range(3)
    ]
    acked = [_kill_after(process, 400) for process in writers]
    with AuditLog(pg_url, readonly=True) as log:
        result = log.verify()
    assert result.ok, result.reason
    found = by_writer(pg_url)
    for i, numbers in enumerate(acked):
        kept = found[f"replica{i}"]
        # A prefix of what was handed over: lost records are the newest, never a hole.
        assert kept == list(range(len(kept)))
        # Lost: what was queued since the last commit, well under a second's worth here.
        assert len(numbers) - 500 <= len(kept) <= len(numbers) + 1, (len(kept), len(numbers))
