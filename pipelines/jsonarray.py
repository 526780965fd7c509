"""JSON export: the whole crawl as one JSON array."""

from __future__ import annotations

import asyncio
import os
import stat
from typing import Any

from crawler.errors import ConfigError

from .jsonlines import BufferedFile, dumps, to_dict

__all__ = ["JsonArrayExporter"]


def _size(path: str | os.PathLike[str]) -> int:
    """Bytes in the regular file at ``path``; 0 if absent (or not a file: open() will say why)."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        return 0
    return info.st_size if stat.S_ISREG(info.st_mode) else 0


class JsonArrayExporter:
    """Writes all items to ``path`` as one JSON array, one item per line; ``[]`` if none.

    An array cannot be appended to and stay valid JSON, so an existing
    non-empty file is refused unless ``overwrite`` is true. ``flush(spider)``
    writes and fsyncs every item processed so far, but the array is closed
    only by ``close``: a file cut short by a crash lacks its final ``]``.

    Not resumable: a resumed crawl can neither append to the array nor
    re-create the items of requests finished before the crash, so overwriting
    (``-O``) loses them. Use a ``.jsonl`` or ``.db`` output for crawls you may
    resume.
    """

    def __init__(self, path: str | os.PathLike[str], overwrite: bool = False) -> None:
        self.path = path
        self.overwrite = overwrite
        self._out = BufferedFile(path)
        self._count = 0

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {os.fspath(self.path)!r}>"

    async def open(self, spider: Any) -> None:
        """Open the file; raise ConfigError if it already holds data and overwrite is off."""
        if not self.overwrite and not self._out.is_stdout:
            if await asyncio.to_thread(_size, self.path) > 0:
                raise ConfigError(
                    f"cannot append to a JSON array file {os.fspath(self.path)}; "
                    "use -O to overwrite or a .jsonl output"
                )
        # The file is new or empty by now, so truncating loses nothing.
        await self._out.open(overwrite=True, spider=spider)
        self._count = 0

    async def process_item(self, item: Any, spider: Any) -> Any:
        """Buffer the item as the array's next element; write a batch when the buffer is full."""
        # The bracket opens with the first item so an empty crawl can still end as `[]`.
        prefix = b",\n" if self._count else b"[\n"
        self._count += 1
        if self._out.write_nowait(prefix + dumps(to_dict(item))):
            await self._out.flush()
        return item

    async def flush(self, spider: Any) -> None:
        """Make every item processed so far durable: write the buffer and fsync the file."""
        await self._out.flush(durable=True)

    async def close(self, spider: Any) -> None:
        """Close the array and the file."""
        try:
            self._out.write_nowait(b"\n]\n" if self._count else b"[]\n")
        finally:
            await self._out.close()
