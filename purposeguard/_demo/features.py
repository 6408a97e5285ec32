"""What the mail service does with its tenants' data, each use declaring its purpose.

The promise these follow (the ``trust-center`` pack): content runs, secures and
troubleshoots the service; usage figures derived by a policy transform may
reach notices to administrators, content may not; nothing reaches
advertising, direct marketing or a voluntary disclosure; product
improvement only where the tenant consented.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Annotated, Any

import purposeguard as pg

from .store import Document, Message, User

SPAM_WORDS = ("lottery", "winner", "free money", "click here", "wire transfer")


# -- allowed --------------------------------------------------------------------------


@pg.purpose("service.security")
def spam_score(
    subject: Annotated[str, pg.Category("customer_data.content.email")],
    body: Annotated[str, pg.Category("customer_data.content.email")],
) -> float:
    """Security over content: how much a mail looks like spam (0..1)."""
    text = (subject + " " + body).lower()
    hits = sum(1 for word in SPAM_WORDS if word in text)
    shouting = len(re.findall(r"!{2,}", text))
    return min(1.0, 0.3 * hits + 0.2 * shouting)


@pg.purpose("service.operations")
def diagnose(mailbox: str, messages: Sequence[Message]) -> dict[str, Any]:
    """Troubleshooting a mailbox: sizes and verdicts, read from the content itself."""
    sizes = [len(m.body.encode("utf-8")) for m in messages]
    return {
        "mailbox": mailbox,
        "messages": len(messages),
        "spam": sum(1 for m in messages if m.spam),
        "largest_bytes": max(sizes, default=0),
        "empty_bodies": sum(1 for m in messages if not m.body.strip()),
    }


@pg.transform("end-user-usage")
def storage_used(bodies: list[str]) -> int:
    """Bytes one user's mailbox takes: a per-user usage figure, no longer content."""
    return sum(len(body.encode("utf-8")) for body in bodies)


@pg.transform("usage-aggregate")
def usage_statistics(messages: list[str], documents: list[str], users: int) -> dict[str, float]:
    """Tenant-wide usage data points: counts and sizes, nothing that identifies a user or a text."""
    message_bytes = sum(len(b.encode("utf-8")) for b in messages)
    return {
        "users": users,
        "messages": len(messages),
        "documents": len(documents),
        "message_bytes": message_bytes,
        "document_bytes": sum(len(b.encode("utf-8")) for b in documents),
        "average_messages_per_user": round(len(messages) / users, 2) if users else 0.0,
    }


@pg.purpose("service.communications")
def storage_notice(user: User, used: Annotated[Any, pg.Category("usage_data.end_user")]) -> str:
    """The notice to a tenant's administrators that a user is close to the storage limit."""
    percent = 100 * int(used) / user.quota if user.quota else 100.0
    # Built by concatenation, which keeps labels (an f-string adding text
    # would drop them): the notice carries the address's and the figure's.
    return (
        user.address
        + " has used "
        + f"{used}"
        + f" bytes, {percent:.0f}% of the mailbox limit; consider raising the limit or archiving old mail."
    )


@pg.purpose("service.communications")
def storage_notice_quoting(
    user: User, used: Annotated[Any, pg.Category("usage_data.end_user")], latest: Message
) -> str:
    """The same notice quoting the user's latest mail: content in a service communication."""
    return storage_notice(user, used) + " Latest message: " + latest.subject


@pg.purpose("service.communications")
def to_administrators(notice: str) -> str:
    """What leaves for the administrators' inboxes."""
    return notice


@pg.purpose("advertising")
def house_ad() -> str:
    """An ad for the service's own premium plan, the same in every mailbox:
    advertising that reads no customer data, which the promise does not forbid."""
    return "Upgrade to Premium: 100 GB mailboxes and priority support"


# -- denied by the promise ---------------------------------------------------------------


@pg.purpose("marketing.direct")
def newsletter_recipients(addresses: list[Annotated[str, pg.Category("customer_data")]]) -> list[str]:
    """Direct marketing to the tenant's end users: never with customer data."""
    return [address.strip().lower() for address in addresses]


@pg.purpose("improvement")
def product_analytics(
    bodies: list[Annotated[str, pg.Category("customer_data.content.email")]],
) -> dict[str, float]:
    """Which features to build next, learnt from how people write mail:
    improvement of the service, only where the tenant consented."""
    words = [len(b.split()) for b in bodies]
    return {
        "messages": len(words),
        "average_words": round(sum(words) / len(words), 1) if words else 0.0,
        "with_questions": sum(1 for b in bodies if "?" in b),
    }


@pg.purpose("disclosure.voluntary")
def hand_over(record: Annotated[dict[str, Any], pg.Category("customer_data")]) -> dict[str, Any]:
    """Giving a requester data without a legal obligation: never allowed."""
    return record


def mailbox_record(owner: User, messages: list[Message], documents: list[Document]) -> dict[str, Any]:
    """Everything the service holds about one mailbox (what a law-enforcement request names fields of)."""
    return {
        "owner": owner.address,
        "name": owner.name,
        "message_count": len(messages),
        "messages": [m.body for m in messages],
        "documents": [d.body for d in documents if d.owner == owner.address],
    }
