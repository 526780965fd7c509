"""Where an output file's whole records end, and opening it to append at a saved position.

``whole_lines`` (and ``csvfile.whole_records``) find the end of the last
whole record, so appending after a crash mid-write drops the partial one.
``FileMark`` is the position a checkpoint saved (offset, device, inode);
``open_at`` opens the file to append there, cutting what follows, after
checking it is the same file and still that long.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from crawler import OutputError

__all__ = [
    "CompletePrefix",
    "FileMark",
    "Opened",
    "open_at",
    "open_file",
    "stat_or_none",
    "whole_lines",
]

_SCAN_BYTES = 64 * 1024

CompletePrefix = Callable[[IO[bytes], int], int]
"""``(readable file, its size) -> length of its prefix that holds only whole records``."""

_RESTART = "run with --restart to start the crawl over (add -O to replace the file)"


def whole_lines(file: IO[bytes], size: int) -> int:
    """The length of ``file``'s prefix up to and including its last ``\\n``; 0 if none."""
    end = size
    while end > 0:
        start = max(0, end - _SCAN_BYTES)
        file.seek(start)
        newline = file.read(end - start).rfind(b"\n")
        if newline >= 0:
            return start + newline + 1
        end = start
    return 0


def _fsync_directory(path: Path) -> None:
    # A new file's directory entry must be durable too, or a crash can lose the whole file.
    # Best effort: some platforms (Windows) cannot open or fsync a directory.
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@dataclass(frozen=True, slots=True)
class FileMark:
    """Where a file's checkpointed content ends, and which file it is (device, inode)."""

    offset: int
    dev: int
    ino: int

    @classmethod
    def parse(cls, position: Mapping[str, Any], output: str) -> FileMark:
        """The mark in a saved position; OutputError if it is not one."""
        values = [position.get(key) for key in ("offset", "dev", "ino")]
        ints = [value for value in values if type(value) is int and value >= 0]
        if len(ints) != len(values):
            raise OutputError(
                f"cannot resume {output}: the position saved for it is not valid; {_RESTART}",
                output,
            )
        return cls(*ints)

    def check(self, info: os.stat_result | None, output: str) -> None:
        """OutputError unless ``info`` (None: missing) is this file, at least ``offset`` long."""
        if info is None:
            if self.offset > 0:
                raise OutputError(
                    f"cannot resume {output}: the file is missing, but the last checkpoint"
                    f" had written {self.offset} bytes to it; restore it, or {_RESTART}",
                    output,
                )
        elif not stat.S_ISREG(info.st_mode) or (info.st_dev, info.st_ino) != (self.dev, self.ino):
            raise OutputError(
                f"cannot resume {output}: it is not the file the last checkpoint wrote to"
                f" (replaced or moved since); restore it, or {_RESTART}",
                output,
            )
        elif info.st_size < self.offset:
            raise OutputError(
                f"cannot resume {output}: it holds {info.st_size} bytes but the last checkpoint"
                f" had written {self.offset} (cut short since); restore it, or {_RESTART}",
                output,
            )


@dataclass(slots=True)
class Opened:
    """A file opened for writing, and where writing continues."""

    file: IO[bytes]
    regular: bool
    size: int  # where writing continues
    dev: int
    ino: int
    dropped: int  # bytes cut from the end


def open_file(path: Path, overwrite: bool, complete_prefix: CompletePrefix) -> Opened:
    """Open ``path`` (unbuffered); when appending, cut a partial last record (a crash mid-write)."""
    # Creating the parent lets `-o out/items.jsonl` work without a separate mkdir.
    path.parent.mkdir(parents=True, exist_ok=True)
    created = not path.exists()
    file = open(path, "wb" if overwrite else "ab", buffering=0)  # closed by BufferedFile.close()
    try:
        info = os.fstat(file.fileno())
        regular = stat.S_ISREG(info.st_mode)
        size = info.st_size if regular else 0
        if regular and not overwrite and size > 0:
            with open(path, "rb") as reader:
                size = complete_prefix(reader, info.st_size)
            if size < info.st_size:
                file.truncate(size)
        if regular and created:
            _fsync_directory(path.parent)
    except BaseException:
        file.close()
        raise
    return Opened(file, regular, size, info.st_dev, info.st_ino, info.st_size - size)


def open_at(path: Path, mark: FileMark, output: str) -> Opened:
    """Open ``path`` to append at ``mark`` (never overwriting); cut what follows it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    created = not path.exists()
    if created:
        mark.check(None, output)
    file = open(path, "ab", buffering=0)  # closed by BufferedFile.close()
    try:
        info = os.fstat(file.fileno())
        if created:
            _fsync_directory(path.parent)
        else:
            mark.check(info, output)
            if info.st_size > mark.offset:
                file.truncate(mark.offset)
    except BaseException:
        file.close()
        raise
    return Opened(file, True, mark.offset, info.st_dev, info.st_ino, info.st_size - mark.offset)


def stat_or_none(path: str | os.PathLike[str]) -> os.stat_result | None:
    try:
        return os.stat(path)
    except FileNotFoundError:
        return None
