"""The baseline: a bare aiohttp + selectolax crawl loop doing the framework spider's job.

``concurrency`` worker tasks share one ``TCPConnector`` / ``ClientSession`` and an
``asyncio.Queue``. Each fetches a page, parses it with selectolax Lexbor, writes
``{"url", "title", "h1", "price"}`` as one JSON line (orjson, buffered file), resolves every
``<a href>`` against the page URL with yarl, drops the fragment, keeps http(s)
links to the site's hosts and queues the ones not seen before. The crawl ends
when the queue is drained. Run by ``run.py``; see ``measure.py`` for the output.
"""

from __future__ import annotations

import asyncio
import socket
import sys
from typing import BinaryIO

import aiohttp
import orjson
from aiohttp.abc import AbstractResolver
from evloop import loop_option
from evloop import run as run_on
from measure import Window, child_args
from selectolax.lexbor import LexborHTMLParser
from yarl import URL


class LoopbackResolver(AbstractResolver):
    """Every host name resolves to one IP (the benchmark site is on loopback)."""

    def __init__(self, ip: str) -> None:
        self.ip = ip

    async def resolve(self, host: str, port: int = 0, family: int = socket.AF_INET):  # type: ignore[no-untyped-def,override]
        return [
            {
                "hostname": host,
                "host": self.ip,
                "port": port,
                "family": socket.AF_INET,
                "proto": 0,
                "flags": socket.AI_NUMERICHOST,
            }
        ]

    async def close(self) -> None:
        pass


async def crawl(config: dict, out: BinaryIO) -> dict:  # type: ignore[type-arg]
    concurrency = config["concurrency"]
    hosts = frozenset(config["hosts"])
    connector = aiohttp.TCPConnector(
        limit=concurrency,
        limit_per_host=config["per_host"],
        resolver=LoopbackResolver(config["ip"]),
        enable_cleanup_closed=False,
    )
    queue: asyncio.Queue[URL] = asyncio.Queue()
    seen: set[str] = set()
    counts = {"pages": 0, "errors": 0, "links": 0}
    dumps = orjson.dumps
    newline = orjson.OPT_APPEND_NEWLINE

    for url in config["start_urls"]:
        parsed = URL(url)
        seen.add(str(parsed))
        queue.put_nowait(parsed)

    def parse(url: URL, html: str) -> None:
        tree = LexborHTMLParser(html)
        title = tree.css_first("title")
        h1 = tree.css_first("h1")
        price = tree.css_first(".price")
        item = {
            "url": str(url),
            "title": title.text() if title else None,
            "h1": h1.text() if h1 else None,
            "price": price.text() if price else None,
        }
        out.write(dumps(item, option=newline))
        counts["pages"] += 1
        for node in tree.css("a[href]"):
            href = node.attributes.get("href")
            if not href or href[0] == "#":
                continue
            try:
                link = url.join(URL(href.strip()))
            except ValueError:
                continue
            counts["links"] += 1
            if link.raw_fragment:
                link = link.with_fragment(None)
            if link.scheme not in ("http", "https") or link.host not in hosts:
                continue
            key = str(link)
            if key not in seen:
                seen.add(key)
                queue.put_nowait(link)

    async def worker(session: aiohttp.ClientSession) -> None:
        while True:
            url = await queue.get()
            try:
                async with session.get(url) as resp:
                    body = await resp.read()
                    status = resp.status
                    final = resp.url
                    charset = resp.charset or "utf-8"
                if status != 200:
                    counts["errors"] += 1
                    continue
                parse(final, body.decode(charset, "replace"))
            except (TimeoutError, aiohttp.ClientError) as exc:
                counts["errors"] += 1
                print(f"bare: {url}: {exc!r}", file=sys.stderr)
            finally:
                queue.task_done()

    try:
        async with aiohttp.ClientSession(
            connector=connector,
            headers={"User-Agent": "crawler-bench-bare/0.1"},
            timeout=aiohttp.ClientTimeout(total=30),
        ) as session:
            async with asyncio.TaskGroup() as group:
                workers = [group.create_task(worker(session)) for _ in range(concurrency)]
                await queue.join()
                for task in workers:
                    task.cancel()
    finally:
        await connector.close()
    return {
        "pages": counts["pages"],
        "items": counts["pages"],
        "errors": counts["errors"],
        "links": counts["links"],
        "seen": len(seen),
    }


def main() -> None:
    loop = loop_option()  # --loop asyncio|uvloop
    config, profile = child_args()
    with Window(profile) as window:
        with open(config["out"], "wb", buffering=1 << 16) as out:
            result = run_on(crawl(config, out), loop)
    window.report(impl="bare", loop=loop, **result)


if __name__ == "__main__":
    main()
