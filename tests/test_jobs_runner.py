"""Running a job end to end against a local shop whose content changes between runs.

The shop (a ``SiteServer``) serves an index page linking to product pages.
Products 1 and 2 answer with an ``ETag`` and honour ``If-None-Match``;
product 3 answers with ``Last-Modified`` and honours ``If-Modified-Since``.
The index sets a cookie on the first visit.
"""

from __future__ import annotations

import asyncio
import hashlib
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web

from crawler.cli.project import ProjectConfig
from crawler.jobs import ExitCode, Holder, JobConfig, JobPaths, RunHistory, parse_jobs, run_job
from crawler.testing import SiteServer

SPIDER = """
from crawler import Spider


class ShopSpider(Spider):
    name = "shop"

    def parse(self, response):
        for link in response.css("a.product"):
            yield response.follow(link, callback=self.parse_product)

    def parse_product(self, response):
        if response.status == 304:
            yield {"url": response.url, "unchanged": response.meta.get("unchanged")}
            return
        price = response.css_first(".price")
        yield {
            "url": response.url,
            "title": response.css_first("h1").text(),
            "price": price.text() if price is not None else None,
        }


class TellingShopSpider(ShopSpider):
    name = "telling_shop"
    handle_unchanged = True
"""


@dataclass
class Shop:
    """The shop's mutable content and what it saw."""

    server: SiteServer
    products: dict[str, dict[str, Any]]
    modified: dict[str, str] = field(default_factory=dict)
    gate: asyncio.Event = field(default_factory=asyncio.Event)
    product_hit: asyncio.Event = field(default_factory=asyncio.Event)

    def requests_to(self, path: str) -> list[Any]:
        return [r for r in self.server.requests if r.host == "shop.test" and r.path_qs == path]


def _product_html(product: dict[str, Any]) -> str:
    price = f'<p class="price">{product["price"]}</p>' if product.get("price") else ""
    return f"<html><body><h1>{product['title']}</h1>{price}</body></html>"


@asynccontextmanager
async def shop_site(
    extra_links: tuple[str, ...] = (),
) -> AsyncIterator[tuple[SiteServer, dict[str, dict[str, Any]]]]:
    """Yields the server and its products; the Shop object is ``server.shop``."""
    products = {
        "/p/1": {"title": "Apple", "price": "1.00"},
        "/p/2": {"title": "Banana", "price": "0.50"},
        "/p/3": {"title": "Cherry", "price": "3.00"},
    }
    server = SiteServer({"shop.test": {}})
    shop = Shop(server, products)
    shop.gate.set()
    server.shop = shop  # type: ignore[attr-defined]

    async def index(request: web.Request) -> web.Response:
        links = "".join(f'<a class="product" href="{p}">{p}</a>' for p in [*products, *extra_links])
        response = web.Response(text=f"<html><body>{links}</body></html>", content_type="text/html")
        if "visitor" not in request.cookies:
            response.set_cookie("visitor", "v1", max_age=3600)
        return response

    def product(path: str, use_etag: bool):
        async def handler(request: web.Request) -> web.Response:
            shop.product_hit.set()
            await shop.gate.wait()
            body = _product_html(products[path])
            if use_etag:
                etag = '"' + hashlib.sha1(body.encode()).hexdigest()[:12] + '"'
                if request.headers.get("If-None-Match") == etag:
                    return web.Response(status=304, headers={"ETag": etag})
                return web.Response(text=body, content_type="text/html", headers={"ETag": etag})
            modified = shop.modified.setdefault(path, "Fri, 01 Mar 2024 10:00:00 GMT")
            if request.headers.get("If-Modified-Since") == modified:
                return web.Response(status=304)
            return web.Response(
                text=body, content_type="text/html", headers={"Last-Modified": modified}
            )

        return handler

    server.pages["shop.test"] = {
        "/": index,
        "/p/1": product("/p/1", True),
        "/p/2": product("/p/2", True),
        "/p/3": product("/p/3", False),
    }
    async with server:
        yield server, products


