"""SqliteFrontier beyond the shared contract: resume, crash safety, refusing foreign files,
locking, bounded memory, indexed queries, and the request codec."""

from __future__ import annotations

import asyncio
import datetime
import logging
import os
import random
import signal
import sqlite3
import ssl
import sys
import textwrap
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from multidict import CIMultiDict

from crawler import CrawlerError, Request, Spider
from crawler.errors import ConfigError
from crawler.fingerprint import fingerprint
from crawler.frontier import FrontierCounts, Lease, PolitenessPolicy
from crawler.frontier.codec import RequestCodec
from crawler.frontier.sqlite import APPLICATION_ID, SCHEMA_VERSION, SqliteFrontier, schema
from crawler.testing import ManualClock


class Books(Spider):
    name = "books"

    def parse(self, response: Any) -> None:
        pass

    def parse_book(self, response: Any) -> None:
        pass

    def on_error(self, failure: Any) -> None:
        pass


class Other(Spider):
    name = "other"

    def parse_book(self, response: Any) -> None:
        pass


Open = Callable[..., Awaitable[SqliteFrontier]]


@pytest.fixture
async def open_state(tmp_path: Path) -> AsyncIterator[Open]:
    """``await open_state(**kwargs)`` opens a SqliteFrontier on tmp_path/frontier.db;
    every one still open is closed after the test (aiosqlite threads must not leak)."""
    opened: list[SqliteFrontier] = []

    async def factory(path: Path | None = None, **kwargs: Any) -> SqliteFrontier:
        kwargs.setdefault("spider", Books())
        frontier = SqliteFrontier(path or tmp_path / "frontier.db", **kwargs)
        await frontier.open()
        opened.append(frontier)
        return frontier

    yield factory
    for frontier in opened:
        await frontier.close()


def req(path: str, host: str = "a.test", **kwargs: Any) -> Request:
    return Request(f"http://{host}{path}", **kwargs)


async def lease_now(frontier: SqliteFrontier) -> Lease:
    lease = await asyncio.wait_for(frontier.lease(), 5)
    assert lease is not None
    return lease


async def drain(frontier: SqliteFrontier) -> list[str]:
    urls = []
    while (lease := await asyncio.wait_for(frontier.lease(), 5)) is not None:
        urls.append(lease.request.url)
        await frontier.ack(lease)
    return urls


# -- resume -------------------------------------------------------------------------------


async def test_close_without_a_checkpoint_does_not_mark_requests_done(
    open_state: Open, tmp_path: Path
) -> None:
    # An output failed, so the engine skipped its last checkpoint: nothing acked since the
    # previous one may become durable on the way out, or its items would be lost.
    frontier = await open_state()
    await frontier.push([req(f"/{n}") for n in range(3)])
    await frontier.ack(await lease_now(frontier))
    frontier.set_marks({"outputs": "after"})
    await frontier.close()
    again = await open_state(tmp_path / "frontier.db")
    assert await again.counts() == FrontierCounts(queued=3, in_flight=0, done=0, failed=0)
    assert await again.load_marks() == {}


async def test_marks_are_written_with_the_acks_of_the_same_flush(
    open_state: Open, tmp_path: Path
) -> None:
    frontier = await open_state()
    await frontier.push([req(f"/{n}") for n in range(3)])
    await frontier.ack(await lease_now(frontier))
    frontier.set_marks({"outputs": '{"a": 1}'})
    await frontier.flush()
    await frontier.ack(await lease_now(frontier))
    frontier.set_marks({"outputs": '{"a": 2}'})  # set, but never flushed
    await frontier.close()
    again = await open_state(tmp_path / "frontier.db")
    assert await again.load_marks() == {"outputs": '{"a": 1}'}
    assert (await again.counts()).done == 1


async def test_resume_keeps_pending_requeues_leased_and_skips_done(
    open_state: Open, tmp_path: Path
) -> None:
    frontier = await open_state()
    await frontier.push([req(f"/{n}", priority=-n) for n in range(6)])
    done, failed, in_flight = [await lease_now(frontier) for _ in range(3)]
    await frontier.ack(done)
    await frontier.fail(failed, "timeout")
    assert in_flight.request.url == "http://a.test/2"
    await frontier.flush()  # the engine's checkpoint: done and failed become durable
    await frontier.close()  # /2 is still leased: it was in flight when the crawl stopped

    again = await open_state(tmp_path / "frontier.db")
    assert await again.counts() == FrontierCounts(queued=4, in_flight=0, done=1, failed=1)
    # the de-duplication set survived, for done, failed and queued requests alike
    assert await again.push([req(f"/{n}") for n in range(6)]) == [False] * 6
    assert await drain(again) == [f"http://a.test/{n}" for n in range(2, 6)]
    assert await again.is_finished()


