"""Run history and job locks: atomic claims, stale locks, one run per due time; incremental state."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from multidict import CIMultiDict, CIMultiDictProxy

from crawler import DropItem, Request, Response
from crawler.errors import ConfigError
from crawler.jobs import ConditionalRequests, Holder, ItemChanges, JobState, RunHistory
from crawler.jobs.incremental import content_hash
from crawler.pipeline import _current_item_key

T0 = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.moment = T0

    def __call__(self) -> datetime:
        return self.moment


@pytest.fixture
async def history(tmp_path):
    clock = Clock()
    async with RunHistory(tmp_path / "history.db", now=clock, stale_s=60) as history:
        history.clock = clock  # type: ignore[attr-defined]
        yield history


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


async def test_claim_records_a_run_and_holds_the_lock(history):
    me, other = Holder(), Holder()
    claim = await history.claim("books", "books", {"category": "poetry"}, me)
    assert claim.run_id and claim.run_id.startswith("20240301T120000Z-")
    busy = await history.claim("books", "books", {}, other)
    assert busy.run_id is None and "already running (pid" in busy.reason
    assert (await history.claim("other", "x", {}, other)).run_id  # locks are per job
    lock = await history.lock_info("books")
    assert lock and lock.run_id == claim.run_id and lock.pid == os.getpid()
    run = await history.get(claim.run_id)
    assert run and run.trigger == "manual" and run.scheduled_for == T0 and run.ended_at is None
    assert run.arguments == {"category": "poetry"}
    await history.release("books", other)  # not the holder: no effect
    assert await history.lock_info("books")
    await history.release("books", me)
    assert await history.lock_info("books") is None
    assert (await history.claim("books", "books", {}, other)).run_id


async def test_a_due_time_runs_once(history):
    due = T0 - timedelta(seconds=1)
    holder = Holder()
    first = await history.claim("books", "books", {}, holder, scheduled_for=due)
    assert first.run_id
    await history.release("books", holder)
    again = await history.claim("books", "books", {}, Holder(), scheduled_for=due)
    assert again.run_id is None and "already ran for" in again.reason
    later = await history.claim("books", "books", {}, Holder(), scheduled_for=due + timedelta(1))
    assert later.run_id
    assert await history.last_scheduled("books") == due + timedelta(1)


async def test_a_stale_heartbeat_lets_the_lock_be_taken_over(history):
    crashed = Holder(token="crashed", pid=os.getpid())  # alive pid: only the heartbeat tells
    old = await history.claim("books", "books", {}, crashed)
    history.clock.moment = T0 + timedelta(seconds=30)
    assert await history.heartbeat("books", crashed)
    history.clock.moment = T0 + timedelta(seconds=89)
    assert (await history.claim("books", "books", {}, Holder())).run_id is None
    history.clock.moment = T0 + timedelta(seconds=91)
    taken = await history.claim("books", "books", {}, Holder())
    assert taken.run_id and taken.stolen_from and taken.stolen_from.holder == "crashed"
    record = await history.get(old.run_id)
    assert (
        record
        and record.finish_reason == "crashed"
        and "no heartbeat for 61s" in (record.error or "")
    )
    assert not await history.heartbeat("books", crashed)  # the old holder learns it lost


async def test_a_dead_pid_on_this_host_frees_the_lock_at_once(history):
    gone = Holder(token="gone", pid=dead_pid())
    old = await history.claim("books", "books", {}, gone)
    taken = await history.claim("books", "books", {}, Holder())
    assert taken.run_id and taken.stolen_from and taken.stolen_from.pid == gone.pid
    record = await history.get(old.run_id)
    assert record and record.finish_reason == "crashed"
    assert f"pid {gone.pid} is gone" in (record.error or "")
    await history.db.execute("DELETE FROM locks")
    elsewhere = Holder(token="remote", pid=gone.pid, host="another-host")
    assert (await history.claim("books", "books", {}, elsewhere)).run_id
    # a pid on another host cannot be checked from here: only the heartbeat counts
    assert (await history.claim("books", "books", {}, Holder())).run_id is None


async def test_finish_and_read_back(history):
    holder = Holder()
    claim = await history.claim("books", "books", {}, holder)
    assert claim.run_id
    record = await history.get(claim.run_id)
    assert record is not None
    record.finish_reason, record.exit_code, record.items = "finished", 0, 3
    record.stats = {"pages": 4}
    record.item_counts = {"produced": 3}
    record.outputs = ["out/a.jsonl"]
    record.checks = [{"check": "min_items", "ok": True, "detail": "..."}]
    record.ended_at = T0 + timedelta(seconds=5)
    await history.finish(record)
    await history.release("books", holder)
    back = await history.last_run("books")
    assert back == record
    assert await history.last_success("books") == record
    assert back.to_dict()["ended_at"] == "2024-03-01T12:00:05+00:00"


async def test_concurrent_claims_from_separate_connections(tmp_path):
    """Many connections claim the same job at once: exactly one wins."""
    path = tmp_path / "history.db"
    histories = [RunHistory(path) for _ in range(6)]
    for history in histories:
        await history.open()
    try:
        claims = await asyncio.gather(
            *(h.claim("books", "books", {}, Holder(), scheduled_for=T0) for h in histories)
        )
    finally:
        for history in histories:
            await history.close()
    assert sum(1 for c in claims if c.run_id) == 1


async def test_foreign_database_is_refused(tmp_path):
    path = tmp_path / "history.db"
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA application_id=42")
        db.execute("CREATE TABLE t (x)")
    with pytest.raises(ConfigError, match="another application"):
        await RunHistory(path).open()


# -- incremental state, hooks and item changes ------------------------------------------------


def response(request: Request, status: int, **headers: str) -> Response:
    return Response(request.url, status, CIMultiDictProxy(CIMultiDict(headers)), b"", request)


async def test_hooks_send_validators_and_skip_304s(tmp_path):
    async with JobState(tmp_path / "job.db") as state:
        hooks = ConditionalRequests(state)
        first = Request("http://a.test/p")
        await hooks.before_fetch(first)
        assert first.headers is None  # nothing known yet
        assert await hooks.after_fetch(first, response(first, 200, ETag='"v1"'))
        other = Request("http://a.test/q")
        assert await hooks.after_fetch(
            other, response(other, 200, **{"Last-Modified": "Fri, 01 Mar 2024 10:00:00 GMT"})
        )
        listing = Request("http://a.test/", meta={"incremental": False})
        assert await hooks.after_fetch(listing, response(listing, 200, ETag='"l"'))
        await state.commit("run-1")
    async with JobState(tmp_path / "job.db") as state:
        assert set(state.validators) == {"http://a.test/p", "http://a.test/q"}
        hooks = ConditionalRequests(state)
        again = Request("http://a.test/p", headers={"Accept": "text/html"})
        await hooks.before_fetch(again)
        assert again.headers == {"Accept": "text/html", "If-None-Match": '"v1"'}
        assert not await hooks.after_fetch(again, response(again, 304))  # skip the callback
        assert again.meta["unchanged"] is True
        q = Request("http://a.test/q")
        await hooks.before_fetch(q)
        assert q.headers == {"If-Modified-Since": "Fri, 01 Mar 2024 10:00:00 GMT"}
        own = Request("http://a.test/p", headers={"if-none-match": "*"})
        await hooks.before_fetch(own)
        assert own.headers == {"if-none-match": "*"}  # the spider's own header wins
        post = Request("http://a.test/p", method="POST")
        await hooks.before_fetch(post)
        assert post.headers is None
        assert hooks.counts == {"conditional": 2, "unchanged": 1}
        # a page that stops sending validators is forgotten after a successful run
        assert await hooks.after_fetch(q, response(q, 200))
        await state.commit("run-2")
        assert set(state.validators) == {"http://a.test/p"}


async def test_told_spiders_get_304s(tmp_path):
    async with JobState(tmp_path / "job.db") as state:
        state.remember("http://a.test/p", '"v1"', None)
        await state.commit("run-1")
        hooks = ConditionalRequests(state, tell=True)
        request = Request("http://a.test/p", meta={"handle_httpstatus_list": [404]})
        await hooks.before_fetch(request)
        assert request.meta["handle_httpstatus_list"] == [404, 304]
        assert await hooks.after_fetch(request, response(request, 304))
        assert request.meta["unchanged"] is True
        per_request = ConditionalRequests(state)
        told = Request("http://a.test/p", meta={"handle_unchanged": True})
        await per_request.before_fetch(told)
        assert await per_request.after_fetch(told, response(told, 304))


async def test_uncommitted_runs_change_nothing(tmp_path):
    async with JobState(tmp_path / "job.db") as state:
        state.remember("http://a.test/p", '"v1"', None)
        state.saw_item("k", "h")
    async with JobState(tmp_path / "job.db") as state:
        assert state.validators == {} and state.hashes == {}


async def process(changes: ItemChanges, item: Any, key: str | None = None) -> Any:
    _current_item_key.set(key)
    try:
        return await changes.process_item(item, None)
    except DropItem:
        return None


async def test_item_changes_new_changed_unchanged(tmp_path):
    async with JobState(tmp_path / "job.db") as state:
        changes = ItemChanges(state, "changed", hash_field="hash")
        item = {"b": 1, "a": [1, 2]}
        out = await process(changes, dict(item), "page1:0")
        assert out["hash"] == content_hash({"a": [1, 2], "b": 1})  # key order does not matter
        await process(changes, {"x": 1}, "page2:0")
        await state.commit("run-1")
        assert changes.counts == {"new": 2, "changed": 0, "unchanged": 0}

        changes = ItemChanges(state, "changed", hash_field="hash")
        assert await process(changes, {"a": [1, 2], "b": 1, "hash": "stale"}, "page1:0") is None
        assert await process(changes, {"x": 2}, "page2:0") == {
            "x": 2,
            "hash": content_hash({"x": 2}),
        }
        assert await process(changes, {"y": 1}, "page3:0") is not None
        assert changes.counts == {"new": 1, "changed": 1, "unchanged": 1}

        only_new = ItemChanges(state, "new", key_field="id")
        assert await process(only_new, {"id": 7}) is not None
        assert await process(only_new, {"no_id": 1}) is not None  # keyed by its content
        everything = ItemChanges(state, "all")
        assert await process(everything, {"a": [1, 2], "b": 1}, "page1:0") is not None
    with pytest.raises(ValueError, match="only must be"):
        ItemChanges(state, "some")
