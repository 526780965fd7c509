"""What a job carries from one run to the next (``<jobs dir>/<job>/job.db``).

* **Validators**: each URL's ``ETag`` / ``Last-Modified``. :class:`ConditionalRequests`
  (a downloader middleware) sends them back as ``If-None-Match`` /
  ``If-Modified-Since``; a ``304 Not Modified`` is counted as unchanged and its
  callback is skipped, unless the spider sets ``handle_unchanged = True`` (or the
  request ``meta["handle_unchanged"]``): then the callback gets the 304 with
  ``response.meta["unchanged"] = True``. ``meta["incremental"] = False`` turns
  conditional requests off for one request (e.g. a listing page whose links
  must be followed every run).
* **Item hashes**: the SHA-256 of each item's content (sorted-key JSON) by item
  key. :class:`ItemChanges` classifies each item as new, changed or unchanged
  and, with ``only="new"`` / ``only="changed"``, drops the others.
* **Cookie jars**: :class:`CookieKeeper` (a session hook, see
  ``Crawler(session_hooks=...)``) loads them into the crawl's sessions when they
  open and saves them when the crawl has ended.

Validators and hashes change only when a run succeeds (:meth:`JobState.commit`):
"new" and "changed" are relative to the last successful run, and a failed run
is redone in full by the next one. Both are held in memory during a run
(about 150 bytes per URL or item) so the per-request cost is a dict lookup.
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiosqlite
import orjson
from aiohttp.abc import AbstractCookieJar
from itemadapter import ItemAdapter, is_item

from ..downloader.sessions import SessionPool
from ..errors import ConfigError, DropItem
from ..loglines import get_logger
from ..middleware import DONE, EndRequest, Handler
from ..pipeline import item_key
from ..request import Request
from ..response import Response
from ..storage import (
    COOKIES_TABLE,
    CookiePool,
    DatabaseKind,
    open_database,
    restore_cookies,
    save_cookies,
    transaction,
)

__all__ = [
    "ConditionalRequests",
    "CookieKeeper",
    "ItemChanges",
    "JobState",
    "content_hash",
]

logger = get_logger("crawler.jobs")

APPLICATION_ID = 0x43524C4A  # "CRLJ": crawler job state
SCHEMA_VERSION = 1

JOB_STATE_FILE = DatabaseKind(
    noun="job state",
    application_id=APPLICATION_ID,
    version=SCHEMA_VERSION,
    schema=f"""BEGIN IMMEDIATE;
