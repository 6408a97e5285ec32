"""Serving the mail service with uvicorn on loopback, in a thread of this process."""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

DEFAULT_HOST = "127.0.0.1"


class PortInUse(OSError):
    """The port asked for cannot be bound on 127.0.0.1."""


def bind(port: int = 0, host: str = DEFAULT_HOST) -> socket.socket:
    """A listening-ready socket on ``host:port`` (0: a free port).

    Bound here, before uvicorn starts, so a port in use is reported at once
    and a free port cannot be taken by someone else in between.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.bind((host, port))
    except OSError as error:
        sock.close()
        raise PortInUse(
            error.errno, f"port {port} on {host} is in use or not available ({error.strerror})"
        ) from None
    return sock


class ServiceThread:
    """uvicorn serving ``app`` from a thread; a context manager.

    >>> with ServiceThread(create_app()) as server:   # doctest: +SKIP
    ...     httpx.get(server.url + "/healthz")
    """

    def __init__(
        self, app: Any, *, port: int = 0, host: str = DEFAULT_HOST, log_level: str = "warning"
    ) -> None:
        import uvicorn

        self.sock = bind(port, host)
        self.host = host
        self.port = int(self.sock.getsockname()[1])
        config = uvicorn.Config(app, log_level=log_level, lifespan="off", ws="none", access_log=False)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.sock]}, name="mailservice", daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout: float = 15.0) -> ServiceThread:
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the mail service did not start on {self.url}")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        if self.thread.is_alive():
            self.thread.join(timeout=10)
        self.sock.close()

    def __enter__(self) -> ServiceThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
