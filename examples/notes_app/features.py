"""What the app does with notes, each function under the purpose it serves.

``preview`` and ``search`` run the service; a house ad that reads no one's
data is advertising the promise allows; the other three are what the
promise forbids (ads chosen from notes, direct marketing) or allows only
with the tenant's consent (product analytics, an improvement of the
service).
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field

import purposeguard as pg

ADS = {
    "travel": "Cheap flights to anywhere",
    "money": "A credit card with 0% for 12 months",
    "health": "Vitamins, delivered",
}


@dataclass
class Outbox:
    """Where the newsletter would be handed to a mail provider."""

    sent: list[str] = field(default_factory=list)


OUTBOX = Outbox()
USAGE: Counter[str] = Counter()


@pg.purpose("service.operations")
def preview(body: str, size: int = 60) -> str:
    return body[:size]


@pg.purpose("service.operations")
def matches(body: str, words: list[str]) -> bool:
    text = body.lower()
    return all(word.lower() in text for word in words)


@pg.purpose("advertising")
def pick_ad(body: str) -> str:
    for keyword, ad in ADS.items():
        if keyword in body.lower():
            return ad
    return "Upgrade to Notes Pro"


@pg.purpose("advertising")
def house_ad() -> str:
    """An ad for the app itself, the same for everyone: it reads no one's data."""
    return "Notes Pro: offline notes and unlimited attachments"


@pg.purpose("marketing.direct")
def send_newsletter(address: str) -> None:
    OUTBOX.sent.append(address)


@pg.purpose("improvement")
def count_words(body: str) -> int:
    words = re.findall(r"[a-z']+", body.lower())
    USAGE.update(words)
    return len(words)