async def test_callbacks_meta_and_retries_survive_a_restart(
    open_state: Open, tmp_path: Path
) -> None:
    spider = Books()
    frontier = await open_state(spider=spider)
    await frontier.push(
        [
            req("/book", callback=spider.parse_book, errback=spider.on_error, meta={"n": 1}),
            req("/flaky", priority=5),
        ]
    )
    flaky = await lease_now(frontier)
    flaky.request.meta["retry_times"] = 1
    await frontier.retry(flaky, 3600.0)
    await frontier.close()

    resumed = Books()
    again = await open_state(tmp_path / "frontier.db", spider=resumed)
    assert await again.counts() == FrontierCounts(queued=2, in_flight=0, done=0, failed=0)
    first, second = await lease_now(again), await lease_now(again)  # the retry delay was served
    assert first.request.url == "http://a.test/flaky"
    assert first.request.meta == {"retry_times": 1}
    assert second.request.callback == resumed.parse_book
    assert second.request.errback == resumed.on_error
    assert second.request.meta == {"n": 1}


async def test_seen_fingerprints_and_dont_filter_copies_survive_a_restart(
    open_state: Open, tmp_path: Path
) -> None:
    frontier = await open_state()
    assert await frontier.add_seen(fingerprint(req("/redirected")))
    await frontier.push([req("/twice"), req("/twice", dont_filter=True, meta={"copy": 1})])
    await frontier.close()

    again = await open_state(tmp_path / "frontier.db")
    assert await again.add_seen(fingerprint(req("/redirected"))) is False
    assert await again.push([req("/redirected"), req("/twice")]) == [False, False]
    leases = [await lease_now(again), await lease_now(again)]
    assert [lease.request.meta for lease in leases] == [{}, {"copy": 1}]
    assert {lease.fingerprint for lease in leases} == {fingerprint(req("/twice"))}


async def test_requests_with_a_callback_the_spider_lost_are_failed_not_fatal(
    open_state: Open, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    books = Books()
    frontier = await open_state(spider=books)
    await frontier.push([req("/gone", callback=books.on_error), req("/kept")])
    await frontier.close()

    again = await open_state(tmp_path / "frontier.db", spider=Other())
    with caplog.at_level(logging.ERROR, "crawler.frontier"):
        assert await drain(again) == ["http://a.test/kept"]
    assert await again.counts() == FrontierCounts(queued=0, in_flight=0, done=1, failed=1)
    assert "'on_error'" in caplog.text and "Other has no such method" in caplog.text


CHILD = textwrap.dedent(
    """
    import asyncio, os, signal, sys
    from crawler import Request
    from crawler.frontier.sqlite import SqliteFrontier

    async def main(path):
        frontier = SqliteFrontier(path, flush_interval_s=0.05)
        await frontier.open()
        await frontier.push([Request(f"http://h{n % 5}.test/{n}") for n in range(100)])
        leases = [await frontier.lease() for _ in range(10)]
        for lease in leases[:5]:
            await frontier.ack(lease)
        await asyncio.sleep(0.3)  # the flush interval passes: these acks are on disk
        for lease in leases[5:7]:
            await frontier.ack(lease)  # acked just before the crash: not written yet
        print(" ".join(lease.request.url for lease in leases), flush=True)
        os.kill(os.getpid(), signal.SIGKILL)

    asyncio.run(main(sys.argv[1]))
    """
)


async def test_kill_9_loses_at_most_the_last_flush_interval(
    open_state: Open, tmp_path: Path
) -> None:
    path = tmp_path / "frontier.db"
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-c", CHILD, str(path), stdout=asyncio.subprocess.PIPE
    )
    out, _ = await asyncio.wait_for(child.communicate(), 30)
    assert child.returncode == -signal.SIGKILL
    leased = out.decode().split()
    assert len(leased) == 10

    frontier = await open_state(path, spider=None)
    assert await frontier.counts() == FrontierCounts(queued=95, in_flight=0, done=5, failed=0)
    redelivered = await drain(frontier)
    assert len(redelivered) == 95
    assert set(leased[:5]).isdisjoint(redelivered)  # acked and flushed: never fetched again
    assert set(leased[5:]) <= set(redelivered)  # in flight or acked unflushed: at least once
    assert (
        await frontier.push([Request(f"http://h{n % 5}.test/{n}") for n in range(100)])
        == [False] * 100
    )


