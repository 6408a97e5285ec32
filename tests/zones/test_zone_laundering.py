"""The laundering suite: ways to derive data from a labelled content value.

Each derivation of a mail body is handed to advertising code inside a zone.
Some derivations keep the label (the value itself is caught, ``via="argument"``);
the others build a new, unlabelled object in C, and only the zone catches them
(``via="context"``). Every one must be caught. The table in
``docs/laundering.md`` is generated from ``CASES`` and checked against it::

    .venv/bin/python tests/zones/test_zone_laundering.py --write
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import contextvars
import csv
import hashlib
import html
import io
import json
import pickle
import queue
import re
import sqlite3
import sys
import textwrap
import threading
import urllib.parse
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import purposeguard as pg

EMAIL = "customer_data.content.email"
BODY = "Quarterly numbers attached; call me before the board meeting about the merger"
LABEL, ZONE = "label", "zone"  # channel: the value's own labels, or only the zone
DOC = Path(__file__).resolve().parents[2] / "docs" / "laundering.md"
BEGIN = "<!-- laundering table: begin -->"
END = "<!-- laundering table: end -->"


# -- derivations that need more than an expression -------------------------------------


def _in_plain_thread(body: str) -> Any:
    out: list[str] = []
    thread = threading.Thread(target=lambda: out.append(f"summary: {body}"))
    thread.start()
    thread.join()
    return out[0]


def _in_wrapped_pool(body: str) -> Any:
    with pg.wrap_executor(concurrent.futures.ThreadPoolExecutor(1)) as pool:
        return pool.submit(lambda: " ".join(w for w in body.split()[:3])).result()


def _in_asyncio_task(body: str) -> Any:
    async def summarise() -> str:
        await asyncio.sleep(0)
        return f"{len(body.split())} words: {body[:10]!s}..."

    async def main() -> str:
        return await asyncio.create_task(summarise())

    return asyncio.run(main())


def _in_to_thread(body: str) -> Any:
    async def main() -> str:
        return await asyncio.to_thread(lambda: "[%s]" % (body.lower(),))

    return asyncio.run(main())


def _through_queue(body: str) -> Any:
    channel: queue.Queue[str] = queue.Queue()
    context = contextvars.copy_context()
    producer = threading.Thread(target=context.run, args=(channel.put, body.title()))
    producer.start()
    producer.join()
    return channel.get(timeout=5)


def _through_queue_as_text(body: str) -> Any:
    channel: queue.Queue[str] = queue.Queue()
    producer = threading.Thread(target=lambda: channel.put(json.dumps({"text": body})))
    producer.start()
    producer.join()
    return channel.get(timeout=5)


def _sqlite_round_trip(body: str) -> Any:
    with sqlite3.connect(":memory:") as connection:
        connection.execute("create table mail (body text)")
        connection.execute("insert into mail values (?)", (body,))
        (stored,) = connection.execute("select body from mail").fetchone()
    connection.close()
    return stored


def _csv_row(body: str) -> Any:
    out = io.StringIO()
    csv.writer(out).writerow(["u-1", body])
    return out.getvalue()


@dataclass
class _Profile:
    user: str
    interests: str


def _char_by_char(body: str) -> Any:
    return "".join(ch for ch in body)


CASES: list[tuple[str, str, Callable[[str], Any], str]] = [
    # (id, derivation as written in code, derive, channel that catches it)
    ("fstring-with-text", 'f"re: {body}"', lambda b: f"re: {b}", ZONE),
    ("fstring-alone", 'f"{body}"', lambda b: f"{b}", LABEL),
    ("format-plain-template", '"{}".format(body)', lambda b: "{}".format(b), LABEL),
    ("format-template-with-text", '"to: {}".format(body)', lambda b: "to: {}".format(b), ZONE),
    ("format-labelled-template", "body.format()", lambda b: b.format(), LABEL),
    ("percent-single", '"%s" % body', lambda b: "%s" % b, LABEL),
    ("percent-tuple-alone", '"%s" % (body,)', lambda b: "%s" % (b,), LABEL),
    ("percent-tuple", '"%s!" % (body,)', lambda b: "%s!" % (b,), ZONE),
    ("str", "str(body)", lambda b: str(b), LABEL),
    ("repr", "repr(body)", lambda b: repr(b), LABEL),
    ("join-plain-separator", '" ".join([body, "x"])', lambda b: " ".join([b, "x"]), ZONE),
    ("join-labelled-separator", 'body.join(["a", "b"])', lambda b: b.join(["a", "b"]), LABEL),
    ("join-characters", '"".join(ch for ch in body)', _char_by_char, ZONE),
    ("concat-right", 'body + " (fwd)"', lambda b: b + " (fwd)", LABEL),
    ("concat-left", '"fwd: " + body', lambda b: "fwd: " + b, LABEL),
    ("slice", "body[10:40]", lambda b: b[10:40], LABEL),
    ("index", "body[0]", lambda b: b[0], LABEL),
    (
        "upper-strip-replace",
        'body.upper().strip().replace("A", "4")',
        lambda b: b.upper().strip().replace("A", "4"),
        LABEL,
    ),
    ("split-words", "body.split()", lambda b: b.split(), LABEL),
    ("encode", 'body.encode("utf-8")', lambda b: b.encode("utf-8"), LABEL),
    ("encode-decode", "body.encode().decode()", lambda b: b.encode().decode(), LABEL),
    ("json-dumps", "json.dumps(body)", lambda b: json.dumps(b), ZONE),
    ("json-round-trip", "json.loads(json.dumps(body))", lambda b: json.loads(json.dumps(b)), ZONE),
    ("pickle-round-trip", "pickle.loads(pickle.dumps(body))", lambda b: pickle.loads(pickle.dumps(b)), LABEL),
    ("base64", "base64.b64encode(body.encode())", lambda b: base64.b64encode(b.encode()), ZONE),
    ("zlib", "zlib.compress(body.encode())", lambda b: zlib.compress(b.encode()), ZONE),
    (
        "sha256",
        "hashlib.sha256(body.encode()).hexdigest()",
        lambda b: hashlib.sha256(b.encode()).hexdigest(),
        ZONE,
    ),
    ("hash", "hash(body)", lambda b: hash(b), ZONE),
    (
        "regex-group",
        're.search(r"(\\w+) numbers", body).group(1)',
        lambda b: re.search(r"(\w+) numbers", b).group(1),  # type: ignore[union-attr]
        ZONE,
    ),
    ("regex-findall", 're.findall(r"\\w+", body)', lambda b: re.findall(r"\w+", b), ZONE),
    ("regex-sub", 're.sub("board", "team", body)', lambda b: re.sub("board", "team", b), ZONE),
    ("html-escape", "html.escape(body)", lambda b: html.escape(b), LABEL),
    ("url-quote", "urllib.parse.quote(body)", lambda b: urllib.parse.quote(b), ZONE),
    ("textwrap-shorten", "textwrap.shorten(body, 30)", lambda b: textwrap.shorten(b, 30), ZONE),
    ("stringio", "io.StringIO(body).read()", lambda b: io.StringIO(b).read(), ZONE),
    ("csv-row", "csv.writer(...).writerow([user, body])", _csv_row, ZONE),
    ("sqlite-round-trip", "insert body, select it back (sqlite3)", _sqlite_round_trip, ZONE),
    (
        "list-comprehension",
        "[w.lower() for w in body.split()]",
        lambda b: [w.lower() for w in b.split()],
        LABEL,
    ),
    (
        "dict-comprehension",
        "{w: len(w) for w in body.split()}",
        lambda b: {w: len(w) for w in b.split()},
        LABEL,
    ),
    ("nested-list", "[[body]] (two levels deep)", lambda b: [[b]], LABEL),
    ("dataclass-field", "Profile(user, interests=body[:20])", lambda b: _Profile("u-1", b[:20]), LABEL),
    ("length", "len(body)", lambda b: len(b), ZONE),
    ("word-count", 'float(body.count(" ") + 1)', lambda b: float(b.count(" ") + 1), ZONE),
    ("bytes-as-ints", "list(body.encode())", lambda b: list(b.encode()), ZONE),
    ("code-point", "ord(body[0])", lambda b: ord(b[0]), ZONE),
    ("bytearray", "bytearray(body.encode())", lambda b: bytearray(b.encode()), ZONE),
    ("plain-thread", 'f"summary: {body}" in a threading.Thread', _in_plain_thread, ZONE),
    ("wrapped-thread-pool", '" ".join(words) in a wrap_executor pool', _in_wrapped_pool, ZONE),
    ("asyncio-task", "an f-string built in an asyncio task", _in_asyncio_task, ZONE),
    ("asyncio-to-thread", '"[%s]" % (body.lower(),) in asyncio.to_thread', _in_to_thread, ZONE),
    ("queue-labelled", "body.title() passed through a queue.Queue", _through_queue, LABEL),
    ("queue-json", "json.dumps({...}) passed through a queue.Queue", _through_queue_as_text, ZONE),
]


@pg.purpose("advertising")
def build_ad_profile(signal: object) -> object:
    return signal


def _caught_by(derive: Callable[[str], Any]) -> tuple[set[str], bool, frozenset[str]]:
    """Run one derivation in a zone under the default trust-center modes."""
    ran = []

    @pg.purpose("advertising")
    def target(signal: object) -> None:
        ran.append(True)

    with pg.testing.capture() as violations:
        with pg.zone(tenant="contoso"):
            body = pg.label(BODY, EMAIL)
            derived = derive(body)
            try:
                target(derived)
            except pg.PurposeViolation:
                pass
    assert all(v.category == EMAIL and v.purpose == "advertising" for v in violations)
    return {v.via for v in violations}, bool(ran), pg.labels_of(derived)


def test_the_suite_is_large_enough_and_ids_are_unique() -> None:
    assert len(CASES) >= 25
    assert len({case[0] for case in CASES}) == len(CASES)
    assert {case[3] for case in CASES} == {LABEL, ZONE}


@pytest.mark.parametrize(("derivation", "code", "derive", "channel"), CASES, ids=[c[0] for c in CASES])
def test_every_derivation_is_caught_by_its_expected_channel(
    derivation: str, code: str, derive: Callable[[str], Any], channel: str
) -> None:
    vias, ran, labels = _caught_by(derive)
    if channel == LABEL:
        # The derived value still carries the label: enforce mode (the
        # default for argument flows) stops the call.
        assert labels == {EMAIL}
        assert vias == {"argument"}
        assert not ran
    else:
        # The label is gone; only the zone knows, and the pack's rule
        # no-advertising (context_mode = "enforce") refuses the flow.
        assert labels == frozenset()
        assert vias == {"context"}
        assert not ran


@pytest.mark.parametrize(("derivation", "code", "derive", "channel"), CASES, ids=[c[0] for c in CASES])
def test_every_derivation_is_blocked_when_context_mode_is_enforce(
    derivation: str, code: str, derive: Callable[[str], Any], channel: str
) -> None:
    pg.configure("trust-center", context_mode="enforce")
    with pg.zone():
        derived = derive(pg.label(BODY, EMAIL))
        with pytest.raises(pg.PurposeViolation) as raised:
            build_ad_profile(derived)
    assert {v.via for v in raised.value.violations} == {"argument" if channel == LABEL else "context"}
    assert BODY not in str(raised.value)


def test_without_a_zone_only_the_labelled_derivations_are_caught() -> None:
    """Why zones exist: the same derivations outside one."""
    uncaught = []
    for derivation, _, derive, _channel in CASES:
        with pg.testing.capture() as violations:
            try:
                build_ad_profile(derive(pg.label(BODY, EMAIL)))
            except pg.PurposeViolation:
                pass
        if not violations:
            uncaught.append(derivation)
    assert uncaught == [c[0] for c in CASES if c[3] == ZONE]


# -- the table in the docs ----------------------------------------------------------------


def render_table() -> str:
    rows = ["| # | derivation | code | caught by |", "|---|---|---|---|"]
    for number, (derivation, code, _, channel) in enumerate(CASES, 1):
        caught = (
            'the value\'s own labels (`via="argument"`)'
            if channel == LABEL
            else 'the zone only (`via="context"`)'
        )
        code_cell = code.replace("|", "\\|")
        rows.append(f"| {number} | {derivation} | `{code_cell}` | {caught} |")
    labelled = sum(1 for c in CASES if c[3] == LABEL)
    rows.append("")
    rows.append(
        f"{len(CASES)} derivations: {labelled} keep the label, "
        f"{len(CASES) - labelled} are caught by the zone alone, none escapes."
    )
    return f"{BEGIN}\n{rows[0]}\n" + "\n".join(rows[1:]) + f"\n{END}"


def _table_in_doc(text: str) -> str:
    assert BEGIN in text and END in text, f"{DOC} has no generated laundering table"
    return text[text.index(BEGIN) : text.index(END) + len(END)]


def test_the_docs_table_matches_the_suite() -> None:
    """Regenerate with: .venv/bin/python tests/zones/test_zone_laundering.py --write"""
    assert _table_in_doc(DOC.read_text(encoding="utf-8")) == render_table()


def _write() -> None:
    text = DOC.read_text(encoding="utf-8")
    table = _table_in_doc(text)
    DOC.write_text(text.replace(table, render_table()), encoding="utf-8")


if __name__ == "__main__":
    if sys.argv[1:] == ["--write"]:
        _write()
    else:
        print(render_table())
