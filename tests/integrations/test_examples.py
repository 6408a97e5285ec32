"""The example services run as they are shipped: each in its own process on loopback."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
SECRET = "Quarterly numbers"


@pytest.fixture(params=["asgi_service.py", "flask_service.py"])
def example(request: pytest.FixtureRequest) -> Iterator[str]:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    process = subprocess.Popen(
        [sys.executable, str(EXAMPLES / request.param), str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    try:
        while True:
            try:
                httpx.get(url + "/mail/1", timeout=1)
                break
            except httpx.TransportError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"{request.param} did not start") from None
                time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)
        if process.stderr:
            process.stderr.close()


def test_example_serves_routes_with_purposes_and_guards_outgoing_http(example: str) -> None:
    allowed = httpx.get(example + "/mail/1", headers={"x-tenant": "contoso"}, timeout=10)
    assert allowed.status_code == 200
    assert allowed.json() == {"tenant": "contoso", "preview": "Quarterly"}

    refused = httpx.get(example + "/newsletter/1", timeout=10)
    assert refused.status_code == 403
    assert refused.json()["rule"] == "no-content-in-service-communications"

    to_ads = httpx.get(example + "/promote/1", timeout=10)
    assert to_ads.status_code == 403
    assert (to_ads.json()["rule"], to_ads.json()["via"]) == ("no-advertising", "egress")
    assert SECRET not in refused.text + to_ads.text
