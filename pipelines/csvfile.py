"""CSV export: one row per item, nested values as JSON in the cell."""

from __future__ import annotations

import asyncio
import csv
import io
import os
from collections.abc import Sequence
from typing import IO, Any

import orjson

from crawler import ConfigError, OutputError
from crawler.loglines import get_logger

from .faults import DEFAULT_RETRY, WriteRetry
from .files import BufferedFile, FileOutput
from .jsonlines import dumps, to_dict, unencodable

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


def _cell(name: str, value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, (str, int, float)):
        return value
    if isinstance(value, (dict, list, tuple, set, frozenset)):
        # A cell is flat text; JSON keeps nested values recoverable.
        try:
            return dumps(value).decode()
        except orjson.JSONEncodeError as exc:
            raise unencodable({name: value}, exc) from exc
    return str(value)


class CsvExporter(FileOutput):
    """Writes items as CSV rows to ``path``; appends unless ``overwrite`` is true.

    Columns are ``fields``, else the first item's keys; when appending to a
    non-empty file its existing header wins and is not written again. Keys
    outside the columns are dropped (a CSV file cannot grow columns) with one
    warning per dropped field; missing keys give empty cells. A partial last
    row left by a crash is truncated before appending (with a warning).
    ``flush(spider)`` writes and fsyncs every row processed so far. A write
    that fails for good raises :class:`~crawler.errors.OutputError`.

    With a state folder it is a :class:`~crawler.pipeline.CheckpointedOutput`:
    ``durable_position()`` is ``{"offset", "dev", "ino", "header", "fields"}``
    (whether the header row is in the file, and its columns); a resume cuts
    the file back to it and goes on with those columns and no second header,
    so each item is in the file exactly once.
    """

    kind = "csv"

    def __init__(
        self,
        path: str | os.PathLike[str],
        overwrite: bool = False,
        fields: Sequence[str] | None = None,
        *,
        retry: WriteRetry = DEFAULT_RETRY,
    ) -> None:
        self.path = path
        self.overwrite = overwrite
        self._fields_option = list(fields) if fields else None
        # The columns written; without ``fields`` known only after the first item.
        self.fields = self._fields_option
        self._out = BufferedFile(path, complete_prefix=whole_records, retry=retry)
        self._columns: set[str] = set()
        self._dropped: set[str] = set()
        self._header_pending = True
        self._resume_header: tuple[bool, list[str] | None] | None = None
        # One row at a time is formatted here, then encoded: a bad row fails alone.
        self._text = io.StringIO()
        self._writer = csv.writer(self._text)

    def _set_fields(self, fields: list[str]) -> None:
        self.fields = fields
        self._columns = set(fields)

    def _mark(self) -> dict[str, Any]:
        return {"header": not self._header_pending, "fields": self.fields}

    def resume_at(self, position: dict[str, Any] | None, resuming: bool) -> None:
        """Before ``open``: cut back to ``position`` when resuming (OutputError if impossible)."""
        super().resume_at(position, resuming)
        self._resume_header = None
        if self._out.resume_mark is not None and position is not None:
            header, fields = position.get("header"), position.get("fields")
            if not isinstance(header, bool) or not (
                fields is None
                or (isinstance(fields, list) and all(isinstance(f, str) for f in fields))
            ):
                raise OutputError(
                    f"cannot resume {self._out.name}: the position saved for it is not valid;"
                    " run with --restart to start the crawl over",
                    self._out.name,
                )
            self._resume_header = (header and bool(fields), fields)

    async def open(self, spider: Any) -> None:
        """Open the file (cut back to the checkpoint or a partial last row); find the header."""
        self.fields = self._fields_option
        self._columns = set()
        self._dropped = set()
        self._header_pending = True
        resumed, self._resume_header = self._resume_header, None
        appending = (not self.overwrite or self._out.resuming) and not self._out.is_stdout
        await self._out.open(overwrite=self.overwrite, spider=spider)
        existing = None
        if resumed is not None:
            header, fields = resumed
            existing = fields if header and self._out.offset > 0 else None
        elif appending:
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
        self._out.mark_opened(self._mark())
        if self.fields is not None and self._header_pending:
            # Known columns: write the header even if the crawl yields no item.
            self._out.write_nowait(self._row(self.fields, self.fields))
            self._header_pending = False

    def _row(self, names: list[str], cells: list[Any]) -> bytes:
        """One CSV row as UTF-8; ValueError naming the field that cannot be written."""
        text = self._text
        text.seek(0)
        text.truncate()
        try:
            self._writer.writerow(cells)
            return text.getvalue().encode()
        except (UnicodeEncodeError, csv.Error) as exc:
            for name, cell in zip(names, cells, strict=False):
                try:
                    str(cell).encode()
                except UnicodeEncodeError as cell_exc:
                    raise ValueError(
                        f"cannot write item field {name!r} as CSV: {cell_exc.reason}"
                    ) from exc
            raise ValueError(f"cannot write the item as CSV: {type(exc).__name__}") from exc

    async def process_item(self, item: Any, spider: Any) -> Any:
        """Buffer the item as a row; write a batch when the buffer is full.

        A value that cannot be written raises ValueError/TypeError naming its
        field (the item is dropped, the file is untouched).
        """
        self._out.raise_if_failed()
        row = {str(key): value for key, value in to_dict(item).items()}
        fields = self.fields if self.fields is not None else list(row)
        data = self._row(fields, [_cell(name, row.get(name)) for name in fields])
        if self._header_pending:
            data = self._row(fields, fields) + data
        # Only now that the item is known to be writable does it change the columns.
        if self.fields is None:
            self._set_fields(fields)
        self._header_pending = False
        if not row.keys() <= self._columns:
            self._warn_dropped(row.keys() - self._columns, spider)
        if self._out.write_nowait(data):
            await self._out.flush()
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

    async def flush(self, spider: Any) -> None:
        """Make every row processed so far durable: write the buffer and fsync the file."""
        await self._out.flush(durable=True, mark=self._mark())

    async def close(self, spider: Any) -> None:
        """Write the remaining rows and close the file."""
        try:
            await self._out.flush(durable=True, mark=self._mark())
        finally:
            await self._out.close()
