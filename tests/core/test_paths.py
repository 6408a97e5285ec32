"""Labelled text as part of a pathlib path: the path is built (a path carries
no label), and inside a zone the zone learns the text's categories."""

from __future__ import annotations

import pathlib
from pathlib import Path, PurePath, PurePosixPath

import purposeguard as pg

DOCUMENT = "customer_data.content.document"


def test_a_labelled_name_joins_a_path(tmp_path: Path) -> None:
    pg.configure("trust-center")
    name = pg.label("quarterly report.pdf", DOCUMENT)
    joined = tmp_path / name
    assert joined == tmp_path / "quarterly report.pdf"
    assert type(joined.name) is str
    assert PurePosixPath("uploads", name).parts == ("uploads", "quarterly report.pdf")
    assert (tmp_path / "a").with_name(name).name == "quarterly report.pdf"
    assert tmp_path.joinpath("x", name).name == "quarterly report.pdf"
    assert PurePath(pg.label("/srv/files", DOCUMENT)).parts == ("/", "srv", "files")
    joined.write_text("plain")  # a real path on disk
    assert joined.read_text() == "plain"


def test_inside_a_zone_the_zone_learns_what_the_path_was_built_from() -> None:
    pg.configure("trust-center")
    name = pg.label("minutes.txt", DOCUMENT, tenant="contoso")  # made before the zone
    with pg.zone(tenant="contoso") as state:
        assert DOCUMENT not in state.categories
        pathlib.Path("/srv") / name
        assert DOCUMENT in state.categories


def test_plain_paths_are_left_alone() -> None:
    assert Path("/srv", "files") / "a.txt" == Path("/srv/files/a.txt")
