"""Where the files pipeline keeps what it downloaded: files under FILES_STORE and their index.

A file is stored at ``full/<sha1 of its URL><extension>`` (Scrapy's layout), written to
a temporary file in the same folder, flushed to disk (fsync) and renamed into place,
then the folder is synced: a file is either whole under its final name or absent, even
after a crash. Leftover temporary files (``full/.part-*``, from a killed process) are
removed when the store opens, once they are an hour old (so a second crawl writing to
the same store at the same time keeps its own).

The index (``FILES_STORE/files.db``, one of our SQLite files, opened by
``crawler.storage`` through the crawl's ``DownloaderAccess.open_database``) maps each
URL to its path, checksum and size; a URL found there whose file is still on disk is
not downloaded again ("uptodate").
Every disk operation runs in a thread; the event loop never waits for the disk.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import mimetypes
import os
import re
import sqlite3
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import unquote, urlsplit

import aiosqlite

from crawler import OutputError

__all__ = ["INDEX_KIND", "FileIndex", "StoredFile", "extension_for", "file_path", "write_file"]

APPLICATION_ID = 0x43524C46  # "CRLF": crawler files index
SCHEMA_VERSION = 1
# The fields of a crawler.storage.DatabaseKind (this package uses only the public API).
INDEX_KIND: dict[str, Any] = dict(
    noun="files index",
    application_id=APPLICATION_ID,
    version=SCHEMA_VERSION,
    schema=f"""BEGIN IMMEDIATE;