CHECKPOINTED_CHILD = textwrap.dedent(
    """
    import asyncio, math, os, signal, sys
    from crawler import Request
    from crawler.frontier.sqlite import SqliteFrontier

    async def main(path, checkpoint_after):
        # As the engine runs it: only explicit flushes (checkpoints) write DONE marks.
        frontier = SqliteFrontier(path, window=4, flush_ops=2**62, flush_interval_s=math.inf)
        await frontier.open()
        await frontier.push([Request(f"http://a.test/{n}") for n in range(40)])
        for n in range(20):  # small windows: many refills, each writes what it must read
            lease = await frontier.lease()
            await frontier.ack(lease)
            if n + 1 == checkpoint_after:
                await frontier.flush()
        os.kill(os.getpid(), signal.SIGKILL)

    asyncio.run(main(sys.argv[1], int(sys.argv[2])))
    """
)


@pytest.mark.parametrize("checkpoint_after", [0, 7])
async def test_done_marks_wait_for_a_full_flush(
    open_state: Open, tmp_path: Path, checkpoint_after: int
) -> None:
    path = tmp_path / "frontier.db"
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-c", CHECKPOINTED_CHILD, str(path), str(checkpoint_after)
    )
    assert await asyncio.wait_for(child.wait(), 30) == -signal.SIGKILL
    frontier = await open_state(path, spider=None)
    # Refills wrote the pushes and leases they needed to read, never a DONE mark.
    done = checkpoint_after
    assert await frontier.counts() == FrontierCounts(40 - done, 0, done, 0)
    assert len(await drain(frontier)) == 40 - done


async def test_a_crawl_is_seeded_once(open_state: Open, tmp_path: Path) -> None:
    path = tmp_path / "frontier.db"
    frontier = await open_state(path)
    assert await frontier.claim_seed()
    await frontier.push([req("/start")])
    await frontier.close()  # killed while seeding (no seed_done): seed again on resume
    again = await open_state(path)
    assert await again.claim_seed()
    assert await again.push([req("/start"), req("/other-start")]) == [False, True]
    await again.seed_done()
    await again.close()
    resumed = await open_state(path)
    assert not await resumed.claim_seed()
    await resumed.reset()
    assert await resumed.claim_seed()


# -- refusing files that are not ours -----------------------------------------------------


def _sqlite_file(path: Path, *statements: str) -> None:
    db = sqlite3.connect(path)
    for statement in statements:
        db.execute(statement)
    db.commit()
    db.close()


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        (lambda p: p.write_bytes(os.urandom(8192)), "not a crawl state file"),
        (lambda p: p.write_text("name,price\nbook,3\n"), "not a crawl state file"),
        (
            lambda p: _sqlite_file(p, "CREATE TABLE items (id INTEGER, name TEXT)"),
            "another application",
        ),
        (
            lambda p: _sqlite_file(p, "PRAGMA application_id = 1234", "CREATE TABLE t (x)"),
            "another application",
        ),
        (
            lambda p: _sqlite_file(
                p, f"PRAGMA application_id = {APPLICATION_ID}", "PRAGMA user_version = 99"
            ),
            "schema version 99, newer than this crawler understands",
        ),
    ],
    ids=["random-bytes", "text", "other-app-tables", "other-application-id", "newer-schema"],
)
async def test_foreign_files_are_refused_and_left_alone(
    tmp_path: Path, setup: Callable[[Path], None], message: str
) -> None:
    path = tmp_path / "frontier.db"
    setup(path)
    before = path.read_bytes()
    frontier = SqliteFrontier(path)
    with pytest.raises(ConfigError, match=message) as raised:
        await frontier.open()
    assert str(path) in str(raised.value)
    with pytest.raises(ConfigError, match=message):
        await frontier.reset()  # --restart must not wipe somebody else's file either
    assert path.read_bytes() == before


async def test_a_path_that_cannot_be_created_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot open crawl state"):
        await SqliteFrontier(tmp_path / "missing" / "frontier.db").open()


