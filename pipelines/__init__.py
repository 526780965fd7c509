"""Built-in item pipelines: exporters to JSON Lines, CSV, JSON and SQLite, and files.

Every exporter is an :class:`crawler.ItemPipeline` that buffers serialized
items in memory and writes them in batches off the event loop.
``exporter_for(path)`` picks one by the file's extension.

Nothing is lost silently: a write that fails for good (disk full, file too
large, read-only, I/O error) raises :class:`crawler.errors.OutputError` from
``process_item``/``flush``/``close``, and every later call raises it again;
transient failures (EINTR, EAGAIN, a locked database) are retried as a
:class:`WriteRetry` says. An item that cannot be encoded raises a
TypeError/ValueError naming its field instead (only that item is dropped).
The file exporters are :class:`crawler.pipeline.CheckpointedOutput`: a
resumed crawl cuts each file back to its last checkpoint (exactly once);
SQLite gets exactly once from its keyed upsert.

:class:`FilesPipeline` downloads the files an item lists (``file_urls``) into
FILES_STORE through the crawl's downloader, and records them in the item's ``files``
field before the item goes on to the exporters (see ``media.py``).
"""

from __future__ import annotations

import os
from pathlib import Path

from crawler import ConfigError, ItemPipeline

from .csvfile import CsvExporter
from .faults import WriteRetry
from .jsonarray import JsonArrayExporter
from .jsonlines import JsonLinesExporter
from .media import FilesPipeline
from .sqlite import SqliteExporter

__all__ = [
    "CsvExporter",
    "FilesPipeline",
    "JsonArrayExporter",
    "JsonLinesExporter",
    "SqliteExporter",
    "WriteRetry",
    "exporter_for",
]

_BY_EXTENSION: dict[str, type[JsonLinesExporter | CsvExporter | JsonArrayExporter]] = {
    ".jsonl": JsonLinesExporter,
    ".jl": JsonLinesExporter,
    ".csv": CsvExporter,
    ".json": JsonArrayExporter,
}
_SQLITE_EXTENSIONS = (".db", ".sqlite", ".sqlite3")


def check_output_path(text: str) -> None:
    """Raise ConfigError naming ``text`` if an output file cannot be created there."""
    target = Path(text)
    if target.is_dir():
        raise ConfigError(
            f"output {text!r} is a folder; give a file name such as {text}/items.jsonl"
        )
    folder = target.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent  # missing folders are created when the output opens
    if not folder.is_dir():
        raise ConfigError(
            f"output {text!r}: {str(folder)!r} is a file, not a folder; choose another path"
        )
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ConfigError(f"output {text!r}: folder {str(folder)!r} is not writable")


def exporter_for(path: str | os.PathLike[str], overwrite: bool = False) -> ItemPipeline:
    """The exporter for ``path`` by its extension (``"-"`` is JSON Lines on stdout).

    Raises ConfigError for an extension no exporter handles, or a path that cannot be
    written (its folder is a file or not writable; the path is a folder), before any crawl.
    """
    text = os.fspath(path)
    if text == "-":
        return JsonLinesExporter(text, overwrite=overwrite)
    check_output_path(text)
    extension = os.path.splitext(text)[1].lower()
    if extension in _SQLITE_EXTENSIONS:
        return SqliteExporter(text, overwrite=overwrite)
    exporter = _BY_EXTENSION.get(extension)
    if exporter is None:
        supported = ", ".join([*_BY_EXTENSION, *_SQLITE_EXTENSIONS])
        raise ConfigError(
            f"no exporter for output {text!r}: unsupported extension {extension or '(none)'!r};"
            f" use one of {supported}, or '-' for JSON Lines on stdout"
        )
    return exporter(text, overwrite=overwrite)