CREATE TABLE IF NOT EXISTS files (
    url TEXT PRIMARY KEY,
    path TEXT NOT NULL,
    checksum TEXT NOT NULL,
    size INTEGER NOT NULL,
    width INTEGER,
    height INTEGER,
    stored_at REAL NOT NULL
);
PRAGMA application_id = {APPLICATION_ID};
PRAGMA user_version = {SCHEMA_VERSION};
COMMIT;""",
    tables=frozenset(("files",)),
    remedy="choose another FILES_STORE or move this file away",
)
INDEX_NAME = "files.db"
PART_PREFIX = ".part-"
_STALE_PART_S = 3600.0

# The built-in table only: the same extensions on every machine, whatever /etc/mime.types says.
_TYPES = mimetypes.MimeTypes(filenames=())
_EXTENSION = re.compile(r"\.[a-z0-9]{1,10}")
_IMAGE_EXTENSIONS = frozenset((".png", ".jpg", ".jpeg", ".gif", ".webp", ".bmp", ".tif", ".tiff"))


@dataclass(frozen=True, slots=True)
class StoredFile:
    """One stored file: its path under the store, md5 of its content, size and image size."""

    path: str
    checksum: str
    size: int
    width: int | None = None
    height: int | None = None


def extension_for(url: str, content_type: str | None) -> str:
    """The file's extension (``.pdf``): from the URL path if it is a known one, else from
    the Content-Type, else none."""
    suffix = PurePosixPath(unquote(urlsplit(url).path)).suffix.lower()
    if _EXTENSION.fullmatch(suffix) and suffix in _TYPES.types_map[True]:
        return suffix
    if content_type:
        guessed = _TYPES.guess_extension(content_type.split(";")[0].strip().lower())
        if guessed:
            return guessed
    return suffix if _EXTENSION.fullmatch(suffix) else ""


def file_path(url: str, extension: str) -> str:
    """``full/<sha1 of url><extension>``: the same URL always lands on the same path."""
    return f"full/{hashlib.sha1(url.encode(), usedforsecurity=False).hexdigest()}{extension}"


def looks_like_image(path: str, content_type: str | None) -> bool:
    """Worth asking Pillow for its size (by Content-Type or extension)."""
    if content_type and content_type.strip().lower().startswith("image/"):
        return True
    return PurePosixPath(path).suffix in _IMAGE_EXTENSIONS


def write_file(root: Path, path: str, body: bytes, measure: bool) -> StoredFile:
    """Store ``body`` at ``root/path`` atomically (blocking: call it in a thread).

    ``measure``: record the image's width and height when Pillow is installed.
    """
    checksum = hashlib.md5(body, usedforsecurity=False).hexdigest()
    target = root / path
    folder = target.parent
    folder.mkdir(parents=True, exist_ok=True)
    handle, part = tempfile.mkstemp(prefix=PART_PREFIX, dir=folder)
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(body)
            out.flush()
            os.fsync(out.fileno())
        os.replace(part, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(part)
        raise
    _sync_folder(folder)
    width, height = _image_size(body) if measure else (None, None)
    return StoredFile(path, checksum, len(body), width, height)


def _sync_folder(folder: Path) -> None:
    """Make the rename durable (where folders can be opened: not on Windows)."""
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass  # some file systems cannot sync a folder; the file itself is synced
    finally:
        os.close(descriptor)


def _image_size(body: bytes) -> tuple[int | None, int | None]:
    """Width and height from the image header, if Pillow is installed and can read it."""
    try:
        from PIL import Image  # optional: imported lazily, only for images
    except ImportError:
        return None, None
    try:
        with Image.open(io.BytesIO(body)) as image:
            width, height = image.size
            return int(width), int(height)
    except Exception:  # not an image after all, or one Pillow refuses: no size, no failure
        return None, None


def _remove_stale_parts(folder: Path) -> None:
    if not folder.is_dir():
        return
    oldest = time.time() - _STALE_PART_S
    for part in folder.glob(f"{PART_PREFIX}*"):
        with contextlib.suppress(OSError):
            if part.stat().st_mtime < oldest:
                part.unlink()


class FileIndex:
    """The store's index of stored files, by URL (``FILES_STORE/files.db``)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.path = root / INDEX_NAME
        self._db: aiosqlite.Connection | None = None

    async def open(self, open_database: Callable[..., Awaitable[aiosqlite.Connection]]) -> None:
        """Open or create the index with ``open_database(path, **INDEX_KIND)`` (ConfigError
        for a file that is not one); tidy the store."""
        self._db = await open_database(self.path, **INDEX_KIND)
        try:
            await asyncio.to_thread(_remove_stale_parts, self.root / "full")
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        """Close the index."""
        if self._db is not None:
            db, self._db = self._db, None
            await db.close()

    async def lookup(self, url: str) -> StoredFile | None:
        """The stored file of ``url`` if it is indexed and still on disk."""
        try:
            rows = list(
                await self._conn.execute_fetchall(
                    "SELECT path, checksum, size, width, height FROM files WHERE url = ?",
                    (url,),
                )
            )
        except sqlite3.Error as exc:
            raise self._error("read", exc) from exc
        if not rows:
            return None
        stored = StoredFile(*rows[0])
        if not await asyncio.to_thread((self.root / stored.path).is_file):
            return None  # removed by hand: download it again
        return stored

    async def record(self, url: str, stored: StoredFile) -> None:
        """Index ``stored`` as the file of ``url``."""
        try:
            await self._conn.execute(
                "INSERT INTO files(url, path, checksum, size, width, height, stored_at)"
                " VALUES(?, ?, ?, ?, ?, ?, ?) ON CONFLICT(url) DO UPDATE SET"
                " path=excluded.path, checksum=excluded.checksum, size=excluded.size,"
                " width=excluded.width, height=excluded.height, stored_at=excluded.stored_at",
                (url, stored.path, stored.checksum, stored.size, stored.width, stored.height,
                 time.time()),
            )  # fmt: skip
        except sqlite3.Error as exc:
            raise self._error("update", exc) from exc

    @property
    def _conn(self) -> aiosqlite.Connection:
        if self._db is None:
            raise OutputError(f"files index {self.path} is not open", output=self.output_name)
        return self._db

    @property
    def output_name(self) -> str:
        """How errors name the store."""
        return f"files:{self.root}"

    def _error(self, what: str, exc: sqlite3.Error) -> OutputError:
        return OutputError(f"cannot {what} files index {self.path}: {exc}", self.output_name)
