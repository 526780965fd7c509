"""The files pipeline (crawler.pipelines.FilesPipeline) against real servers on loopback.

``site.test`` is the crawl's start host; ``files.test`` serves the files (both on
127.0.0.1 through RESOLVE); ``cdn.test`` resolves to 127.0.0.2, a private address
that is not a start host. Assertions are on what the servers saw, on disk and in the
exporter's output.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import sys
import types
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from peers import free_port

from crawler import ConfigError, Crawler, CrawlResult, Request, Response, Settings, Spider
from crawler.clock import sleep
from crawler.pipeline import DownloaderAccess
from crawler.pipelines import FilesPipeline, JsonLinesExporter
from crawler.pipelines.media import HostGate
from crawler.retry import RetryPolicy
from crawler.stats import Stats
from crawler.testing import ManualClock, Page, SiteServer, html_page
from crawler.testing.callbacks import make_response

PDF = b"%PDF-1.4 a small document\n" * 40
PNG = b"\x89PNG\r\n\x1a\n" + b"not really an image" * 10
HANG_GUARD_S = 20.0


class Items(Spider):
    """Fetches ``start_url``, then yields ``items`` (each a fresh copy)."""

    name = "items"

    def __init__(self, start_url: str, items: list[dict[str, Any]]) -> None:
        super().__init__()
        self.start_url = start_url
        self.items = items

    async def start(self) -> AsyncIterator[Request]:
        yield Request(self.start_url)

    def parse(self, response: Response) -> Any:
        for item in self.items:
            yield json.loads(json.dumps(item))


def sha1_path(url: str, extension: str) -> str:
    return f"full/{hashlib.sha1(url.encode()).hexdigest()}{extension}"


async def crawl(
    spider: Spider, server: SiteServer, store: Path, *, output: Path | None = None, **settings: Any
) -> tuple[CrawlResult, list[Any]]:
    """Crawl with the files pipeline (from PIPELINES), then a JSON Lines file, then a list."""
    resolve = {**server.resolve_map(), **settings.pop("RESOLVE", {})}
    values: dict[str, Any] = {
        "PROGRESS_INTERVAL": 0,
        "ROBOTSTXT_OBEY": False,
        "RETRY_TIMES": 0,
        "PIPELINES": ["crawler.pipelines.FilesPipeline"],
        "FILES_STORE": str(store),
        "RESOLVE": resolve,
        **settings,
    }
    items: list[Any] = []

    class Collect:
        async def process_item(self, item: Any, spider: Spider) -> Any:
            items.append(item)
            return item

    extra: list[Any] = [JsonLinesExporter(output)] if output is not None else []
    built = Settings.build(("spider settings", spider.settings), ("test", values))
    crawler = Crawler(spider, built, pipelines=[*extra, Collect()])
    async with asyncio.timeout(HANG_GUARD_S):
        result = await crawler.run()
    return result, items


async def _png(request: web.Request) -> web.Response:
    return web.Response(body=PNG, content_type="image/png")  # no extension in the URL


async def _streamed_big(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": "application/zip"})
    await response.prepare(request)  # chunked: no Content-Length to refuse it up front
    for _ in range(10):
        await response.write(b"z" * 1000)
    await response.write_eof()
    return response


def file_site(**extra: Any) -> SiteServer:
    pages: dict[str, dict[str, Any]] = {
        "site.test": {"/": html_page("home")},
        "files.test": {"/a.pdf": PDF, "/img": _png, "/big.bin": b"b" * 5000},
    }
    pages["files.test"].update(extra)
    return SiteServer(pages)


def on_disk(store: Path) -> list[str]:
    return sorted(str(p.relative_to(store)) for p in (store / "full").glob("*"))


# -- downloading, storing, recording ------------------------------------------------------------


async def test_files_are_stored_by_url_and_recorded_before_the_item_is_written(
    tmp_path: Path,
) -> None:
    store, output = tmp_path / "files", tmp_path / "items.jsonl"
    async with file_site() as server:
        pdf, img = server.url("files.test", "/a.pdf"), server.url("files.test", "/img")
        items: list[dict[str, Any]] = [
            {"title": "one", "file_urls": [pdf, img]},
            {"title": "two", "file_urls": [pdf]},  # the same file again: fetched once
            {"title": "none"},
        ]
        result, collected = await crawl(Items(server.url("site.test"), items), server, store,
                                        output=output)  # fmt: skip
    assert result.stats["files/downloaded"] == 2
    assert result.stats["files/uptodate"] == 1
    assert sorted(server.paths_seen("files.test")) == ["/a.pdf", "/img"]
    pdf_path, img_path = sha1_path(pdf, ".pdf"), sha1_path(img, ".png")
    assert (store / pdf_path).read_bytes() == PDF
    assert (store / img_path).read_bytes() == PNG  # the extension from the Content-Type
    assert on_disk(store) == sorted([pdf_path, img_path])  # no temporary file left
    first = {
        "url": pdf,
        "path": pdf_path,
        "checksum": hashlib.md5(PDF).hexdigest(),
        "status": "downloaded",
    }
    written = [json.loads(line) for line in output.read_text().splitlines()]
    assert written == collected
    by_title = {item["title"]: item for item in written}
    assert by_title["one"]["files"][0] == first
    assert by_title["one"]["files"][1]["status"] == "downloaded"
    assert by_title["two"]["files"] == [{**first, "status": "uptodate"}]
    assert "files" not in by_title["none"]


async def test_a_later_run_finds_the_files_stored_and_does_not_fetch_them(tmp_path: Path) -> None:
    store = tmp_path / "files"
    async with file_site() as server:
        urls = [server.url("files.test", "/a.pdf"), server.url("files.test", "/img")]
        items = [{"title": "one", "file_urls": urls}]
        first, _ = await crawl(Items(server.url("site.test"), items), server, store)
        second, collected = await crawl(Items(server.url("site.test"), items), server, store)
    assert first.stats["files/downloaded"] == 2
    assert second.stats["files/uptodate"] == 2 and "files/downloaded" not in second.stats
    assert sorted(server.paths_seen("files.test")) == ["/a.pdf", "/img"]  # once across both runs
    assert [f["status"] for f in collected[0]["files"]] == ["uptodate", "uptodate"]
    assert collected[0]["files"][0]["checksum"] == hashlib.md5(PDF).hexdigest()


async def test_a_file_deleted_from_the_store_is_fetched_again(tmp_path: Path) -> None:
    store = tmp_path / "files"
    async with file_site() as server:
        url = server.url("files.test", "/a.pdf")
        items = [{"file_urls": url}]  # one URL as a string, not a list
        await crawl(Items(server.url("site.test"), items), server, store)
        (store / sha1_path(url, ".pdf")).unlink()
        again, collected = await crawl(Items(server.url("site.test"), items), server, store)
    assert again.stats["files/downloaded"] == 1
    assert collected[0]["files"][0]["status"] == "downloaded"


# -- failures are counted; the item is always written -------------------------------------------


@pytest.mark.parametrize("path", ["/big.bin", "/streamed"], ids=["content-length", "chunked"])
async def test_a_file_over_the_size_cap_fails_and_nothing_stays_on_disk(
    tmp_path: Path, path: str
) -> None:
    store, output = tmp_path / "files", tmp_path / "items.jsonl"
    async with file_site(**{"/streamed": _streamed_big}) as server:
        url = server.url("files.test", path)
        items = [{"title": "big", "file_urls": [url]}]
        result, _ = await crawl(
            Items(server.url("site.test"), items), server, store, output=output,
            FILES_MAX_SIZE=2000,
        )  # fmt: skip
    assert result.stats["files/failed/too_large"] == 1
    [written] = [json.loads(line) for line in output.read_text().splitlines()]
    assert written["files"] == [
        {"url": url, "path": None, "checksum": None, "status": "failed: too_large"}
    ]
    assert on_disk(store) == []


async def test_404_and_network_errors_are_counted_and_the_item_still_goes_on(
    tmp_path: Path,
) -> None:
    store, output = tmp_path / "files", tmp_path / "items.jsonl"
    async with file_site() as server:
        missing = server.url("files.test", "/missing.pdf")
        dead = f"http://dead.test:{free_port()}/x.pdf"  # nobody listens there
        items = [{"title": "t", "file_urls": [missing, dead, "not a url"]}]
        result, _ = await crawl(
            Items(server.url("site.test"), items), server, store, output=output,
            RESOLVE={"dead.test": "127.0.0.1"},
        )  # fmt: skip
    assert result.stats["files/failed/http_404"] == 1
    assert result.stats["files/failed/network"] == 1
    assert result.stats["files/failed/invalid_url"] == 1
    assert result.stats["items"] == 1
    [written] = [json.loads(line) for line in output.read_text().splitlines()]
    statuses = [f["status"] for f in written["files"]]
    assert statuses == ["failed: http_404", "failed: network", "failed: invalid_url"]


async def test_transient_failures_are_retried_with_the_crawl_rules(tmp_path: Path) -> None:
    answers = [503, 200]

    async def flaky(request: web.Request) -> web.Response:
        status = answers.pop(0)
        return web.Response(status=status, body=PDF if status == 200 else b"busy")

    async with file_site(**{"/flaky.pdf": flaky}) as server:
        url = server.url("files.test", "/flaky.pdf")
        result, collected = await crawl(
            Items(server.url("site.test"), [{"file_urls": [url]}]), server, tmp_path,
            RETRY_TIMES=2, RETRY_BACKOFF_BASE=0.01, RETRY_BACKOFF_MAX=0.01,
        )  # fmt: skip
    assert result.stats["files/retries/http_503"] == 1
    assert result.stats["files/downloaded"] == 1
    assert collected[0]["files"][0]["status"] == "downloaded"


async def test_a_file_on_a_private_address_is_refused_by_the_guard(tmp_path: Path) -> None:
    async with (
        SiteServer({"cdn.test": {"/x.pdf": PDF}}, host="127.0.0.2") as private,
        file_site() as server,
    ):
        url = private.url("cdn.test", "/x.pdf")
        result, collected = await crawl(
            Items(server.url("site.test"), [{"file_urls": [url]}]), server, tmp_path,
            RESOLVE={"cdn.test": "127.0.0.2"},
        )  # fmt: skip
    assert private.requests == []  # the private host saw nothing
    assert result.stats["files/failed/blocked_address"] == 1
    assert collected[0]["files"][0]["status"] == "failed: blocked_address"


# -- the crawl's sessions and politeness --------------------------------------------------------


async def test_file_requests_carry_the_crawl_session_cookies(tmp_path: Path) -> None:
    async def login(request: web.Request) -> web.Response:
        response = web.Response(text=html_page("in"), content_type="text/html")
        response.set_cookie("session", "s3cret")
        return response

    pages: dict[str, dict[str, Page]] = {"site.test": {"/": login, "/doc.pdf": PDF}}
    async with SiteServer(pages) as server:
        url = server.url("site.test", "/doc.pdf")
        await crawl(Items(server.url("site.test"), [{"file_urls": [url]}]), server, tmp_path)
    [seen] = [r for r in server.requests if r.path_qs == "/doc.pdf"]
    assert "session=s3cret" in seen.headers.get("Cookie", "")


async def test_file_fetches_respect_the_per_host_concurrency(tmp_path: Path) -> None:
    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(0.05)  # long enough for the fetches to overlap if they may
        return web.Response(body=PDF)

    paths = {f"/f{n}.pdf": slow for n in range(8)}
    async with file_site(**paths) as server:
        urls = [server.url("files.test", path) for path in paths]
        result, _ = await crawl(
            Items(server.url("site.test"), [{"file_urls": urls}]), server, tmp_path,
            CONCURRENCY_PER_HOST=2,
        )  # fmt: skip
    assert result.stats["files/downloaded"] == 8
    assert server.max_concurrency["files.test"] == 2


async def test_delays_and_back_off_run_on_the_crawl_clock(tmp_path: Path) -> None:
    clock = ManualClock()
    fetched: list[tuple[str, float]] = []
    answers = {"http://f.test/2.pdf": [503, 200]}

    async def fetch(request: Request) -> Response:
        fetched.append((request.url, clock.now()))
        status = (answers.get(request.url) or [200]).pop(0)
        return make_response(request.url, PDF, status, {"Content-Type": "application/pdf"},
                             request=request)  # fmt: skip

    values = {"DOWNLOAD_DELAY": 5, "RETRY_TIMES": 1, "RETRY_BACKOFF_BASE": 10,
              "RETRY_BACKOFF_MAX": 10, "FILES_STORE": str(tmp_path)}  # fmt: skip
    stats = Stats()
    pipeline = FilesPipeline()
    pipeline.use_downloader(access(fetch, values, clock, stats))
    spider = Items("http://f.test/", [])
    await pipeline.open(spider)
    try:
        item = {"file_urls": ["http://f.test/1.pdf", "http://f.test/2.pdf"]}
        task = asyncio.create_task(pipeline.process_item(item, spider))
        await until(lambda: len(fetched) == 1)
        await clock.advance(4.9)
        assert len(fetched) == 1  # DOWNLOAD_DELAY: 5 s between two starts on a host
        await clock.advance(0.1)
        await until(lambda: len(fetched) == 2)  # the 503: held for the 10 s back-off
        await clock.advance(9.9)
        assert len(fetched) == 2
        await clock.advance(0.1)
        done = await asyncio.wait_for(task, HANG_GUARD_S)
    finally:
        await pipeline.close(spider)
    assert fetched == [
        ("http://f.test/1.pdf", 1000.0),
        ("http://f.test/2.pdf", 1005.0),
        ("http://f.test/2.pdf", 1015.0),
    ]
    assert [f["status"] for f in done["files"]] == ["downloaded", "downloaded"]
    assert stats.get("files/retries/http_503") == 1


def access(fetch: Any, values: dict[str, Any], clock: ManualClock, stats: Stats) -> Any:
    """What the engine hands the pipeline, around a fake ``fetch``."""
    settings = Settings.build(("test", values))
    return DownloaderAccess(fetch, settings, clock, stats, RetryPolicy.from_settings(settings))


async def until(condition: Callable[[], bool]) -> None:
    """Let tasks (and the threads writing files) run until ``condition`` holds."""
    async with asyncio.timeout(HANG_GUARD_S):
        while not condition():  # noqa: ASYNC110 - file writes run in threads: no event
            await asyncio.sleep(0.005)


async def test_the_host_gate_limits_concurrency_per_host() -> None:
    clock = ManualClock()
    gate = HostGate(clock.now, lambda delay_s: sleep(clock, delay_s), per_host=1)
    inside: list[str] = []
    release = asyncio.Event()

    async def use(host: str) -> None:
        async with gate.slot(host):
            inside.append(host)
            await release.wait()

    async with asyncio.TaskGroup() as group:
        for host in ("a.test", "a.test", "b.test"):
            group.create_task(use(host))
        await until(lambda: len(inside) == 2)
        assert sorted(inside) == ["a.test", "b.test"]  # the second a.test waits
        release.set()


async def test_an_item_class_without_the_files_field_still_goes_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    @dataclass
    class Book:
        title: str
        file_urls: list[str]

    async def fetch(request: Request) -> Response:
        return make_response(request.url, PDF, headers={"Content-Type": "application/pdf"})

    values = {"FILES_STORE": str(tmp_path)}
    pipeline = FilesPipeline()
    pipeline.use_downloader(access(fetch, values, ManualClock(), Stats()))
    spider = Items("http://f.test/", [])
    await pipeline.open(spider)
    try:
        for n in range(2):
            book = Book("b", [f"http://f.test/{n}.pdf"])
            assert await pipeline.process_item(book, spider) is book
    finally:
        await pipeline.close(spider)
    assert len(list((tmp_path / "full").glob("*.pdf"))) == 2
    warnings = [r.getMessage() for r in caplog.records if "no 'files' field" in r.getMessage()]
    assert len(warnings) == 1  # once, not per item


# -- configuration ------------------------------------------------------------------------------


async def test_missing_files_store_is_a_config_error(tmp_path: Path) -> None:
    async with file_site() as server:
        spider = Items(server.url("site.test"), [])
        with pytest.raises(ConfigError, match="FILES_STORE is not set"):
            await crawl(spider, server, tmp_path, FILES_STORE="")
    assert server.requests == []


async def test_missing_files_store_exits_2_from_the_cli(tmp_path: Path) -> None:
    (tmp_path / "pages.py").write_text(
        "from crawler import Spider\n\nclass Pages(Spider):\n    name = 'pages'\n"
        "    start_urls = ['http://a.test/']\n\n    def parse(self, response):\n        yield {}\n"
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "crawler", "run", "pages.py",
        "-s", 'PIPELINES=["crawler.pipelines.FilesPipeline"]',
        cwd=tmp_path, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 2, err.decode()
    last = err.decode().strip().splitlines()[-1]
    assert "FILES_STORE is not set" in last and "Traceback" not in err.decode()


async def test_image_sizes_are_recorded_when_pillow_is_installed(tmp_path: Path) -> None:
    image_module = pytest.importorskip("PIL.Image")
    import io

    buffer = io.BytesIO()
    image_module.new("RGB", (3, 2)).save(buffer, format="PNG")

    async def png(request: web.Request) -> web.Response:
        return web.Response(body=buffer.getvalue(), content_type="image/png")

    async with file_site(**{"/pic.png": png}) as server:
        url = server.url("files.test", "/pic.png")
        _, collected = await crawl(
            Items(server.url("site.test"), [{"file_urls": [url]}]), server, tmp_path
        )
    assert collected[0]["files"][0]["width"] == 3 and collected[0]["files"][0]["height"] == 2


async def test_image_sizes_reach_the_item_and_the_index(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same path with a stand-in for Pillow (not installed here): header size only."""

    class FakeImage:
        size = (640, 480)

        def __enter__(self) -> FakeImage:
            return self

        def __exit__(self, *exc: object) -> None:
            return None

    fake = types.ModuleType("PIL")
    fake.Image = types.SimpleNamespace(open=lambda stream: FakeImage())  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "PIL", fake)
    async with file_site() as server:
        url = server.url("files.test", "/img")
        items = [{"file_urls": [url]}]
        _, first = await crawl(Items(server.url("site.test"), items), server, tmp_path)
        _, again = await crawl(Items(server.url("site.test"), items), server, tmp_path)
    for collected, status in ((first, "downloaded"), (again, "uptodate")):
        [entry] = collected[0]["files"]
        assert (entry["status"], entry["width"], entry["height"]) == (status, 640, 480)
