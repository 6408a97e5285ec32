"""Administrator communications: a storage-limit notice is allowed, quoting mail is not.

The data-use promise lets usage data that identifies end users serve service
communications to administrators ("a user is close to the storage limit"),
and never lets content into them. Here the mailbox is content
(``customer_data.content.email``); the policy transform ``end-user-usage``
turns it into a per-user figure (``usage_data.end_user``), and a notice built
from that figure under ``service.communications`` goes out. The same notice
quoting a line of the user's mail is a violation of rule
``no-content-in-service-communications``.

    python examples/admin_notice.py
"""

from __future__ import annotations

from typing import Any

import purposeguard as pg

GIB = 1024**3
QUOTA = 50 * GIB


def sample_mailbox() -> list[str]:
    """A user's mail bodies, labelled as content when they are read."""
    bodies = [
        "Hi Megan, the quarterly numbers are attached. Please keep them internal.",
        "Reminder: the board meeting moved to Thursday 10:00.",
    ]
    return [pg.label(body, "customer_data.content.email", tenant="contoso") for body in bodies]


@pg.transform("end-user-usage")
def storage_used(mailbox: list[str], attachments_bytes: int = 0) -> int:
    """Bytes a user's mailbox takes: a per-user usage figure, no longer content."""
    return sum(len(body.encode("utf-8")) for body in mailbox) + attachments_bytes


@pg.purpose("service.communications")
def storage_notice(user: str, used: Any, quota: int = QUOTA) -> str:
    """The notice to the tenant's administrators, built from the usage figure only."""
    percent = 100 * int(used) / quota
    text = (
        f"{user} has used {percent:.0f}% of the {quota // GIB} GB mailbox limit. "
        "Consider raising the limit or archiving old mail."
    )
    return pg.label(text, *pg.labels_of(used))


@pg.purpose("service.communications")
def storage_notice_quoting_mail(user: str, used: Any, latest_mail: str, quota: int = QUOTA) -> str:
    """The same notice with a line of the user's latest mail: content in a service communication."""
    return storage_notice(user, used, quota) + " Latest message: " + latest_mail.splitlines()[0]


@pg.purpose("service.communications")
def send_to_administrators(tenant: str, notice: str, outbox: list[tuple[str, str]]) -> None:
    """Deliver a notice to the tenant's administrators (here: an outbox list)."""
    outbox.append((tenant, str(notice)))


def main() -> int:
    pg.configure("trust-center")
    outbox: list[tuple[str, str]] = []
    mailbox = sample_mailbox()
    # Attachments make up most of a real mailbox; 48 GB of them puts Megan near the limit.
    used = storage_used(mailbox, attachments_bytes=48 * GIB)

    notice = storage_notice("megan@contoso.example", used)
    send_to_administrators("contoso", notice, outbox)
    print(f"sent to contoso's administrators: {outbox[-1][1]}")

    try:
        quoting = storage_notice_quoting_mail("megan@contoso.example", used, mailbox[-1])
        send_to_administrators("contoso", quoting, outbox)
    except pg.PurposeViolation as violation:
        print(f"refused: {violation}")
    print(f"{len(outbox)} notice(s) sent")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
