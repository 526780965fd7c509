"""Peak memory (PSS) of the rendering browser per open page.

    python bench/browser.py [--pages 1,4,8] [--items 500]

Starts a local page whose content (``--items`` list entries and links) is built by
JavaScript, launches the crawl's browser the way ``crawler.render`` does (same flags, a
context per page), and for each count N opens N such pages at once, holds them open and
reads the memory (PSS: shared pages split, not counted twice) of every Chromium process
under this one (/proc, Linux). Prints one JSON line per N and the marginal MiB per page;
the Playwright driver (node) is not counted. Never part of the test run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from typing import Any

from aiohttp import web

from crawler.render.browser import BrowserHost, browser_rss_bytes
from crawler.render.options import RenderOptions, find_browser

MIB = 1024 * 1024


def page_html(items: int) -> str:
    return (
        "<html><body><ul id='list'></ul><script>"
        f"const ul = document.getElementById('list'); for (let i = 0; i < {items}; i++) {{"
        " const li = document.createElement('li');"
        " li.innerHTML = `<a href='/item/${i}'>item ${i}</a> <span class=price>${i}</span>`;"
        " ul.appendChild(li); }"
        "</script></body></html>"
    )


async def hold_pages(host: BrowserHost, url: str, count: int) -> int:
    """Open ``count`` rendered pages at once; the browser's RSS while they are all open."""
    opened = asyncio.Event()
    release = asyncio.Event()
    ready = 0

    async def one() -> None:
        nonlocal ready
        async with host.browser() as browser:
            context = await browser.new_context()
            try:
                page = await context.new_page()
                await page.goto(url, wait_until="load")
                ready += 1
                if ready == count:
                    opened.set()
                await release.wait()
            finally:
                await context.close()

    async with asyncio.TaskGroup() as group:
        for _ in range(count):
            group.create_task(one())
        await opened.wait()
        rss = browser_rss_bytes()
        release.set()
    return rss


async def main(counts: list[int], items: int) -> list[dict[str, Any]]:
    html = page_html(items)

    async def handler(request: web.Request) -> web.Response:
        return web.Response(text=html, content_type="text/html")

    app = web.Application()
    app.router.add_get("/", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    url = f"http://127.0.0.1:{port}/"
    rows: list[dict[str, Any]] = []
    options = RenderOptions(executable=find_browser(), pages=max(counts), recycle_pages=0)
    host = BrowserHost(options)
    try:
        baseline = await hold_pages(host, url, 1)  # launches the browser, then one page
        rows.append({"pages": 1, "pss_mib": round(baseline / MIB, 1)})
        for count in counts:
            if count == 1:
                continue
            rss = await hold_pages(host, url, count)
            per_page = (rss - baseline) / MIB / (count - 1)
            rows.append(
                {
                    "pages": count,
                    "pss_mib": round(rss / MIB, 1),
                    "mib_per_extra_page": round(per_page, 1),
                }
            )
    finally:
        await host.close()
        await runner.cleanup()
    return rows


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", default="1,4,8", help="comma-separated page counts")
    parser.add_argument("--items", type=int, default=500, help="JS-built list entries per page")
    args = parser.parse_args()
    counts = sorted({int(n) for n in args.pages.split(",")} | {1})
    for row in asyncio.run(main(counts, args.items)):
        print(json.dumps(row))