async def test_a_second_crawl_on_the_same_state_is_refused(
    open_state: Open, tmp_path: Path
) -> None:
    path = tmp_path / "frontier.db"
    first = await open_state(path)
    await first.push([req("/1")])
    second = SqliteFrontier(path)
    with pytest.raises(ConfigError, match="is in use by another crawl"):
        await second.open()
    await first.close()
    await second.open()
    try:
        assert (await second.counts()).queued == 1
    finally:
        await second.close()


async def test_the_file_says_what_it_is(open_state: Open, tmp_path: Path) -> None:
    frontier = await open_state()
    await frontier.close()
    db = sqlite3.connect(tmp_path / "frontier.db")
    try:
        assert db.execute("PRAGMA application_id").fetchone() == (APPLICATION_ID,)
        assert db.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
        assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        meta = dict(db.execute("SELECT key, value FROM meta"))
        assert meta == {"application": "crawler frontier", "schema_version": str(SCHEMA_VERSION)}
    finally:
        db.close()


# -- finished, reset, flush ------------------------------------------------------------------


async def test_is_finished_and_reset(open_state: Open, tmp_path: Path) -> None:
    frontier = await open_state()
    assert not await frontier.is_finished()
    await frontier.push([req("/1"), req("/2")])
    assert not await frontier.is_finished()
    assert len(await drain(frontier)) == 2
    assert await frontier.is_finished()
    await frontier.close()

    closed = SqliteFrontier(tmp_path / "frontier.db")
    await closed.reset()  # a closed frontier opens, wipes and closes the file
    again = await open_state(tmp_path / "frontier.db")
    assert not await again.is_finished()
    assert await again.counts() == FrontierCounts(0, 0, 0, 0)
    assert await again.push([req("/1")]) == [True]
    await again.reset()  # an open one is wiped in place
    assert await again.counts() == FrontierCounts(0, 0, 0, 0)
    assert await again.push([req("/1")]) == [True]
    assert await drain(again) == ["http://a.test/1"]


async def test_buffered_writes_are_flushed_after_the_interval(open_state: Open) -> None:
    clock = ManualClock()
    frontier = await open_state(clock=clock, flush_interval_s=2.0)
    await frontier.push([req("/1")])
    await frontier.ack(await lease_now(frontier))
    assert frontier._file.updates  # buffered
    await clock.advance(1.0)
    assert frontier._file.updates
    await clock.advance(1.0)  # the timer wakes the flusher task
    for _ in range(5000):  # the flush runs on aiosqlite's thread
        if not (frontier._file.updates or frontier._file.inserts):
            break
        await asyncio.sleep(0.001)
    assert not (frontier._file.updates or frontier._file.inserts)


async def test_a_full_buffer_is_flushed_at_once(open_state: Open) -> None:
    frontier = await open_state(flush_ops=10)
    await frontier.push([req(f"/{n}") for n in range(9)])
    assert len(frontier._file.inserts) == 9
    await frontier.push([req("/9")])
    assert not frontier._file.inserts


# -- bounded memory, indexed queries --------------------------------------------------------


async def drain_concurrently(
    frontier: SqliteFrontier, workers: int, bound: int
) -> tuple[list[str], int]:
    seen: list[str] = []
    peak = 0

    async def worker() -> None:
        nonlocal peak
        while (lease := await frontier.lease()) is not None:
            peak = max(peak, frontier.loaded_count())
            assert frontier.loaded_count() <= bound
            seen.append(lease.request.url)
            await asyncio.sleep(0)
            await frontier.ack(lease)

    async with asyncio.timeout(120):
        await asyncio.gather(*(worker() for _ in range(workers)))
    return seen, peak


async def test_20k_requests_over_50_hosts_keep_a_bounded_window(open_state: Open) -> None:
    frontier = await open_state(policy=PolitenessPolicy(per_host=8), window=16)
    hosts = [f"host{n}.test" for n in range(50)]
    pushed = [f"http://{hosts[n % 50]}/page/{n}" for n in range(20_000)]
    for start in range(0, len(pushed), 1000):
        await frontier.push([Request(url) for url in pushed[start : start + 1000]])
        assert frontier.loaded_count() <= 50 * 16
    assert await frontier.counts() == FrontierCounts(20_000, 0, 0, 0)
    seen, peak = await drain_concurrently(frontier, workers=64, bound=50 * 16)
    assert len(seen) == 20_000 and set(seen) == set(pushed)
    assert 0 < peak <= 50 * 16
    assert await frontier.counts() == FrontierCounts(0, 0, 20_000, 0)
    assert await frontier.is_finished()


