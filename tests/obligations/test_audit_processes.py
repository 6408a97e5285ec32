"""Several processes writing one log at once, and a writer killed mid-burst."""

from __future__ import annotations

import importlib
import os
import signal
import subprocess
import sys
import textwrap
from collections import Counter
from pathlib import Path

import pytest

from purposeguard.audit import AuditLog

WORKER = """
import time

import purposeguard as pg
from purposeguard.audit import AuditLog


def burst(path, ident, count, ready):
    log = AuditLog(path)
    ready.wait(60)  # every worker imported and opened: start the bursts together
    for i in range(count):
        log.append(pg.Violation(
            category="customer_data", purpose="advertising", rule="no-advertising",
            via="argument", function=f"worker{ident}.n{i}", tenant="contoso",
            mode="trace", timestamp=time.time(),
        ))
    log.close()
"""


def test_four_processes_times_500_records_all_present_and_chained(
    tmp_path: Path, log_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import multiprocessing

    (tmp_path / "pg_audit_burst_worker.py").write_text(WORKER)
    monkeypatch.syspath_prepend(str(tmp_path))
    worker = importlib.import_module("pg_audit_burst_worker")
    AuditLog(log_path).close()  # created once; the workers race to append, not to create
    context = multiprocessing.get_context("spawn")
    ready = context.Barrier(4)
    processes = [
        context.Process(target=worker.burst, args=(str(log_path), ident, 500, ready)) for ident in range(4)
    ]
    for process in processes:
        process.start()
    for process in processes:
        process.join(120)
    assert [p.exitcode for p in processes] == [0, 0, 0, 0]
    with AuditLog(log_path, readonly=True) as log:
        entries = list(log.records())
        result = log.verify()
    assert result.ok, result.reason
    assert result.count == 2000
    assert [e.seq for e in entries] == list(range(1, 2001))
    functions = [e.data["function"] for e in entries]
    assert len(set(functions)) == 2000
    per_worker = Counter(f.split(".")[0] for f in functions)
    assert per_worker == {f"worker{i}": 500 for i in range(4)}
    # Each worker's records keep the order it wrote them in.
    for ident in range(4):
        mine = [int(f.split(".n")[1]) for f in functions if f.startswith(f"worker{ident}.")]
        assert mine == sorted(mine)


KILLED_WRITER = textwrap.dedent(
    """
    import sys, time
    import purposeguard as pg
    from purposeguard.audit import AuditLog

    log = AuditLog(sys.argv[1])
    i = 0
    while True:
        seq = log.append(pg.Violation(
            category="customer_data", purpose="advertising", rule="no-advertising",
            via="argument", function=f"killed.n{i}", tenant="contoso", mode="trace",
            timestamp=time.time(),
        ))
        # Acknowledged: append() returned after the commit.
        sys.stdout.write(f"{seq} {i}\\n")
        sys.stdout.flush()
        i += 1
    """
)


def _run_and_kill(script: str, path: Path, acks_wanted: int) -> list[str]:
    process = subprocess.Popen(
        [sys.executable, "-c", script, str(path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    acks: list[str] = []
    try:
        assert process.stdout is not None
        while len(acks) < acks_wanted:
            line = process.stdout.readline()
            if not line:
                break
            acks.append(line.strip())
        process.send_signal(signal.SIGKILL)
        rest, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == -signal.SIGKILL, err
    acks.extend(line.strip() for line in rest.splitlines() if line.strip())
    assert len(acks) >= acks_wanted, err
    return acks


def test_sigkill_mid_burst_keeps_every_acknowledged_record(log_path: Path) -> None:
    acks = _run_and_kill(KILLED_WRITER, log_path, 300)
    with AuditLog(log_path) as log:
        result = log.verify()
        by_function = {e.data["function"]: e.seq for e in log.records()}
        # The log is usable after the crash: the chain continues.
        after = log.append({"kind": "note", "text": "after the crash"})
        assert log.verify().ok
    assert result.ok, result.reason
    for ack in acks:
        seq, i = ack.split()
        assert by_function[f"killed.n{i}"] == int(seq)
    assert after == result.count + 1


KILLED_SINK_WRITER = textwrap.dedent(
    """
    import sys
    import purposeguard as pg
    from purposeguard import audit

    pg.configure("trust-center", mode="trace", audit=sys.argv[1])
    sink = audit.attached()

    @pg.purpose("advertising")
    def recommend(text):
        return len(text)

    body = pg.label("quarterly numbers", "customer_data.content.email")
    i = 0
    while True:
        recommend(body)
        i += 1
        if i % 50 == 0:
            sink.flush()
            # Acknowledged: every violation so far is committed.
            sys.stdout.write(f"{i}\\n")
            sys.stdout.flush()
    """
)


def test_sigkill_of_a_process_using_the_batching_sink_keeps_what_it_flushed(log_path: Path) -> None:
    acks = _run_and_kill(KILLED_SINK_WRITER, log_path, 20)
    acknowledged = max(int(a) for a in acks)
    with AuditLog(log_path, readonly=True) as log:
        result = log.verify()
        kinds = Counter(e.kind for e in log.records())
    assert result.ok, result.reason
    assert kinds["violation"] >= acknowledged >= 1000


FORKING_WRITER = textwrap.dedent(
    """
    import os, sys
    import purposeguard as pg
    from purposeguard import audit

    pg.configure("trust-center", mode="trace", audit=sys.argv[1])

    @pg.purpose("advertising")
    def recommend(text):
        return len(text)

    body = pg.label("quarterly numbers", "customer_data.content.email")
    for _ in range(10):
        recommend(body)
    pid = os.fork()
    if pid == 0:
        # The child has its own sink on the same file.
        sink = audit.attached()
        for _ in range(25):
            recommend(body)
        sink.flush()
        os._exit(0 if sink.written == 25 else 3)
    for _ in range(15):
        recommend(body)
    _, status = os.waitpid(pid, 0)
    audit.detach()
    sys.exit(os.waitstatus_to_exitcode(status))
    """
)


def test_a_forked_worker_gets_its_own_sink_on_the_same_file(log_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-c", FORKING_WRITER, str(log_path)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    with AuditLog(log_path, readonly=True) as log:
        verified = log.verify()
    assert verified.ok, verified.reason
    assert verified.count == 50


APPENDING_WRITER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from purposeguard.audit import AuditLog

    log = AuditLog(sys.argv[1], synchronous="normal")
    stop = Path(sys.argv[2])
    deadline = time.monotonic() + 60
    i = 0
    while not stop.exists() and time.monotonic() < deadline and i < 200_000:
        log.append({"kind": "note", "i": i})
        i += 1
        if i == 50:
            print("started", flush=True)
    log.close()
    """
)


def test_verify_while_another_process_appends_never_reports_a_false_failure(
    tmp_path: Path, log_path: Path
) -> None:
    # verify must read the chain and the recorded end as of one moment: a
    # record committed between the two is not a deleted one.
    AuditLog(log_path).close()
    stop = tmp_path / "stop"
    with subprocess.Popen(
        [sys.executable, "-c", APPENDING_WRITER, str(log_path), str(stop)],
        stdout=subprocess.PIPE,
        text=True,
    ) as writer:
        try:
            assert writer.stdout is not None and writer.stdout.readline().strip() == "started"
            counts = []
            with AuditLog(log_path, readonly=True) as reader:
                for _ in range(40):
                    result = reader.verify()
                    assert result.ok, result.reason
                    counts.append(result.count)
            with AuditLog(log_path) as shared:  # a writable log, as a service would hold it
                for _ in range(10):
                    result = shared.verify()
                    assert result.ok, result.reason
                    counts.append(result.count)
            assert writer.poll() is None, "the writer stopped before verify finished"
            assert counts[-1] > counts[0], "nothing was appended while verify ran"
        finally:
            stop.touch()
            writer.wait(30)
    assert writer.returncode == 0
    with AuditLog(log_path, readonly=True) as log:
        assert log.verify().ok
