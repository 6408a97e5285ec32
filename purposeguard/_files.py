"""Reading a file someone else may have put in place: only a regular file,
never a wait, never without a bound.

A FIFO named where a file is expected blocks the reader until something
writes to it (forever, for a command or an application's writer thread); a
symlink to ``/dev/zero`` never ends. Each file is therefore opened without
blocking, checked to be a regular file before a byte is read, and read at
most one byte past its limit, whatever size it claims.
"""

from __future__ import annotations

import io
import os
import stat
from collections.abc import Iterable

__all__ = ["NotRegularFile", "TooLarge", "not_regular", "open_regular", "read_regular"]


class NotRegularFile(OSError):
    """The path names a FIFO, a device, a socket or a directory, not a file."""


class TooLarge(OSError):
    """The file holds more bytes than its reader accepts."""


def _nonblocking(path: str, flags: int) -> int:
    return os.open(path, flags | getattr(os, "O_NONBLOCK", 0))


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def open_regular(path: str | os.PathLike[str]) -> io.FileIO:
    """``path`` opened for binary reading, once it is known to be a regular
    file (symlinks followed). Raises :class:`NotRegularFile` otherwise, and
    ``OSError`` as ``open`` does."""
    try:
        file = io.FileIO(path, "rb", opener=_nonblocking)
    except IsADirectoryError:
        # Refused by open() itself, before it could be looked at.
        raise NotRegularFile(0, "a directory, not a regular file", os.fspath(path)) from None
    try:
        mode = os.fstat(file.fileno()).st_mode
        if not stat.S_ISREG(mode):
            kind = _kind(mode)
            text = kind if kind.startswith("not") else f"{kind}, not a regular file"
            raise NotRegularFile(0, text, os.fspath(path))
    except BaseException:
        file.close()
        raise
    return file


def read_regular(path: str | os.PathLike[str], limit: int) -> bytes:
    """The bytes of the regular file ``path``, at most ``limit`` of them:
    :class:`TooLarge` past that, :class:`NotRegularFile` for anything but a
    regular file."""
    with open_regular(path) as file:
        # Raw reads may come back short (network and FUSE file systems):
        # read until the end, or one byte past the limit.
        chunks: list[bytes] = []
        size = 0
        while size <= limit:
            chunk = file.read(limit + 1 - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    if size > limit:
        raise TooLarge(0, f"larger than {limit:,} bytes", os.fspath(path))
    return b"".join(chunks)


def not_regular(paths: Iterable[str]) -> tuple[str, str] | None:
    """The first of ``paths`` that exists but is not a regular file, and what
    it is; None when each is a regular file or missing. For files another
    library opens by name (SQLite), checked just before it does."""
    for path in paths:
        try:
            mode = os.stat(path).st_mode
        except OSError:
            continue
        if not stat.S_ISREG(mode):
            return path, _kind(mode)
    return None


def write_replacing(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` beside ``path`` and rename it into place: a failure
    (a full disk) leaves the previous file as it was, never half of a new one."""
    import tempfile

    target = os.fspath(path)
    descriptor, part = tempfile.mkstemp(
        dir=os.path.dirname(target) or ".", prefix=f".{os.path.basename(target)}.", suffix=".part"
    )
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as file:
            file.write(text)
        os.chmod(part, 0o644)  # mkstemp's 0600 would keep the file from its readers
        os.replace(part, target)
    except BaseException:
        try:
            os.unlink(part)
        except OSError:
            pass
        raise