async def test_max_loaded_caps_memory_across_hosts(open_state: Open, tmp_path: Path) -> None:
    frontier = await open_state(
        policy=PolitenessPolicy(per_host=4), window=16, max_loaded=100, flush_ops=64
    )
    pushed = [f"http://host{n % 50}.test/{n}" for n in range(2000)]
    for start in range(0, len(pushed), 500):
        await frontier.push([Request(url) for url in pushed[start : start + 500]])
        assert frontier.loaded_count() <= 100
    seen, _ = await drain_concurrently(frontier, workers=32, bound=100 + 16)
    assert sorted(seen) == sorted(pushed)
    assert await frontier.counts() == FrontierCounts(0, 0, 2000, 0)


async def test_reopening_a_big_queue_loads_nothing_until_a_host_is_picked(
    open_state: Open, tmp_path: Path
) -> None:
    path = tmp_path / "frontier.db"
    frontier = await open_state(path)
    await frontier.push([req(f"/{n}", f"h{n % 20}.test", priority=n % 3) for n in range(2000)])
    await frontier.close()
    again = await open_state(path)
    assert again.loaded_count() == 0
    lease = await lease_now(again)
    assert lease.request.priority == 2 and lease.request.url == "http://h2.test/2"
    assert again.loaded_count() <= 16


def test_hot_queries_use_the_indexes(tmp_path: Path) -> None:
    path = tmp_path / "plan.db"
    db = sqlite3.connect(path, isolation_level=None)
    db.executescript(schema.SCHEMA)
    queries = [
        schema.BEST,
        schema.AFTER,
        schema.DUE,
        schema.SET_STATE,
        schema.SET_DELAYED,
        schema.SET_PENDING,
        "SELECT fp FROM requests WHERE fp IN (?, ?, ?)",
    ]
    try:
        for sql in queries:
            plan = " | ".join(
                row[3] for row in db.execute(f"EXPLAIN QUERY PLAN {sql}", [1] * sql.count("?"))
            )
            assert "SEARCH" in plan and "SCAN" not in plan and "TEMP B-TREE" not in plan, (
                sql,
                plan,
            )
    finally:
        db.close()


# -- the codec ---------------------------------------------------------------------------------


def test_codec_round_trips_every_stored_field() -> None:
    spider = Books()
    codec = RequestCodec(spider)
    original = Request(
        "http://a.test/search?q=1",
        callback=spider.parse_book,
        method="post",
        headers=CIMultiDict([("Accept", "a"), ("X-Tag", "1"), ("X-Tag", "2")]),
        cookies={"session": "s"},
        data={"q": "books", "page": 2},
        meta={"depth_hint": [1, 2], "nested": {"ok": True}, "none": None},
        priority=7,
        dont_filter=True,
        errback=spider.on_error,
        proxy="http://user:pw@proxy.test:8080",
        ssl=False,
        allow_redirects=False,
        depth=3,
    )
    copy = codec.decode(codec.encode(original))
    for name in ("url", "method", "cookies", "data", "meta", "priority", "dont_filter"):
        assert getattr(copy, name) == getattr(original, name), name
    for name in ("proxy", "ssl", "allow_redirects", "depth", "json"):
        assert getattr(copy, name) == getattr(original, name), name
    assert list(copy.headers.items()) == list(original.headers.items())  # type: ignore[union-attr]
    assert copy.callback == spider.parse_book and copy.errback == spider.on_error
    assert fingerprint(copy) == fingerprint(original)


@pytest.mark.parametrize("body", [b"\x00\xffraw", "text body", {"k": "v"}])
def test_codec_keeps_the_body_type(body: Any) -> None:
    codec = RequestCodec(None)
    copy = codec.decode(codec.encode(Request("http://a.test/", method="PUT", data=body)))
    assert copy.data == body and type(copy.data) is type(body)
    as_json = codec.decode(codec.encode(Request("http://a.test/", method="POST", json=[1, "a"])))
    assert as_json.json == [1, "a"] and as_json.data is None


