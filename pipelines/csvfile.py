"""CSV export: one row per item, nested values as JSON in the cell."""

from __future__ import annotations

import asyncio
import csv
import io
import os
from collections.abc import Sequence
from typing import IO, Any

from crawler.errors import ConfigError
from crawler.loglines import get_logger

from .jsonlines import FLUSH_BYTES, BufferedFile, dumps, to_dict

__all__ = ["CsvExporter"]

logger = get_logger("crawler.pipelines.csv")


def _read_header(path: str | os.PathLike[str]) -> list[str] | None:
    """The header row of an existing CSV file, or None if it is missing or empty."""
    try:
        # utf-8-sig: files saved by spreadsheets often start with a BOM.
        with open(path, newline="", encoding="utf-8-sig") as file:
            return next(csv.reader(file), None) or None
    except FileNotFoundError:
        return None


_SCAN_BYTES = 1024 * 1024


def whole_records(file: IO[bytes], size: int) -> int:
    """The length of ``file``'s prefix up to and including its last record's line break.

    A cell may hold line breaks inside quotes, so the last record ends at the
    last ``\\n`` preceded by an even number of ``"`` (an escaped quote is two):
    one pass counts the file's quotes, then a backward scan finds that newline.
    Assumes standard quoting, as ``csv.writer`` writes it (any cell holding a
    quote is quoted). 0 if there is no complete record.
    """
    quotes = 0
    file.seek(0)
    while chunk := file.read(_SCAN_BYTES):
        quotes += chunk.count(b'"')
    end = size
    after = 0  # quotes in file[end:]
    while end > 0:
        start = max(0, end - _SCAN_BYTES)
        file.seek(start)
        chunk = file.read(end - start)
        stop = len(chunk)
        while (newline := chunk.rfind(b"\n", 0, stop)) >= 0:
            after += chunk.count(b'"', newline, stop)
            if (quotes - after) % 2 == 0:
                return start + newline + 1
            stop = newline
        after += chunk.count(b'"', 0, stop)
        end = start
    return 0


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, (str, int, float)):
        return value
    if isinstance(value, (dict, list, tuple, set, frozenset)):
        # A cell is flat text; JSON keeps nested values recoverable.
        return dumps(value).decode()
    return str(value)


class CsvExporter:
    """Writes items as CSV rows to ``path``; appends unless ``overwrite`` is true.

    Columns are ``fields``, else the first item's keys; when appending to a
    non-empty file its existing header wins and is not written again. Keys
    outside the columns are dropped (a CSV file cannot grow columns) with one
    warning per dropped field; missing keys give empty cells. A partial last
    row left by a crash is truncated before appending (with a warning).
    ``flush(spider)`` writes and fsyncs every row processed so far.

    Resuming a crawl gives *at least once* delivery: each item is in the file
    at least once, but items of requests in flight at the crash (processed,
    not yet checkpointed) are written again and may appear twice. De-duplicate
    downstream, or use a SQLite output for exactly once.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        overwrite: bool = False,
        fields: Sequence[str] | None = None,
    ) -> None:
        self.path = path
        self.overwrite = overwrite
        self._fields_option = list(fields) if fields else None
        # The columns written; without ``fields`` known only after the first item.
        self.fields = self._fields_option
        self._out = BufferedFile(path, complete_prefix=whole_records)
        self._columns: set[str] = set()
        self._dropped: set[str] = set()
        self._header_pending = True
        self._new_batch()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {os.fspath(self.path)!r}>"

    def _new_batch(self) -> None:
        self._text = io.StringIO()
        self._writer = csv.writer(self._text)

    def _set_fields(self, fields: list[str]) -> None:
        self.fields = fields
        self._columns = set(fields)

    async def open(self, spider: Any) -> None:
        """Open the file (dropping a partial last row), then read its header when appending."""
        self.fields = self._fields_option
        self._columns = set()
        self._dropped = set()
        self._header_pending = True
        self._new_batch()
        await self._out.open(overwrite=self.overwrite, spider=spider)
        existing = None
        if not self.overwrite and not self._out.is_stdout:
            try:
                existing = await asyncio.to_thread(_read_header, self.path)
            except (OSError, UnicodeDecodeError, csv.Error) as exc:
                await self._out.close()
                raise ConfigError(
                    f"cannot open output file {os.fspath(self.path)!r} to append: {exc};"
                    " use -O to overwrite it"
                ) from None
        if existing is not None:
            if self.fields is not None and self.fields != existing:
                logger.warning(
                    "[%s] %s already has columns %s; using them instead of fields=%s",
                    getattr(spider, "name", ""),
                    os.fspath(self.path),
                    existing,
                    self.fields,
                )
            self._set_fields(existing)
            self._header_pending = False
        elif self.fields is not None:
            self._set_fields(self.fields)
        if self.fields is not None and self._header_pending:
            # Known columns: write the header even if the crawl yields no item.
            self._writer.writerow(self.fields)
            self._header_pending = False

    async def process_item(self, item: Any, spider: Any) -> Any:
        """Buffer the item as a row; write a batch when the buffer is full."""
        row = {str(key): value for key, value in to_dict(item).items()}
        fields = self.fields
        if fields is None:
            fields = list(row)
            self._set_fields(fields)
        if self._header_pending:
            self._writer.writerow(fields)
            self._header_pending = False
        if not row.keys() <= self._columns:
            self._warn_dropped(row.keys() - self._columns, spider)
        self._writer.writerow([_cell(row.get(name)) for name in fields])
        if self._text.tell() >= FLUSH_BYTES:
            await self._flush()
        return item

    def _warn_dropped(self, extra: set[str], spider: Any) -> None:
        new = extra - self._dropped
        if new:
            self._dropped |= new
            logger.warning(
                "[%s] %s: dropping field(s) %s: not in the CSV columns %s"
                " (pass fields=[...] to choose the columns)",
                getattr(spider, "name", ""),
                os.fspath(self.path),
                ", ".join(sorted(new)),
                self.fields,
            )

    async def _flush(self, *, durable: bool = False) -> None:
        text = self._text.getvalue()
        self._new_batch()
        if text:
            self._out.write_nowait(text.encode())
        await self._out.flush(durable=durable)

    async def flush(self, spider: Any) -> None:
        """Make every row processed so far durable: write the buffer and fsync the file."""
        await self._flush(durable=True)

    async def close(self, spider: Any) -> None:
        """Write the remaining rows and close the file."""
        try:
            await self._flush()
        finally:
            await self._out.close()
