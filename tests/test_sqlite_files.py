"""The one SQLite opener (``crawler.storage.open_database``) over every file of ours.

Each kind (a crawl's ``state.db``, the frontier's ``frontier.db``, the jobs'
``history.db`` and ``job.db``) refuses, without writing to it, a file that is not
SQLite or is damaged, another application's database, another of our kinds, a
newer schema; and reports a file another crawl holds as in use. Cookie jars are
saved by the same code in ``state.db`` and ``job.db``.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
from collections.abc import Callable
from contextlib import closing
from pathlib import Path

import pytest
from aiohttp.abc import AbstractCookieJar
from yarl import URL

from crawler.cli.project import ProjectConfig
from crawler.downloader.cookies import make_cookie_jar
from crawler.errors import ConfigError
from crawler.frontier.sqlite import FRONTIER_FILE, SqliteFrontier
from crawler.jobs import ExitCode, JobPaths, JobState, RunHistory, parse_jobs, run_job
from crawler.jobs.history import HISTORY_FILE
from crawler.jobs.incremental import JOB_STATE_FILE
from crawler.storage import STATE_FILE, DatabaseKind, StateStore, load_cookies, open_database

KINDS = {
    "state": STATE_FILE,
    "frontier": FRONTIER_FILE,
    "history": HISTORY_FILE,
    "job": JOB_STATE_FILE,
}


async def open_kind(path: Path, kind: DatabaseKind, *, exclusive: bool = False) -> None:
    db = await open_database(path, kind, busy_timeout_s=0.2, exclusive=exclusive)
    await db.close()


def sqlite_file(path: Path, *statements: str) -> None:
    with closing(sqlite3.connect(path)) as db:
        for statement in statements:
            db.execute(statement)
        db.commit()


def damaged(path: Path) -> None:
    """A real SQLite file whose schema page is overwritten."""
    sqlite_file(path, "CREATE TABLE t (x)", "INSERT INTO t VALUES (1)")
    data = bytearray(path.read_bytes())
    data[100:1000] = os.urandom(900)
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("name", list(KINDS))
@pytest.mark.parametrize(
    ("setup", "message"),
    [
        (lambda p: p.write_bytes(os.urandom(8192)), "is not a {noun} "),
        (lambda p: p.write_text("name,price\nbook,3\n"), "is not a {noun} "),
        (damaged, "is not a {noun} "),
        (
            lambda p: sqlite_file(p, "CREATE TABLE accounts (id INTEGER, balance INTEGER)"),
            "another application \\(tables \\['accounts'\\]\\), not a {noun}",
        ),
        (
            lambda p: sqlite_file(p, "PRAGMA application_id = 1234", "CREATE TABLE t (x)"),
            "another application \\(application_id 0x000004d2\\)",
        ),
    ],
    ids=["random-bytes", "text", "damaged-sqlite", "foreign-tables", "foreign-application-id"],
)
async def test_what_is_not_ours_is_refused_and_left_alone(
    tmp_path: Path, name: str, setup: Callable[[Path], None], message: str
) -> None:
    kind = KINDS[name]
    path = tmp_path / f"{name}.db"
    setup(path)
    before = path.read_bytes()
    with pytest.raises(ConfigError, match=message.format(noun=kind.noun)) as raised:
        await open_kind(path, kind)
    text = str(raised.value)
    assert str(path) in text and kind.remedy in text and "\n" not in text
    assert path.read_bytes() == before


@pytest.mark.parametrize(
    ("given", "expected"),
    [("frontier", "state"), ("state", "frontier"), ("history", "job"), ("job", "history")],
)
async def test_another_of_our_kinds_is_refused(tmp_path: Path, given: str, expected: str) -> None:
    path = tmp_path / f"{given}.db"
    await open_kind(path, KINDS[given])  # a real file of that kind
    before = path.read_bytes()
    kind = KINDS[expected]
    with pytest.raises(ConfigError, match=f"another application .*, not a {kind.noun};"):
        await open_kind(path, kind)
    assert path.read_bytes() == before


async def test_a_frontier_file_given_as_crawl_state_names_what_it_is(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    frontier = SqliteFrontier(path)
    await frontier.open()
    await frontier.close()
    with pytest.raises(ConfigError, match="application_id 0x63726177 'craw'"):
        await StateStore(path).open()


@pytest.mark.parametrize("name", list(KINDS))
async def test_a_newer_schema_is_refused(tmp_path: Path, name: str) -> None:
    kind = KINDS[name]
    path = tmp_path / f"{name}.db"
    await open_kind(path, kind)
    sqlite_file(path, f"PRAGMA user_version = {kind.version + 1}")
    with pytest.raises(ConfigError, match=f"schema version {kind.version + 1}, newer than this"):
        await open_kind(path, kind)


@pytest.mark.parametrize("name", list(KINDS))
async def test_an_incomplete_file_of_ours_is_refused(tmp_path: Path, name: str) -> None:
    kind = KINDS[name]
    path = tmp_path / f"{name}.db"
    sqlite_file(path, f"PRAGMA application_id = {kind.application_id}", "CREATE TABLE t (x)")
    with pytest.raises(ConfigError, match="it cannot be used"):
        await open_kind(path, kind)


@pytest.mark.parametrize("name", list(KINDS))
async def test_a_locked_file_is_reported_in_use(tmp_path: Path, name: str) -> None:
    kind = KINDS[name]
    path = tmp_path / f"{name}.db"
    holder = await open_database(path, kind, busy_timeout_s=0.2, exclusive=True)
    try:
        for exclusive in (True, False):
            with pytest.raises(ConfigError, match="is in use by another crawl") as raised:
                await open_kind(path, kind, exclusive=exclusive)
            assert str(path) in str(raised.value)
    finally:
        await holder.close()
    await open_kind(path, kind)  # free again


async def test_a_new_file_is_created_stamped_and_in_wal_mode(tmp_path: Path) -> None:
    for name, kind in KINDS.items():
        path = tmp_path / "sub" / f"{name}.db"
        db = await open_database(path, kind, busy_timeout_s=0.2, make_parents=True)
        [(mode,)] = await db.execute_fetchall("PRAGMA journal_mode")
        await db.close()
        assert mode == "wal"
        with closing(sqlite3.connect(path)) as check:
            assert check.execute("PRAGMA application_id").fetchone() == (kind.application_id,)
            assert check.execute("PRAGMA user_version").fetchone() == (kind.version,)
            tables = {row[0] for row in check.execute("SELECT name FROM sqlite_master")}
        assert kind.tables <= tables
        await open_kind(path, kind)  # and opens again


async def test_a_missing_folder_is_a_config_error_without_make_parents(
    tmp_path: Path,
) -> None:
    with pytest.raises(ConfigError, match=r"cannot open crawl state database .*missing"):
        await open_kind(tmp_path / "missing" / "state.db", STATE_FILE)


async def test_concurrent_openers_of_a_new_shared_file_all_succeed(tmp_path: Path) -> None:
    histories = [RunHistory(tmp_path / "history.db") for _ in range(6)]
    await asyncio.gather(*(history.open() for history in histories))
    for history in histories:
        await history.close()


# -- the jobs' incremental state (job.db) -------------------------------------------------


async def test_a_corrupt_job_state_is_refused_with_a_clear_message(tmp_path: Path) -> None:
    path = tmp_path / "job.db"
    path.write_bytes(b"not a database" * 500)
    with pytest.raises(ConfigError, match=r"is not a job state .*move it away"):
        async with JobState(path):
            pass
    assert path.read_bytes() == b"not a database" * 500


async def test_a_job_with_a_corrupt_job_state_exits_with_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "spider.py").write_text(
        "from crawler import Spider\n\nclass S(Spider):\n    name = 's'\n"
    )
    job = parse_jobs(
        {"shop": {"spider": "spider.py:S", "args": {"start_urls": "http://shop.test/"}}}, "test"
    )["shop"]
    paths = JobPaths(tmp_path / "state")
    paths.state("shop").parent.mkdir(parents=True)
    paths.state("shop").write_bytes(b"garbage" * 500)
    project = ProjectConfig(root=tmp_path, source="test project")
    async with RunHistory(paths.history) as history:
        outcome = await run_job(job, project, history, paths)
    assert outcome.exit_code == ExitCode.CONFIG
    assert outcome.record is not None and outcome.record.finish_reason == "config_error"
    assert f"{paths.state('shop')} is not a job state" in (outcome.record.error or "")
    assert paths.state("shop").read_bytes() == b"garbage" * 500


async def test_a_job_state_written_before_it_had_an_id_is_adopted(tmp_path: Path) -> None:
    path = tmp_path / "job.db"
    sqlite_file(
        path,
        "CREATE TABLE validators (url TEXT PRIMARY KEY, etag TEXT, last_modified TEXT,"
        " updated_at TEXT NOT NULL)",
        "CREATE TABLE items (key TEXT PRIMARY KEY, hash TEXT NOT NULL, first_seen TEXT NOT NULL,"
        " last_seen TEXT NOT NULL, first_run TEXT NOT NULL, last_run TEXT NOT NULL)",
        "CREATE TABLE cookies (jar TEXT PRIMARY KEY, data BLOB NOT NULL)",
        "INSERT INTO validators VALUES ('http://a.test/', '\"v1\"', NULL, 'then')",
    )
    async with JobState(path) as state:
        assert state.validators == {"http://a.test/": ('"v1"', None)}
    with closing(sqlite3.connect(path)) as check:
        assert check.execute("PRAGMA application_id").fetchone() == (0x43524C4A,)


# -- cookie jars: one format, one implementation --------------------------------------------


class Pool:
    """The part of the session pool cookie persistence uses."""

    def __init__(self) -> None:
        self.by_key: dict[str, AbstractCookieJar] = {}

    def jar_for_key(self, key: str) -> AbstractCookieJar:
        return self.by_key.setdefault(key, make_cookie_jar("strict"))


async def test_state_db_and_job_db_keep_cookies_the_same_way(tmp_path: Path) -> None:
    jar = make_cookie_jar("strict")
    jar.update_cookies_from_headers(
        ["host=1; Path=/a/; Max-Age=3600", "site=1; Domain=shop.co.uk; Path=/"],
        URL("http://www.shop.co.uk/a/page"),
    )
    store = StateStore(tmp_path / "state.db")
    await store.open()
    try:
        await store.save({}, {"shop.co.uk": jar})
        in_state = await load_cookies(store.db)
        state_pool = Pool()
        assert await store.restore_cookies(state_pool) == 2
    finally:
        await store.close()
    async with JobState(tmp_path / "job.db") as job_state:
        await job_state.save_cookies({"shop.co.uk": jar})
        in_job = await load_cookies(job_state.db)
        job_pool = Pool()
        assert await job_state.restore_cookies(job_pool) == 2
    assert in_state == in_job and len(in_state["shop.co.uk"]) == 2
    for pool in (state_pool, job_pool):
        restored = pool.by_key["shop.co.uk"]
        assert restored.host_only_cookies == {("www.shop.co.uk", "/a", "host")}
        url = URL("http://www.shop.co.uk/a/x")
        assert restored.filter_cookies(url).keys() == {"host", "site"}