async def first_product_request(shop: Shop, run_task: asyncio.Task[Any]) -> None:
    """Wait until a product page is being served (fail at once if the run ends first)."""
    hit = asyncio.ensure_future(shop.product_hit.wait())
    async with asyncio.timeout(10):
        await asyncio.wait({hit, run_task}, return_when=asyncio.FIRST_COMPLETED)
    hit.cancel()
    assert not run_task.done(), run_task.result()


def shop_of(server: SiteServer) -> Shop:
    return server.shop  # type: ignore[attr-defined,no-any-return]


def project_for(root: Path) -> ProjectConfig:
    (root / "shop_spider.py").write_text(SPIDER)
    return ProjectConfig(root=root, source="test project")


def job_for(server: SiteServer, spider: str = "ShopSpider", **table: Any) -> JobConfig:
    settings = {"RESOLVE": server.resolve_map(), "ROBOTSTXT_OBEY": False, "PROGRESS_INTERVAL": 0}
    settings.update(table.pop("settings", {}))
    declared = {
        "spider": f"shop_spider.py:{spider}",
        "args": {"start_urls": server.url("shop.test", "/")},
        "settings": settings,
        **table,
    }
    return parse_jobs({"shop": declared}, "test")["shop"]


async def run(job: JobConfig, root: Path, **kwargs: Any):
    paths = JobPaths(root / "state")
    async with RunHistory(paths.history) as history, asyncio.timeout(15):
        return await run_job(job, project_for(root), history, paths, **kwargs)


async def history_of(root: Path, job: str = "shop"):
    async with RunHistory(JobPaths(root / "state").history) as history:
        return await history.runs(job)


def jsonl(path: str) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in Path(path).read_bytes().splitlines()]


async def test_only_changed_emits_only_changed_items_and_history_has_both_runs(tmp_path):
    async with shop_site() as (server, products):
        job = job_for(server, outputs=["out/items-%(run_id)s.jsonl"], only_changed=True)
        first = await run(job, tmp_path)
        products["/p/2"]["price"] = "0.45"
        second = await run(job, tmp_path)
    assert first.exit_code == second.exit_code == ExitCode.OK
    assert first.record and second.record
    assert len(jsonl(first.record.outputs[0])) == 3
    emitted = jsonl(second.record.outputs[0])
    assert [(i["url"].endswith("/p/2"), i["price"]) for i in emitted] == [(True, "0.45")]
    assert second.record.item_counts["emitted"] == 1
    assert second.record.item_counts["dropped"] == second.record.item_counts["unchanged"]
    runs = await history_of(tmp_path)
    assert [r.run_id for r in runs] == [second.run_id, first.run_id]
    assert runs[1].item_counts["new"] == 3 and runs[1].items == 3
    assert runs[0].spider == "shop" and runs[0].trigger == "manual"
    assert runs[0].finish_reason == "finished" and runs[0].exit_code == 0
    assert runs[0].outputs == second.record.outputs and "pages" in runs[0].stats
    assert runs[0].arguments == {"start_urls": server.url("shop.test", "/")}
    assert runs[0].ended_at is not None and runs[0].ended_at >= runs[0].started_at


async def test_only_new_emits_items_never_seen(tmp_path):
    async with shop_site() as (server, products):
        job = job_for(
            server, outputs=["out/%(job)s-%(run_id)s.jsonl"], only_new=True, key_field="url"
        )
        await run(job, tmp_path)
        products["/p/1"]["price"] = "2.00"  # changed, but not new
        second = await run(job, tmp_path)
    assert second.record and second.record.items == 0
    assert second.record.item_counts == {
        "produced": 3, "emitted": 0, "dropped": 3, "new": 0, "changed": 1, "unchanged": 2
    }  # fmt: skip


