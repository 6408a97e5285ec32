"""``python -m notes_app [--trace] [--port N]``: the notes app on 127.0.0.1 with a SQLite file."""

from __future__ import annotations

import argparse

from . import create_app


def main() -> None:
    parser = argparse.ArgumentParser(prog="notes_app", description=__doc__)
    parser.add_argument("--database", default="sqlite:///notes.db")
    parser.add_argument("--consents", default="notes-consent.db")
    parser.add_argument("--trace", action="store_true", help="record violations instead of refusing")
    parser.add_argument("--port", type=int, default=5000)
    args = parser.parse_args()
    app = create_app(args.database, mode="trace" if args.trace else "enforce", consents=args.consents)
    app.run(host="127.0.0.1", port=args.port)


if __name__ == "__main__":
    main()
