"""JSON Lines export, plus the pieces every file exporter shares.

``to_dict`` and ``dumps`` turn any item into JSON; ``BufferedFile`` collects
serialized output in memory and writes it in ~64 KiB batches on a worker
thread, so no exporter ever blocks the event loop on disk or pipe I/O.
``BufferedFile.flush(durable=True)`` also fsyncs, for crash-safe checkpoints.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import stat
import sys
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import orjson
from itemadapter import ItemAdapter, is_item

from crawler.errors import ConfigError
from crawler.loglines import get_logger

__all__ = [
    "FLUSH_BYTES",
    "BufferedFile",
    "JsonLinesExporter",
    "dumps",
    "to_dict",
    "whole_lines",
]

logger = get_logger("crawler.pipelines.files")

FLUSH_BYTES = 64 * 1024
"""Buffered output size that triggers a write: big enough to amortise a thread hop."""

_OPTIONS = orjson.OPT_NON_STR_KEYS
_SORTED_OPTIONS = orjson.OPT_NON_STR_KEYS | orjson.OPT_SORT_KEYS


def to_dict(item: Any) -> dict[Any, Any]:
    """The item (dict, dataclass, attrs, pydantic) as a plain dict."""
    return ItemAdapter(item).asdict()


def _default(value: Any) -> Any:
    if isinstance(value, (set, frozenset)):
        # Sorted when possible so equal sets always serialize (and hash) the same.
        try:
            return sorted(value)
        except TypeError:
            return list(value)
    if is_item(value):
        return ItemAdapter(value).asdict()
    return str(value)


def dumps(value: Any, *, sort_keys: bool = False) -> bytes:
    """``value`` as compact UTF-8 JSON; unknown types (Decimal, ...) become strings, sets lists."""
    return orjson.dumps(value, default=_default, option=_SORTED_OPTIONS if sort_keys else _OPTIONS)


_SCAN_BYTES = 64 * 1024

CompletePrefix = Callable[[IO[bytes], int], int]
"""``(readable file, its size) -> length of its prefix that holds only whole records``."""


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


def _open_file(
    path: Path, overwrite: bool, complete_prefix: CompletePrefix
) -> tuple[IO[bytes], bool, int]:
    """Open ``path``; return the file, whether it is a regular file, and the bytes dropped.

    When appending to a regular file whose end is not a whole record (a crash
    mid-write), the partial record is truncated first so the file stays valid.
    """
    # Creating the parent lets `-o out/items.jsonl` work without a separate mkdir.
    path.parent.mkdir(parents=True, exist_ok=True)
    created = not path.exists()
    file = open(path, "wb" if overwrite else "ab")  # closed by BufferedFile.close()
    try:
        info = os.fstat(file.fileno())
        regular = stat.S_ISREG(info.st_mode)
        dropped = 0
        if regular and not overwrite and info.st_size > 0:
            with open(path, "rb") as reader:
                keep = complete_prefix(reader, info.st_size)
            if keep < info.st_size:
                file.truncate(keep)
                dropped = info.st_size - keep
        if regular and created:
            _fsync_directory(path.parent)
    except BaseException:
        file.close()
        raise
    return file, regular, dropped


class BufferedFile:
    """An output file, or stdout for ``"-"``, written in ordered batches off the event loop.

    ``write_nowait`` only appends to memory and says when a batch is full;
    ``flush`` hands the batch to a worker thread. Each batch is written by a
    task that first waits for the previous one, so batches land in order even
    when the caller that triggered a flush is cancelled mid-write.
    ``flush(durable=True)`` also fsyncs a regular file (not stdout, pipes, ...).

    ``complete_prefix`` finds where the last whole record of an existing file
    ends (default: its last newline); opening to append drops anything after it.
    """

    def __init__(
        self, path: str | os.PathLike[str], complete_prefix: CompletePrefix = whole_lines
    ) -> None:
        self.path = path
        self._complete_prefix = complete_prefix
        self._file: IO[bytes] | None = None
        self._owns_file = True
        self._fsync = False
        self._buffer: list[bytes] = []
        self._size = 0
        self._writing: asyncio.Task[None] | None = None
        # Batches handed to a writer task, and how many of them the last fsync covered.
        self._written = 0
        self._synced = 0

    @property
    def is_stdout(self) -> bool:
        """True when the output is standard output (path ``"-"``)."""
        return os.fspath(self.path) == "-"

    async def open(self, *, overwrite: bool, spider: Any = None) -> None:
        """Open the file (append unless ``overwrite``) on a worker thread.

        Appending to a file that ends in a partial record (a crash mid-write)
        first truncates that record, with a warning naming the file and the
        bytes dropped.
        """
        self._buffer = []
        self._size = 0
        self._writing = None
        self._written = self._synced = 0
        if self.is_stdout:
            # Looked up now, not at import, so redirected/captured stdout is honoured.
            self._file = sys.stdout.buffer
            self._owns_file = False
            self._fsync = False
            return
        try:
            self._file, self._fsync, dropped = await asyncio.to_thread(
                _open_file, Path(self.path), overwrite, self._complete_prefix
            )
        except OSError as exc:
            raise ConfigError(
                f"cannot open output file {os.fspath(self.path)!r}: {exc.strerror or exc}"
            ) from None
        self._owns_file = True
        if dropped:
            logger.warning(
                "[%s] %s ended in an incomplete record (a crash mid-write?):"
                " dropped its last %d bytes before appending",
                getattr(spider, "name", ""),
                os.fspath(self.path),
                dropped,
            )

    def write_nowait(self, data: bytes) -> bool:
        """Buffer ``data``; True when the buffer is full and the caller should ``flush()``."""
        self._buffer.append(data)
        self._size += len(data)
        return self._size >= FLUSH_BYTES

    async def flush(self, *, durable: bool = False) -> None:
        """Write everything buffered so far and wait until it is written.

        ``durable``: also fsync, so what was written survives a crash (or power
        loss); skipped when nothing was written since the last fsync.
        """
        chunk = b""
        if self._buffer:
            chunk = b"".join(self._buffer)
            self._buffer = []
            self._size = 0
            self._written += 1
        sync = durable and self._fsync and self._synced != self._written
        if chunk or sync:
            self._writing = asyncio.create_task(
                self._write_after(self._writing, chunk, self._written if sync else None)
            )
        if self._writing is not None:
            # Shielded: cancelling the caller must not cancel a write half-way.
            await asyncio.shield(self._writing)

    async def _write_after(
        self, previous: asyncio.Task[None] | None, chunk: bytes, sync_upto: int | None
    ) -> None:
        if previous is not None:
            await previous
        await asyncio.to_thread(self._write_chunk, chunk, sync_upto is not None)
        if sync_upto is not None:
            # Set only after the fsync succeeded; a failed one is retried by the next flush.
            self._synced = max(self._synced, sync_upto)

    def _write_chunk(self, chunk: bytes, sync: bool) -> None:
        file = self._file
        if file is None:
            raise RuntimeError(f"output {os.fspath(self.path)!r} is not open")
        if chunk:
            file.write(chunk)
            # Flushing at batch boundaries lets `tail -f` and stdout readers see whole lines.
            file.flush()
        if sync:
            os.fsync(file.fileno())

    async def close(self) -> None:
        """Write what is left, fsync, and close the file (stdout is flushed, not closed)."""
        try:
            await self.flush(durable=True)
        finally:
            self._writing = None
            file, self._file = self._file, None
            if file is not None and self._owns_file:
                await asyncio.to_thread(file.close)


class JsonLinesExporter:
    """Writes one JSON object per line to ``path`` (``.jsonl``/``.jl``), or stdout for ``"-"``.

    Appends to an existing file unless ``overwrite`` is true; a partial last
    line left by a crash is truncated first (with a warning). ``flush(spider)``
    writes and fsyncs every item processed so far.

    Resuming a crawl gives *at least once* delivery: each item is in the file
    at least once, but items of requests in flight at the crash (processed,
    not yet checkpointed) are written again and may appear twice. De-duplicate
    downstream, or use a SQLite output for exactly once.
    """

    def __init__(self, path: str | os.PathLike[str], overwrite: bool = False) -> None:
        self.path = path
        self.overwrite = overwrite
        self._out = BufferedFile(path)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {os.fspath(self.path)!r}>"

    async def open(self, spider: Any) -> None:
        """Open the output file."""
        await self._out.open(overwrite=self.overwrite, spider=spider)

    async def process_item(self, item: Any, spider: Any) -> Any:
        """Buffer the item as one line; write a batch when the buffer is full."""
        if self._out.write_nowait(dumps(to_dict(item)) + b"\n"):
            await self._out.flush()
        return item

    async def flush(self, spider: Any) -> None:
        """Make every item processed so far durable: write the buffer and fsync the file."""
        await self._out.flush(durable=True)

    async def close(self, spider: Any) -> None:
        """Write the remaining lines and close the file."""
        await self._out.close()