async def test_second_run_sends_conditional_headers_and_skips_unchanged_pages(tmp_path):
    async with shop_site() as (server, products):
        shop = shop_of(server)
        job = job_for(
            server, outputs=["out/items-%(run_id)s.jsonl"], incremental=True, only_changed=True
        )
        first = await run(job, tmp_path)
        products["/p/2"]["title"] = "Banana (ripe)"
        second = await run(job, tmp_path)
    assert first.exit_code == second.exit_code == 0
    assert second.record is not None
    p1, p2, p3 = (shop.requests_to(f"/p/{n}") for n in (1, 2, 3))
    assert "If-None-Match" not in p1[0].headers  # the first run knew nothing
    assert p1[1].headers["If-None-Match"] and p2[1].headers["If-None-Match"]
    assert p3[1].headers["If-Modified-Since"] == "Fri, 01 Mar 2024 10:00:00 GMT"
    assert "If-None-Match" not in shop.requests_to("/")[1].headers  # no validators: no condition
    stats = second.record.stats
    assert stats["status/304"] == 2 and stats["incremental/unchanged"] == 2
    assert stats["incremental/conditional"] == 3
    assert second.record.item_counts["produced"] == 1  # the 304s' callbacks did not run
    assert [i["title"] for i in jsonl(second.record.outputs[0])] == ["Banana (ripe)"]
    runs = await history_of(tmp_path)
    assert len(runs) == 2


async def test_a_spider_can_ask_to_be_told_about_unchanged_pages(tmp_path):
    async with shop_site() as (server, _products):
        job = job_for(server, "TellingShopSpider", incremental=True)
        await run(job, tmp_path)
        second = await run(job, tmp_path)
    assert second.record is not None
    assert second.record.item_counts["produced"] == 3
    assert second.record.stats["incremental/unchanged"] == 3


async def test_cookies_persist_between_runs(tmp_path):
    async with shop_site() as (server, _products):
        shop = shop_of(server)
        job = job_for(server)
        await run(job, tmp_path)
        await run(job, tmp_path)
        no_cookies = job_for(server, keep_cookies=False)
        await run(no_cookies, tmp_path)
    first, second, third = shop.requests_to("/")
    assert "Cookie" not in first.headers
    assert second.headers["Cookie"] == "visitor=v1"
    assert "Cookie" not in third.headers


async def test_failed_health_check_exits_4_is_recorded_and_keeps_items_new(tmp_path):
    async with shop_site() as (server, products):
        products["/p/3"]["price"] = None
        job = job_for(
            server,
            only_new=True,
            checks={"min_items": 3, "required_fields": {"title": 1.0, "price": 0.9}},
        )
        failed = await run(job, tmp_path)
        products["/p/3"]["price"] = "3.10"
        passed = await run(job, tmp_path)
    assert failed.exit_code == ExitCode.HEALTH_CHECK == 4
    assert failed.record is not None
    assert failed.record.finish_reason == "checks_failed"
    assert [(c["check"], c["ok"]) for c in failed.record.checks] == [
        ("min_items", True),
        ("required_fields.title", True),
        ("required_fields.price", False),
    ]
    assert "present in 2 of 3 items (66.7%)" in failed.record.checks[2]["detail"]
    # a failed run is not the reference for "new": the next run emits everything again
    assert passed.exit_code == 0 and passed.record and passed.record.items == 3
    runs = await history_of(tmp_path)
    assert [r.exit_code for r in runs] == [0, 4]
    assert runs[1].checks == failed.record.checks


async def test_crawl_errors_over_the_threshold_exit_5(tmp_path):
    async with shop_site(extra_links=("/gone/1", "/gone/2")) as (server, _products):
        job = job_for(server, checks={"max_error_rate": 0.2, "min_items": 1})
        outcome = await run(job, tmp_path)
    assert outcome.exit_code == ExitCode.CRAWL_ERRORS == 5
    assert outcome.record is not None and outcome.record.finish_reason == "too_many_errors"
    check = outcome.record.checks[1]
    assert check["check"] == "max_error_rate" and not check["ok"]
    assert "2 errors in 6 requests" in check["detail"]


