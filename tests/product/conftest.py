"""A small source tree for the scan, report and Fides tests (written, never imported)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

# Appears only as a labelled value in the scanned code: it must never reach
# a scan result, a report or a manifest.
VALUE_MARKER = "PG-VALUE-MARKER-51d0e2"

SAMPLE_TREE = {
    "app/__init__.py": "",
    "app/models.py": """
        from dataclasses import dataclass
        from typing import Annotated

        import purposeguard as pg


        @dataclass
        class Message:
            sender: str
            body: Annotated[str, pg.Category("customer_data.content.email")]
    """,
    "app/handlers.py": f"""
        import purposeguard as pg
        from purposeguard import label, produces, transform
        from purposeguard import purpose as declare

        from .models import Message

        PURPOSE = "service.operations"


        @produces("customer_data.content.email")
        def read_body(message_id: str) -> str:
            return "body"


        @declare("service.security")
        def scan_for_spam(message: Message) -> bool:
            return False


        @pg.purpose("advertising")
        def recommend_ads(message: "Message") -> list:
            return []


        class Newsletter:
            @pg.purpose("marketing.direct")
            def send(self, address):
                return pg.label(address, "customer_data")


        @transform("usage-aggregate")
        def mailbox_size(messages):
            return sum(len(m) for m in messages)


        def troubleshoot(ticket):
            with pg.purpose("service.operations"):
                return label("{VALUE_MARKER}", "customer_data.content.document")


        async def notify_admins(stats):
            async with pg.purpose("service.communications"):
                return pg.label(stats, "usage_data.end_user")


        @pg.purpose(PURPOSE)
        def dynamic(x):
            return x
    """,
    "app/broken.py": """
        def oops(:
            pass
    """,
    "app/not_ours.py": """
        from somewhere_else import purpose

        @purpose("advertising")
        def unrelated():
            pass
    """,
    "app/side_effect.py": """
        import purposeguard as pg
        open("IMPORTED-SENTINEL", "w").write("the scan imported me")

        @pg.purpose("improvement")
        def analytics(x):
            return x
    """,
    ".venv/lib/ignored.py": """
        import purposeguard as pg

        @pg.purpose("advertising")
        def vendored():
            pass
    """,
}


def write_tree(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
    return root


@pytest.fixture
def sample_tree(tmp_path: Path) -> Path:
    return write_tree(tmp_path / "mailservice", SAMPLE_TREE)


@pytest.fixture
def value_marker() -> str:
    return VALUE_MARKER