def test_codec_defaults_stay_defaults_and_ssl_contexts_are_not_stored() -> None:
    codec = RequestCodec(None)
    plain = Request("http://a.test/")
    assert codec.encode(plain) == b'{"u":"http://a.test/"}'
    copy = codec.decode(codec.encode(Request("http://a.test/", ssl=ssl.create_default_context())))
    assert copy.ssl is None and copy.headers is None and copy.meta == {}


async def test_non_method_callbacks_are_refused_at_push(open_state: Open) -> None:
    frontier = await open_state()
    with pytest.raises(CrawlerError, match="callbacks must be spider methods to be stored"):
        await frontier.push([req("/ok"), req("/lambda", callback=lambda response: None)])
    with pytest.raises(CrawlerError, match="not a method of spider Books"):
        await frontier.push([req("/other", callback=Other().parse_book)])
    assert await frontier.counts() == FrontierCounts(0, 0, 0, 0)  # the whole batch was refused
    assert await frontier.push([req("/ok")]) == [True]


def test_codec_refuses_what_it_cannot_store_with_the_reason() -> None:
    codec = RequestCodec(None)
    with pytest.raises(CrawlerError, match="no spider"):
        codec.encode(Request("http://a.test/", callback=Books().parse))
    with pytest.raises(CrawlerError, match="JSON-able"):
        codec.encode(Request("http://a.test/", meta={"when": datetime.datetime.now()}))
    with pytest.raises(CrawlerError, match="JSON-able"):
        codec.encode(Request("http://a.test/", meta={"obj": object()}))
    with pytest.raises(CrawlerError, match="data of type list"):
        codec.encode(Request("http://a.test/", method="POST", data=[("a", "1")]))


async def test_chaos_of_workers_retries_pushes_and_cancellations(open_state: Open) -> None:
    """Real clock, tiny windows and batches, workers cancelled while they wait in lease():
    every request is handled once (after its retries), never twice at the same time."""
    rng = random.Random(5)
    frontier = await open_state(
        policy=PolitenessPolicy(per_host=2), window=3, max_loaded=12, flush_ops=7
    )
    hosts = [f"h{n}.test" for n in range(12)]
    accepted = sum(await frontier.push([req(f"/{n}", rng.choice(hosts)) for n in range(300)]))
    finished: dict[str, str] = {}
    cancelled = 0
    in_flight: set[str] = set()
    per_host: dict[str, int] = {}
    leasing: set[asyncio.Task[None]] = set()

    async def worker() -> None:
        nonlocal accepted
        task = asyncio.current_task()
        assert task is not None
        while True:
            leasing.add(task)
            try:
                lease = await frontier.lease()
            finally:
                leasing.discard(task)
            if lease is None:
                return
            url = lease.request.url
            assert url not in in_flight and url not in finished
            in_flight.add(url)
            per_host[lease.host] = per_host.get(lease.host, 0) + 1
            assert per_host[lease.host] <= 2
            await asyncio.sleep(0)
            if rng.random() < 0.3:
                child = req(f"/c{rng.randint(0, 400)}", rng.choice(hosts))
                new = sum(await frontier.push([child]))
                accepted += new  # (not `+= await`: that reads `accepted` before awaiting)
            in_flight.discard(url)
            per_host[lease.host] -= 1
            roll = rng.random()
            if roll < 0.15 and lease.request.meta.get("tries", 0) < 2:
                lease.request.meta["tries"] = lease.request.meta.get("tries", 0) + 1
                await frontier.retry(lease, rng.choice([0.0, 0.002]))
            elif roll < 0.25:
                finished[url] = "failed"
                await frontier.fail(lease, "x")
            else:
                finished[url] = "done"
                await frontier.ack(lease)

    async with asyncio.timeout(60):
        workers = {asyncio.create_task(worker()) for _ in range(12)}
        while any(not task.done() for task in workers):
            await asyncio.sleep(rng.choice([0, 0.0005, 0.001]))
            waiting = sorted(leasing, key=id)
            if waiting and rng.random() < 0.5:
                rng.choice(waiting).cancel()  # a worker stopped mid-lease (or mid-refill)
                cancelled += 1
                workers.add(asyncio.create_task(worker()))
        results = await asyncio.gather(*workers, return_exceptions=True)
    assert [r for r in results if not isinstance(r, asyncio.CancelledError | None)] == []
    assert cancelled > 20 and len(finished) == accepted
    done = sum(1 for v in finished.values() if v == "done")
    assert await frontier.counts() == FrontierCounts(0, 0, done, len(finished) - done)
    assert await frontier.is_finished()
