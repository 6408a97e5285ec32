"""A replica that watches one tenant's consent: run as a process by the tests.

    python consent_replica.py URL TENANT SECONDS

Prints ``ready`` once its store is open, then ``state True|False WALLTIME``
each time its decision for (TENANT, improvement, customer data) changes. It
asks every millisecond, as a busy service would, and never touches the
database on that path (the store's view is pushed to it).
"""

from __future__ import annotations

import sys
import time

from purposeguard.consent import ConsentStore


def main() -> None:
    url, tenant, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
    store = ConsentStore(url)
    print("ready", flush=True)
    last = None
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        state = store.has_consent(tenant, "improvement", "customer_data.content.email")
        if state != last:
            print(f"state {state} {time.time():.6f}", flush=True)
            last = state
        time.sleep(0.001)
    store.close()


if __name__ == "__main__":
    main()
