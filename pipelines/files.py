"""Output files: ordered batch writes off the event loop, durable positions, resume.

``BufferedFile`` collects serialized output in memory and writes it in ~64 KiB
batches on a worker thread, so no exporter ever blocks the event loop on disk
or pipe I/O. ``flush(durable=True)`` also fsyncs, for crash-safe checkpoints,
and records the durable position (byte offset, device and inode, plus the
exporter's own mark) that a resumed crawl cuts the file back to: see
:class:`crawler.pipeline.CheckpointedOutput`.

Failures: a transient one (EINTR, EAGAIN) is retried after cutting the file
back to its last whole batch, so no partial record is left; anything else makes
the file *failed*: that write and every later call raise the same
:class:`~crawler.errors.OutputError`, and nothing more is written.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any, ClassVar

from crawler import ConfigError, OutputError
from crawler.loglines import get_logger

from .faults import DEFAULT_RETRY, WriteRetry, is_transient, output_failure, with_retries
from .positions import CompletePrefix, FileMark, open_at, open_file, stat_or_none, whole_lines

__all__ = ["FLUSH_BYTES", "BufferedFile", "CompletePrefix", "FileMark", "whole_lines"]

logger = get_logger("crawler.pipelines.files")

FLUSH_BYTES = 64 * 1024
"""Buffered output size that triggers a write: big enough to amortise a thread hop."""


class BufferedFile:
    """An output file, or stdout for ``"-"``, written in ordered batches off the event loop.

    ``write_nowait`` only appends to memory and says when a batch is full;
    ``flush`` hands the batch to a worker thread. Each batch is written by a
    task that first waits for the previous one (without inheriting its error),
    so batches land in order even when the caller that triggered a flush is
    cancelled mid-write. ``flush(durable=True)`` also fsyncs a regular file.

    ``complete_prefix`` finds where the last whole record of an existing file
    ends (default: its last newline); appending without a saved position drops
    anything after it. ``resume_at`` (before ``open``) cuts back to a saved
    position instead.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        complete_prefix: CompletePrefix = whole_lines,
        retry: WriteRetry = DEFAULT_RETRY,
    ) -> None:
        self.path = path
        self.name = os.fspath(path)
        self._complete_prefix = complete_prefix
        self._retry = retry
        self._file: IO[bytes] | None = None
        self._owns_file = True
        self._regular = False
        self._buffer: list[bytes] = []
        self._size = 0
        self._writing: asyncio.Task[None] | None = None
        # Batches handed to a writer task, and how many of them the last fsync covered.
        self._written = 0
        self._synced = 0
        self._good = 0  # bytes in the file that are whole batches
        self._dirty = False  # a failed try may have left part of a batch after _good
        self._sent = 0  # bytes of the current batch a pipe (not a regular file) accepted
        self._dev = self._ino = 0
        self._durable: tuple[int, dict[str, Any]] = (0, {})  # offset fsynced, exporter's mark
        self._failed: OutputError | None = None
        self._tracked = False  # resume_at was called: the crawl keeps a state folder
        self._resuming = False
        self._mark: FileMark | None = None

    @property
    def is_stdout(self) -> bool:
        """True when the output is standard output (path ``"-"``)."""
        return self.name == "-"

    @property
    def resuming(self) -> bool:
        """True between ``resume_at(..., resuming=True)`` and ``open``."""
        return self._resuming

    @property
    def resume_mark(self) -> FileMark | None:
        """The saved position ``open`` will cut back to, if any (until ``open``)."""
        return self._mark

    @property
    def offset(self) -> int:
        """Bytes of whole batches in the file (0 for stdout and pipes)."""
        return self._good

    def output_id(self, kind: str) -> str:
        """``kind:/absolute/path`` (``kind:-`` for stdout): the same in every run of a crawl."""
        return f"{kind}:-" if self.is_stdout else f"{kind}:{os.path.abspath(self.name)}"

    def resume_at(self, position: Mapping[str, Any] | None, resuming: bool) -> None:
        """Remember where ``open`` continues; OutputError if ``position`` cannot be resumed.

        No-op for stdout. ``position`` empty or None while resuming: append
        after the last whole record (items after the last checkpoint may then
        appear twice).
        """
        if self.is_stdout:
            return
        self._tracked = True
        self._resuming = resuming
        self._mark = None
        if resuming and position:
            mark = FileMark.parse(position, self.name)
            mark.check(stat_or_none(self.path), self.name)
            self._mark = mark

    def mark_opened(self, mark: dict[str, Any]) -> None:
        """Set the exporter's mark of the position ``open`` left (before anything is written)."""
        self._durable = (self._durable[0], mark)

    def position(self) -> dict[str, Any]:
        """``{"offset", "dev", "ino", **mark}`` of the last durable flush; ``{}`` if not a file."""
        if not self._regular:
            return {}
        offset, mark = self._durable
        return {"offset": offset, "dev": self._dev, "ino": self._ino, **mark}

    async def open(self, *, overwrite: bool, spider: Any = None) -> None:
        """Open the file (append unless ``overwrite``) on a worker thread.

        Resuming never overwrites: at a saved position the file is cut back to
        it; without one, a partial last record is cut (with a warning).
        """
        self._buffer = []
        self._size = self._written = self._synced = self._good = self._sent = 0
        self._writing = None
        self._dirty = False
        self._failed = None
        self._durable = (0, {})
        self._regular = False
        if self.is_stdout:
            # Looked up now, not at import, so redirected/captured stdout is honoured.
            self._file = sys.stdout.buffer
            self._owns_file = False
            return
        mark, resuming = self._mark, self._resuming
        self._mark, self._resuming = None, False  # used once: a reused exporter starts afresh
        path = Path(self.path)
        try:
            if mark is not None:
                opened = await asyncio.to_thread(open_at, path, mark, self.name)
            else:
                appending = not overwrite or resuming
                opened = await asyncio.to_thread(
                    open_file, path, not appending, self._complete_prefix
                )
        except OSError as exc:
            raise ConfigError(
                f"cannot open output file {self.name!r}: {exc.strerror or exc}"
            ) from None
        self._file, self._owns_file, self._regular = opened.file, True, opened.regular
        self._good, self._dev, self._ino = opened.size, opened.dev, opened.ino
        self._durable = (opened.size, {})
        name = getattr(spider, "name", "")
        if mark is not None:
            logger.info(
                "[%s] resuming %s at its last checkpoint (byte %d):"
                " dropped %d bytes written after it",
                name,
                self.name,
                mark.offset,
                opened.dropped,
            )
        elif opened.dropped:
            logger.warning(
                "[%s] %s ended in an incomplete record (a crash mid-write?):"
                " dropped its last %d bytes before appending",
                name,
                self.name,
                opened.dropped,
            )
        if mark is None and resuming and opened.size > 0:
            logger.warning(
                "[%s] resuming without a saved position for %s: appending after its last"
                " whole record; items written since the last checkpoint may appear twice",
                name,
                self.name,
            )

    def failure(self) -> OutputError | None:
        """The error that failed this output for good, if any."""
        return self._failed

    def raise_if_failed(self) -> None:
        """Raise the OutputError that failed this output, if one did."""
        if self._failed is not None:
            raise self._failed

    def write_nowait(self, data: bytes) -> bool:
        """Buffer ``data``; True when the buffer is full and the caller should ``flush()``.

        Raises the output's OutputError once a batch has failed for good.
        """
        if self._failed is not None:
            raise self._failed
        self._buffer.append(data)
        self._size += len(data)
        return self._size >= FLUSH_BYTES

    async def flush(self, *, durable: bool = False, mark: dict[str, Any] | None = None) -> None:
        """Write everything buffered so far and wait until it is written.

        ``durable``: also fsync, so what was written survives a crash (or power
        loss), and move ``position()`` to the end of it, with ``mark`` (the
        exporter's state at this point; None keeps the last one); skipped when
        nothing was written since the last fsync. Raises OutputError if this
        or an earlier batch failed for good.
        """
        await self._flush(durable, mark, advance=True)

    async def _flush(self, durable: bool, mark: dict[str, Any] | None, advance: bool) -> None:
        self.raise_if_failed()
        chunk = b""
        if self._buffer:
            if self._file is None:
                raise RuntimeError(f"output {self.name!r} is not open")
            chunk = b"".join(self._buffer)
            self._buffer = []
            self._size = 0
            self._written += 1
        sync = durable and self._regular and self._synced != self._written
        if chunk or sync:
            self._writing = asyncio.create_task(
                self._write_after(
                    self._writing, chunk, self._written if sync else None, mark, advance
                )
            )
        if self._writing is not None:
            # Shielded: cancelling the caller must not cancel a write half-way.
            await asyncio.shield(self._writing)
        self.raise_if_failed()

    async def _write_after(
        self,
        previous: asyncio.Task[None] | None,
        chunk: bytes,
        sync_upto: int | None,
        mark: dict[str, Any] | None,
        advance: bool,
    ) -> None:
        # Never raises: a failure is kept in self._failed for every caller to raise.
        if previous is not None:
            await asyncio.wait([previous])
        if self._failed is not None:
            return
        sync = sync_upto is not None
        try:
            await with_retries(
                lambda: asyncio.to_thread(self._write_chunk, chunk, sync, mark, advance),
                self._retry,
                output=self.name,
                state=self._tracked,
            )
        except OutputError as exc:
            self._failed = exc
            return
        if sync_upto is not None:
            # Set only after the fsync succeeded.
            self._synced = max(self._synced, sync_upto)

    def _write_chunk(
        self, chunk: bytes, sync: bool, mark: dict[str, Any] | None, advance: bool
    ) -> None:
        """One try at writing ``chunk`` (worker thread); raises what the OS raised."""
        file = self._file
        if file is None:
            raise RuntimeError(f"output {self.name!r} is not open")
        if not self._regular:
            self._write_stream(file, chunk)
            return
        if self._dirty:
            # The last try failed part-way: back to the last whole batch, then the batch again.
            file.truncate(self._good)
            file.seek(self._good)
            self._dirty = False
        self._dirty = True
        try:
            with memoryview(chunk) as view:
                done = 0
                while done < len(view):
                    written = file.write(view[done:])
                    if written is None:
                        raise BlockingIOError(errno.EAGAIN, os.strerror(errno.EAGAIN))
                    done += written
        except OSError as exc:
            if not is_transient(exc):
                # Failed for good: leave whole records only (best effort).
                with contextlib.suppress(OSError):
                    file.truncate(self._good)
                    self._dirty = False
            raise
        self._dirty = False
        self._good += len(chunk)
        if sync:
            os.fsync(file.fileno())
            if advance:
                self._durable = (self._good, self._durable[1] if mark is None else mark)

    def _write_stream(self, file: IO[bytes], chunk: bytes) -> None:
        # stdout, a pipe, a device: no going back, so a retry goes on where the last try stopped.
        with memoryview(chunk) as view:
            while self._sent < len(view):
                try:
                    written = file.write(view[self._sent :])
                except BlockingIOError as exc:
                    self._sent += exc.characters_written
                    raise
                if written is None:
                    raise BlockingIOError(errno.EAGAIN, os.strerror(errno.EAGAIN))
                self._sent += written
        # Flushing at batch boundaries lets `tail -f` and stdout readers see whole lines.
        file.flush()
        self._sent = 0

    async def close(self, trailer: bytes = b"") -> None:
        """Write what is left, fsync, and close the file (stdout is flushed, not closed).

        ``trailer`` (e.g. an array's closing ``]``) is written last and stays
        outside ``position()``: a resume cuts it off and goes on. Raises
        OutputError if a batch failed or the file cannot be closed; the file is
        closed either way.
        """
        error: OutputError | None = None
        try:
            await self.flush(durable=True)
            if trailer:
                self.write_nowait(trailer)
                await self._flush(True, None, advance=False)
        except OutputError as exc:
            error = exc
        finally:
            closing = await self._release()
        error = error or closing
        if error is not None:
            raise error

    async def _release(self) -> OutputError | None:
        writing, self._writing = self._writing, None
        if writing is not None:
            await asyncio.wait([writing])
        file, self._file = self._file, None
        if file is None or not self._owns_file:
            return None
        try:
            await asyncio.to_thread(file.close)
        except OSError as exc:
            self._failed = self._failed or output_failure(
                self.name, exc, action="close", state=self._tracked
            )
            return self._failed
        return None


class FileOutput:
    """What the file exporters share: a :class:`BufferedFile` (``_out``) named ``path``,
    and the ``CheckpointedOutput`` capability on top of it.

    ``durable_position()`` is ``{"offset", "dev", "ino"}`` plus what an exporter
    keeps in the file's mark (CSV: the header and fields; JSON array: the item count).
    """

    kind: ClassVar[str]
    path: str | os.PathLike[str]
    _out: BufferedFile

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {os.fspath(self.path)!r}>"

    def output_id(self) -> str:
        """``<kind>:/absolute/path`` (``<kind>:-`` for stdout)."""
        return self._out.output_id(self.kind)

    def durable_position(self) -> dict[str, Any]:
        """Where the last durable flush left the file (``{}`` for stdout or a pipe)."""
        return self._out.position()

    def resume_at(self, position: dict[str, Any] | None, resuming: bool) -> None:
        """Before ``open``: cut back to ``position`` when resuming (OutputError if impossible)."""
        self._out.resume_at(position, resuming)
