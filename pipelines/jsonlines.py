"""JSON Lines export, plus the pieces every file exporter shares.

``to_dict`` and ``dumps`` turn any item into JSON; ``BufferedFile`` collects
serialized output in memory and writes it in ~64 KiB batches on a worker
thread, so no exporter ever blocks the event loop on disk or pipe I/O.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import IO, Any

import orjson
from itemadapter import ItemAdapter, is_item

from crawler.errors import ConfigError

__all__ = ["FLUSH_BYTES", "BufferedFile", "JsonLinesExporter", "dumps", "to_dict"]

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


def _open_file(path: Path, mode: str) -> IO[bytes]:
    # Creating the parent lets `-o out/items.jsonl` work without a separate mkdir.
    path.parent.mkdir(parents=True, exist_ok=True)
    return open(path, mode)  # closed by BufferedFile.close()


class BufferedFile:
    """An output file, or stdout for ``"-"``, written in ordered batches off the event loop.

    ``write_nowait`` only appends to memory and says when a batch is full;
    ``flush`` hands the batch to a worker thread. Each batch is written by a
    task that first waits for the previous one, so batches land in order even
    when the caller that triggered a flush is cancelled mid-write.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = path
        self._file: IO[bytes] | None = None
        self._owns_file = True
        self._buffer: list[bytes] = []
        self._size = 0
        self._writing: asyncio.Task[None] | None = None

    @property
    def is_stdout(self) -> bool:
        """True when the output is standard output (path ``"-"``)."""
        return os.fspath(self.path) == "-"

    async def open(self, *, overwrite: bool) -> None:
        """Open the file (append unless ``overwrite``) on a worker thread."""
        if self.is_stdout:
            # Looked up now, not at import, so redirected/captured stdout is honoured.
            self._file = sys.stdout.buffer
            self._owns_file = False
            return
        mode = "wb" if overwrite else "ab"
        try:
            self._file = await asyncio.to_thread(_open_file, Path(self.path), mode)
        except OSError as exc:
            raise ConfigError(
                f"cannot open output file {os.fspath(self.path)!r}: {exc.strerror or exc}"
            ) from None

    def write_nowait(self, data: bytes) -> bool:
        """Buffer ``data``; True when the buffer is full and the caller should ``flush()``."""
        self._buffer.append(data)
        self._size += len(data)
        return self._size >= FLUSH_BYTES

    async def flush(self) -> None:
        """Write everything buffered so far and wait until it is written."""
        if self._buffer:
            chunk = b"".join(self._buffer)
            self._buffer = []
            self._size = 0
            self._writing = asyncio.create_task(self._write_after(self._writing, chunk))
        if self._writing is not None:
            # Shielded: cancelling the caller must not cancel a write half-way.
            await asyncio.shield(self._writing)

    async def _write_after(self, previous: asyncio.Task[None] | None, chunk: bytes) -> None:
        if previous is not None:
            await previous
        await asyncio.to_thread(self._write_chunk, chunk)

    def _write_chunk(self, chunk: bytes) -> None:
        file = self._file
        if file is None:
            raise RuntimeError(f"output {os.fspath(self.path)!r} is not open")
        file.write(chunk)
        # Flushing at batch boundaries lets `tail -f` and stdout readers see whole lines.
        file.flush()

    async def close(self) -> None:
        """Write what is left and close the file (stdout is flushed, not closed)."""
        try:
            await self.flush()
        finally:
            self._writing = None
            file, self._file = self._file, None
            if file is not None and self._owns_file:
                await asyncio.to_thread(file.close)


class JsonLinesExporter:
    """Writes one JSON object per line to ``path`` (``.jsonl``/``.jl``), or stdout for ``"-"``.

    Appends to an existing file unless ``overwrite`` is true.
    """

    def __init__(self, path: str | os.PathLike[str], overwrite: bool = False) -> None:
        self.path = path
        self.overwrite = overwrite
        self._out = BufferedFile(path)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {os.fspath(self.path)!r}>"

    async def open(self, spider: Any) -> None:
        """Open the output file."""
        await self._out.open(overwrite=self.overwrite)

    async def process_item(self, item: Any, spider: Any) -> Any:
        """Buffer the item as one line; write a batch when the buffer is full."""
        if self._out.write_nowait(dumps(to_dict(item)) + b"\n"):
            await self._out.flush()
        return item

    async def close(self, spider: Any) -> None:
        """Write the remaining lines and close the file."""
        await self._out.close()
