"""A replica that writes violations to a shared audit log: run as a process by the tests.

    python writer.py URL NAME COUNT DURABILITY [BATCH_SIZE [PAUSE]]

Prints ``ack N`` once record N was handed to the sink (with sync durability:
once it is committed), and ``done`` after the last one is flushed.
"""

from __future__ import annotations

import sys
import time

import purposeguard as pg
from purposeguard import audit
from purposeguard._runtime import get_guard


def main() -> None:
    url, name, count, durability = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    batch_size = int(sys.argv[5]) if len(sys.argv) > 5 else 512
    pause = float(sys.argv[6]) if len(sys.argv) > 6 else 0.0
    pg.configure("trust-center", mode="trace")
    audit.attach(url, durability=durability, batch_size=batch_size, interval=0.01)
    guard = get_guard()
    for n in range(count):
        guard.dispatch(
            pg.Violation(
                "customer_data.content.email",
                "advertising",
                "no-advertising",
                "argument",
                f"{name}.{n}",
                "contoso",
                "trace",
                time.time(),
            )
        )
        print(f"ack {n}", flush=True)
        if pause:
            time.sleep(pause)
    sink = audit.attached()
    assert sink is not None
    sink.flush()
    print("done", flush=True)


if __name__ == "__main__":
    main()