async def test_outputs_dated_files_and_sqlite_first_and_last_seen(tmp_path):
    async with shop_site() as (server, products):
        job = job_for(
            server, outputs=["out/%(job)s/%(date)s/items-%(run_id)s.jsonl", "out/items.db"]
        )
        first = await run(job, tmp_path)
        products["/p/1"]["price"] = "1.10"
        second = await run(job, tmp_path)
    assert first.record and second.record
    dated = first.record.outputs[0]
    assert first.run_id and dated.endswith(f"items-{first.run_id}.jsonl")
    assert f"/out/shop/{first.record.started_at:%Y-%m-%d}/" in dated
    assert second.record.outputs[0] != dated and len(jsonl(second.record.outputs[0])) == 3
    with sqlite3.connect(tmp_path / "out" / "items.db") as db:
        rows = db.execute("SELECT item, first_seen, last_seen FROM shop").fetchall()
    assert len(rows) == 3  # one row per item, upserted
    assert all(first_seen < last_seen for _, first_seen, last_seen in rows)
    assert sorted(orjson.loads(item)["price"] for item, _, _ in rows) == ["0.50", "1.10", "3.00"]


async def test_spider_and_config_errors_are_recorded_with_their_codes(tmp_path):
    async with shop_site() as (server, _products):
        missing = job_for(server, spider="NoSuchSpider")
        spider_error = await run(missing, tmp_path)
        bad_output = job_for(server, outputs=["out/items.txt"])
        config_error = await run(bad_output, tmp_path)
    assert spider_error.exit_code == ExitCode.SPIDER == 3
    assert config_error.exit_code == ExitCode.CONFIG == 2
    runs = await history_of(tmp_path)
    assert [(r.finish_reason, r.exit_code) for r in runs] == [
        ("config_error", 2),
        ("spider_error", 3),
    ]
    assert "no exporter for output" in (runs[0].error or "")
    assert "NoSuchSpider" in (runs[1].error or "")


async def test_stop_interrupts_the_run_with_130(tmp_path):
    async with shop_site() as (server, _products):
        shop = shop_of(server)
        shop.gate.clear()
        stop = asyncio.Event()
        job = job_for(server, only_new=True)
        task = asyncio.create_task(run(job, tmp_path, stop=stop))
        await first_product_request(shop, task)
        stop.set()
        shop.gate.set()
        outcome = await task
        again = await run(job, tmp_path)
    assert outcome.exit_code == ExitCode.INTERRUPTED == 130
    assert outcome.record and outcome.record.finish_reason == "interrupted"
    assert again.record and again.record.items == 3  # the interrupted run committed nothing


async def test_a_running_job_is_not_started_twice(tmp_path):
    async with shop_site() as (server, _products):
        shop = shop_of(server)
        shop.gate.clear()
        job = job_for(server)
        paths = JobPaths(tmp_path / "state")
        project = project_for(tmp_path)
        async with RunHistory(paths.history) as one, RunHistory(paths.history) as two:
            first = asyncio.create_task(run_job(job, project, one, paths))
            await first_product_request(shop, first)
            busy = await run_job(job, project, two, paths, holder=Holder())
            shop.gate.set()
            done = await first
            runs = await one.runs("shop")
    assert busy.exit_code == ExitCode.ALREADY_RUNNING == 6 and busy.run_id is None
    assert "already running" in busy.message
    assert done.exit_code == 0 and [r.run_id for r in runs] == [done.run_id]


async def test_resume_jobs_continue_an_interrupted_run_and_restart_a_finished_one(tmp_path):
    async with shop_site() as (server, _products):
        shop = shop_of(server)
        shop.gate.clear()
        stop = asyncio.Event()
        job = job_for(server, resume=True, settings={"CONCURRENCY": 1})
        task = asyncio.create_task(run(job, tmp_path, stop=stop))
        await first_product_request(shop, task)
        stop.set()
        shop.gate.set()
        interrupted = await task
        after_first = len(server.requests)
        resumed = await run(job, tmp_path)
        after_second = len(server.requests)
        restarted = await run(job, tmp_path)
    assert interrupted.exit_code == 130
    assert (tmp_path / "state" / "shop" / "crawl" / "state.db").is_file()
    resumed_paths = [r.path_qs for r in server.requests[after_first:after_second]]
    assert "/" not in resumed_paths and len(resumed_paths) == 2  # only what was left
    assert resumed.exit_code == 0 and resumed.record and resumed.record.item_counts["produced"] == 2
    restarted_paths = [r.path_qs for r in server.requests[after_second:]]
    assert sorted(restarted_paths) == ["/", "/p/1", "/p/2", "/p/3"]
    assert restarted.exit_code == 0
