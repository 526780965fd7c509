"""JSON export: the whole crawl as one JSON array."""

from __future__ import annotations

import asyncio
import os
import stat
from typing import Any

from crawler import ConfigError, OutputError

from .faults import DEFAULT_RETRY, WriteRetry
from .files import BufferedFile, FileOutput
from .jsonlines import dumps_item, to_dict

__all__ = ["JsonArrayExporter"]


def _size(path: str | os.PathLike[str]) -> int:
    """Bytes in the regular file at ``path``; 0 if absent (or not a file: open() will say why)."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        return 0
    return info.st_size if stat.S_ISREG(info.st_mode) else 0


class JsonArrayExporter(FileOutput):
    """Writes all items to ``path`` as one JSON array, one item per line; ``[]`` if none.

    An array cannot be appended to and stay valid JSON, so an existing
    non-empty file is refused unless ``overwrite`` is true. ``flush(spider)``
    writes and fsyncs every item processed so far, but the array is closed
    only by ``close``: a file cut short by a crash lacks its final ``]``. A
    write that fails for good raises :class:`~crawler.errors.OutputError`.

    With a state folder it is a :class:`~crawler.pipeline.CheckpointedOutput`:
    ``durable_position()`` is ``{"offset", "dev", "ino", "items"}`` (items in
    the array so far; the closing ``]`` is never inside ``offset``). A resume
    cuts the file back to it, drops the ``]`` of an interrupted run and goes on
    with the next element, so the file is one valid array holding each item
    once. Resuming without a saved position is refused (OutputError) when the
    file holds data; without a state folder a crawl cannot resume into it.
    """

    kind = "json"

    def __init__(
        self,
        path: str | os.PathLike[str],
        overwrite: bool = False,
        *,
        retry: WriteRetry = DEFAULT_RETRY,
    ) -> None:
        self.path = path
        self.overwrite = overwrite
        self._out = BufferedFile(path, retry=retry)
        self._count = 0
        self._resume_count: int | None = None

    def resume_at(self, position: dict[str, Any] | None, resuming: bool) -> None:
        """Before ``open``: cut back to ``position`` when resuming (OutputError if impossible)."""
        super().resume_at(position, resuming)
        self._resume_count = None
        if self._out.resume_mark is not None and position is not None:
            count = position.get("items")
            if type(count) is not int or count < 0:
                raise OutputError(
                    f"cannot resume {self._out.name}: the position saved for it is not valid;"
                    " run with --restart to start the crawl over",
                    self._out.name,
                )
            self._resume_count = count

    async def open(self, spider: Any) -> None:
        """Open the file; raise ConfigError if it already holds data and overwrite is off.

        Resuming at a saved position appends to the array instead.
        """
        resumed, self._resume_count = self._resume_count, None
        name = self._out.name
        if resumed is not None:
            await self._out.open(overwrite=False, spider=spider)
            # An empty file after the cut has no "[" yet, whatever the count said.
            self._count = resumed if self._out.offset > 0 else 0
        else:
            if not self._out.is_stdout and (self._out.resuming or not self.overwrite):
                if await asyncio.to_thread(_size, self.path) > 0:
                    if self._out.resuming:
                        raise OutputError(
                            f"cannot resume {name}: no position was saved for it, so its"
                            " items cannot be told apart; run with --restart to start the"
                            " crawl over (add -O to replace the file)",
                            name,
                        )
                    raise ConfigError(
                        f"cannot append to a JSON array file {name}; "
                        "use -O to overwrite or a .jsonl output"
                    )
            # The file is new or empty by now, so truncating loses nothing.
            await self._out.open(overwrite=True, spider=spider)
            self._count = 0
        self._out.mark_opened({"items": self._count})

    async def process_item(self, item: Any, spider: Any) -> Any:
        """Buffer the item as the array's next element; write a batch when the buffer is full."""
        data = dumps_item(to_dict(item))  # first: an item that cannot be encoded changes nothing
        # The bracket opens with the first item so an empty crawl can still end as `[]`.
        prefix = b",\n" if self._count else b"[\n"
        full = self._out.write_nowait(prefix + data)
        self._count += 1
        if full:
            await self._out.flush()
        return item

    async def flush(self, spider: Any) -> None:
        """Make every item processed so far durable: write the buffer and fsync the file."""
        await self._out.flush(durable=True, mark={"items": self._count})

    async def close(self, spider: Any) -> None:
        """Close the array and the file; the saved position stays before the closing bracket."""
        try:
            await self._out.flush(durable=True, mark={"items": self._count})
        finally:
            await self._out.close(trailer=b"\n]\n" if self._count else b"[]\n")