CREATE TABLE IF NOT EXISTS validators (
    url TEXT PRIMARY KEY, etag TEXT, last_modified TEXT, updated_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS items (
    key TEXT PRIMARY KEY, hash TEXT NOT NULL, first_seen TEXT NOT NULL, last_seen TEXT NOT NULL,
    first_run TEXT NOT NULL, last_run TEXT NOT NULL);
{COOKIES_TABLE}
PRAGMA application_id = {APPLICATION_ID};
PRAGMA user_version = {SCHEMA_VERSION};
COMMIT;""",
    tables=frozenset(("validators", "items", "cookies")),
    remedy="move it away (the job then forgets its earlier runs) or choose another --state-dir",
    adopt_unstamped=True,  # job.db files written before it had an application id
)

Validators = tuple[str | None, str | None]  # (ETag, Last-Modified)


def _json_default(value: Any) -> Any:
    if isinstance(value, (set, frozenset)):
        try:
            return sorted(value)
        except TypeError:
            return list(value)
    if is_item(value):
        return ItemAdapter(value).asdict()
    return str(value)


def content_hash(data: Mapping[Any, Any]) -> str:
    """SHA-256 hex of ``data`` as sorted-key JSON: equal content, equal hash."""
    encoded = orjson.dumps(
        data, default=_json_default, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS
    )
    return hashlib.sha256(encoded).hexdigest()


class JobState:
    """A job's validators, item hashes and cookie jars in SQLite: ``async with JobState(path)``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.validators: dict[str, Validators] = {}
        self.hashes: dict[str, str] = {}
        self._new_validators: dict[str, Validators | None] = {}  # None: forget the URL
        self._seen: dict[str, str] = {}
        self._db: aiosqlite.Connection | None = None

    async def __aenter__(self) -> JobState:
        await self.open()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def open(self) -> None:
        """Open the file and load validators and item hashes into memory."""
        self._db = db = await open_database(
            self.path, JOB_STATE_FILE, busy_timeout_s=30.0, make_parents=True
        )
        try:
            rows = await db.execute_fetchall("SELECT url, etag, last_modified FROM validators")
            self.validators = {url: (etag, modified) for url, etag, modified in rows}
            rows = await db.execute_fetchall("SELECT key, hash FROM items")
            self.hashes = {key: digest for key, digest in rows}
        except sqlite3.DatabaseError as exc:
            await self.close()
            raise ConfigError(f"cannot use the job state {self.path}: {exc}") from None

    async def close(self) -> None:
        """Close the file (uncommitted changes of this run are forgotten)."""
        if self._db is not None:
            db, self._db = self._db, None
            await db.close()

    @property
    def db(self) -> aiosqlite.Connection:
        """The open connection."""
        if self._db is None:
            raise RuntimeError("JobState is not open: use `async with JobState(path)`")
        return self._db

    def remember(self, url: str, etag: str | None, last_modified: str | None) -> None:
        """Validators ``url`` answered with this run (both None: forget it)."""
        self._new_validators[url] = (etag, last_modified) if etag or last_modified else None

    def saw_item(self, key: str, digest: str) -> None:
        """An item this run produced."""
        self._seen[key] = digest

    async def commit(self, run_id: str, now: datetime | None = None) -> None:
        """Make this run's validators and item hashes the reference for the next run."""
        stamp = (now or datetime.now(UTC)).astimezone(UTC).isoformat(timespec="seconds")
        forget = [(url,) for url, value in self._new_validators.items() if value is None]
        keep = [
            (url, value[0], value[1], stamp)
            for url, value in self._new_validators.items()
            if value is not None
        ]
        async with transaction(self.db) as db:
            await db.executemany("DELETE FROM validators WHERE url=?", forget)
            await db.executemany(
                "INSERT INTO validators (url, etag, last_modified, updated_at) VALUES (?, ?, ?, ?)"
                " ON CONFLICT(url) DO UPDATE SET etag=excluded.etag,"
                " last_modified=excluded.last_modified, updated_at=excluded.updated_at",
                keep,
            )
            await db.executemany(
                "INSERT INTO items (key, hash, first_seen, last_seen, first_run, last_run)"
                " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(key) DO UPDATE SET hash=excluded.hash,"
                " last_seen=excluded.last_seen, last_run=excluded.last_run",
                [(key, digest, stamp, stamp, run_id, run_id) for key, digest in self._seen.items()],
            )
        for url, value in self._new_validators.items():
            if value is None:
                self.validators.pop(url, None)
            else:
                self.validators[url] = value
        self.hashes.update(self._seen)
        self._new_validators.clear()
        self._seen.clear()

    async def restore_cookies(self, pool: CookiePool) -> int:
        """Put the saved cookie jars back into ``pool`` (the crawl's sessions); how many cookies."""
        return await restore_cookies(self.db, pool)

    async def save_cookies(self, jars: Mapping[str, AbstractCookieJar]) -> None:
        """Save the crawl's cookie jars (as a crawl's state file does)."""
        async with transaction(self.db) as db:
            await save_cookies(db, jars)


def _has_header(headers: Mapping[str, str], name: str) -> bool:
    lowered = name.lower()
    return any(key.lower() == lowered for key in headers)


class ConditionalRequests:
    """Conditional requests from the last successful run's validators (a downloader middleware).

    ``tell`` (the spider's ``handle_unchanged``) passes 304s to the callback instead
    of skipping it (a skipped request is done). ``counts`` has ``conditional``
    (requests sent with validators) and ``unchanged`` (304 answers).
    """

    def __init__(self, state: JobState, *, tell: bool = False) -> None:
        self.state = state
        self.tell = tell
        self.counts = {"conditional": 0, "unchanged": 0}

    async def handle(self, request: Request, call_next: Handler) -> Response:
        """Send the validators we know; a 304 to them ends the request unless told."""
        await self.before_fetch(request)
        response = await call_next(request)
        if not await self.after_fetch(request, response):
            raise EndRequest(DONE)
        return response

    async def before_fetch(self, request: Request) -> None:
        """Add If-None-Match / If-Modified-Since for a GET whose validators we know."""
        if request.method != "GET" or request.meta.get("incremental") is False:
            return
        saved = self.state.validators.get(request.url)
        if saved is None:
            return
        etag, last_modified = saved
        headers = dict(request.headers or {})
        added = False
        if etag and not _has_header(headers, "If-None-Match"):
            headers["If-None-Match"] = etag
            added = True
        if last_modified and not _has_header(headers, "If-Modified-Since"):
            headers["If-Modified-Since"] = last_modified
            added = True
        if not added:
            return
        request.headers = headers
        meta = request.meta
        meta["conditional"] = True
        self.counts["conditional"] += 1
        if self.tell or meta.get("handle_unchanged"):
            allowed = list(meta.get("handle_httpstatus_list", ()))
            if 304 not in allowed:
                meta["handle_httpstatus_list"] = [*allowed, 304]

    async def after_fetch(self, request: Request, response: Response) -> bool:
        """A 304 to a conditional request is unchanged (skip the callback); else remember."""
        meta = request.meta
        if response.status == 304 and meta.get("conditional"):
            self.counts["unchanged"] += 1
            meta["unchanged"] = True
            return bool(self.tell or meta.get("handle_unchanged"))
        if (
            200 <= response.status < 300
            and request.method == "GET"
            and meta.get("incremental") is not False
        ):
            headers = response.headers
            self.state.remember(request.url, headers.get("ETag"), headers.get("Last-Modified"))
        return True


class ItemChanges:
    """An item pipeline: hashes each item and compares it with the last successful run.

    ``only``: ``"all"`` passes every item, ``"new"`` only items whose key was never
    seen, ``"changed"`` new items and items whose hash differs; the rest are
    dropped (``DropItem``, counted as ``items_dropped``). The key is the item's
    ``key_field`` value, else :func:`crawler.item_key`. ``hash_field`` stores the
    hash in the item. ``counts`` has ``new``, ``changed`` and ``unchanged``.
    """

    def __init__(
        self,
        state: JobState,
        only: str = "all",
        *,
        key_field: str | None = None,
        hash_field: str | None = None,
    ) -> None:
        if only not in ("all", "new", "changed"):
            raise ValueError(f"only must be 'all', 'new' or 'changed', not {only!r}")
        self.state = state
        self.only = only
        self.key_field = key_field
        self.hash_field = hash_field
        self.counts = {"new": 0, "changed": 0, "unchanged": 0}
        self._warned: set[str] = set()

    def _warn_once(self, what: str, message: str, *args: Any) -> None:
        if what not in self._warned:
            self._warned.add(what)
            logger.warning(message, *args)

    async def process_item(self, item: Any, spider: Any) -> Any:
        """Classify the item; drop it if ``only`` says so."""
        adapter = ItemAdapter(item)
        data = adapter.asdict()
        if self.hash_field is not None:
            data.pop(self.hash_field, None)
        digest = content_hash(data)
        key = self._key(data, digest)
        previous = self.state.hashes.get(key)
        self.state.saw_item(key, digest)
        if previous is None:
            status = "new"
        elif previous != digest:
            status = "changed"
        else:
            status = "unchanged"
        self.counts[status] += 1
        if self.hash_field is not None:
            try:
                adapter[self.hash_field] = digest
            except KeyError:
                self._warn_once(
                    "hash_field",
                    "%s items have no field %r for the content hash",
                    type(item).__name__,
                    self.hash_field,
                )
        if self.only == "new" and status != "new":
            raise DropItem(f"item {key} was seen by an earlier run")
        if self.only == "changed" and status == "unchanged":
            raise DropItem(f"item {key} is unchanged since the last successful run")
        return item

    def _key(self, data: Mapping[Any, Any], digest: str) -> str:
        if self.key_field is not None:
            value = data.get(self.key_field)
            if value is not None:
                return str(value)
            self._warn_once(
                "key_field", "items without key field %r are keyed by crawl key", self.key_field
            )
        return item_key() or digest


class CookieKeeper:
    """Keeps a job's cookie jars between runs: a session hook (``crawler.downloader.sessions``).

    Give it to ``Crawler(session_hooks=[...])``: the saved jars are loaded into the
    crawl's sessions when they open, and saved again once the crawl has ended.
    """

    def __init__(self, state: JobState) -> None:
        self.state = state
        self.loaded = 0

    async def sessions_opened(self, pool: SessionPool) -> None:
        """Put the saved cookies into the crawl's jars."""
        self.loaded += await self.state.restore_cookies(pool)

    async def sessions_closing(self, pool: SessionPool) -> None:
        """Save the crawl's jars."""
        await self.state.save_cookies(pool.jars())
