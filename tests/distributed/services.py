"""Throwaway PostgreSQL and Redis servers for the tests: real processes on
loopback ports, with temporary data directories, stopped by the tests.

PostgreSQL refuses to run as root, so when the tests run as root the server
runs as the ``postgres`` system user (created with ``useradd`` when missing).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

PG_BIN = Path(os.environ.get("PURPOSEGUARD_PG_BIN", "/usr/lib/postgresql/15/bin"))
PG_USER = "pgtest"
PG_PASSWORD = "pgtest-secret"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port}")


def _system_user() -> str | None:
    """The unprivileged user PostgreSQL runs as (None: run as ourselves)."""
    if os.geteuid() != 0:
        return None
    import pwd

    for name in ("postgres", "purposeguard-pg"):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            continue
    subprocess.run(
        ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", "purposeguard-pg"],
        check=True,
        capture_output=True,
    )
    return "purposeguard-pg"


class PostgresServer:
    """One PostgreSQL cluster in a temporary directory, password authentication only."""

    def __init__(self) -> None:
        if not (PG_BIN / "initdb").exists():
            raise RuntimeError(
                f"PostgreSQL binaries not found in {PG_BIN}: install Debian's postgresql package "
                "(or set PURPOSEGUARD_PG_BIN)"
            )
        self.user = _system_user()
        self.root = Path(tempfile.mkdtemp(prefix="purposeguard-pg-"))
        self.data = self.root / "data"
        self.port = free_port()
        self.log = self.root / "server.log"
        if self.user is not None:
            shutil.chown(self.root, self.user)
        password_file = self.root / "password"
        password_file.write_text(PG_PASSWORD + "\n")
        if self.user is not None:
            shutil.chown(password_file, self.user)
        self._run(
            str(PG_BIN / "initdb"),
            "-D",
            str(self.data),
            "-U",
            PG_USER,
            "--auth=scram-sha-256",
            f"--pwfile={password_file}",
            "--no-sync",
            "-E",
            "UTF8",
            "--locale=C",
        )
        password_file.unlink()
        self.start()

    def _run(self, *command: str) -> None:
        if self.user is not None:
            command = ("runuser", "-u", self.user, "--", *command)
        result = subprocess.run(command, capture_output=True, text=True, cwd=self.root, timeout=120)
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed:\n{result.stdout}{result.stderr}")

    def start(self) -> None:
        options = (
            f"-c listen_addresses=127.0.0.1 -p {self.port} -c unix_socket_directories='' "
            "-c fsync=off -c full_page_writes=off -c max_connections=100 -c shared_buffers=32MB"
        )
        self._run(
            str(PG_BIN / "pg_ctl"),
            "-D",
            str(self.data),
            "-l",
            str(self.log),
            "-o",
            options,
            "-w",
            "-t",
            "60",
            "start",
        )
        wait_for_port(self.port)

    def stop(self, mode: str = "fast") -> None:
        self._run(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop")

    def url(self, database: str = "postgres", *, password: str = PG_PASSWORD) -> str:
        return f"postgresql://{PG_USER}:{password}@127.0.0.1:{self.port}/{database}"

    def create_database(self) -> str:
        """A new empty database; its URL."""
        import psycopg

        name = "t_" + uuid.uuid4().hex[:12]
        with psycopg.connect(self.url(), autocommit=True) as connection:
            connection.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def close(self) -> None:
        try:
            self.stop("immediate")
        except RuntimeError:
            pass  # already stopped
        shutil.rmtree(self.root, ignore_errors=True)


class RedisServer:
    """One redis-server on loopback, no persistence."""

    def __init__(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server not found: install Debian's redis-server package")
        self.root = Path(tempfile.mkdtemp(prefix="purposeguard-redis-"))
        self.port = free_port()
        self.process = subprocess.Popen(
            [
                binary,
                "--bind",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.root),
                "--daemonize",
                "no",
                "--protected-mode",
                "yes",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for_port(self.port)

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def close(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
        shutil.rmtree(self.root, ignore_errors=True)
