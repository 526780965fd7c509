"""Per-host state at scale: a crawl touching 100,000 distinct hosts, RSS sampled as it goes.

    /work/main/.venv/bin/python bench/hosts.py --hosts 100000

A site runs in its own process on one loopback port (a bare asyncio ``Protocol``, so the
crawler's RSS is the crawler's alone). Every host ``h<n>.test`` serves an allow-all
``/robots.txt`` and one page ``/`` linking to the next ``--window`` hosts
(``h<n+1>.test`` .. ``h<n+window>.test``), so each page discovers one new host, the queue
stays about ``--window`` requests long and up to ``--window`` hosts are crawled at once.
The names reach the server through the ``RESOLVE`` setting (never real DNS).

The crawl runs in this process with ``ROBOTSTXT_OBEY`` and ``AUTOTHROTTLE`` on and the
in-memory frontier; every ``--every`` hosts it prints the current RSS (``/proc/self/statm``)
and the growth per 1,000 hosts since the previous sample. What must not grow with the
hosts seen (robots parsers, throttle state, readiness overrides, per-host stats keys)
shows as a flat RSS after warm-up; what legitimately grows with the pages crawled (the
de-duplication set of seen URLs, ~100 bytes a URL) stays a small slope.
A JSON report is printed last.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from typing import Any, ClassVar

from site_kit import http_response, serve_until_stopped

from crawler import Crawler, Response, Settings, Spider
from crawler.benchsite import HeadsProtocol

_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def rss_mb() -> float:
    """The current resident set size of this process, in MB."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * _PAGE_SIZE / 2**20


# -- the site (child process) ---------------------------------------------------------------


class HostsSite(HeadsProtocol):
    """One GET per connection: ``/robots.txt`` allows all, ``/`` of ``h<n>.test`` links onwards."""

    port = 0
    window = 32
    ROBOTS: ClassVar[bytes] = b"User-agent: *\nAllow: /\n"
    # The crawler must not keep 100,000 idle keep-alive sockets open (one per host) while
    # the bench measures memory.
    one_per_connection = True

    def answer(self, host: bytes, target: bytes) -> list[bytes]:
        return [self.page(host, target)]

    @classmethod
    def page(cls, host: bytes, target: bytes) -> bytes:
        if target == b"/robots.txt":
            return http_response(200, cls.ROBOTS, "text/plain", close=True)
        if target == b"/" and host.startswith(b"h") and host.endswith(b".test"):
            n = int(host[1:-5])
            links = "".join(
                f'<a href="http://h{m}.test:{cls.port}/">h{m}</a>\n'
                for m in range(n + 1, n + 1 + cls.window)
            )
            body = f"<html><head><title>h{n}</title></head><body>{links}</body></html>"
            return http_response(200, body.encode(), "text/html; charset=utf-8", close=True)
        return http_response(404, b"not found", "text/plain", close=True)


async def serve(window: int) -> None:
    def site(port: int) -> type[HostsSite]:
        HostsSite.port, HostsSite.window = port, window
        return HostsSite

    await serve_until_stopped(site)


# -- the crawl (this process) ---------------------------------------------------------------


class HostsSpider(Spider):
    """Follows every link; samples RSS every ``every`` hosts."""

    name = "hosts"

    def __init__(self, start: str, hosts: int, every: int) -> None:
        super().__init__()
        self.start_urls = [start]
        self.hosts = hosts
        self.every = every
        self.seen = 0
        self.samples: list[dict[str, float]] = []
        self.started = time.monotonic()

    async def parse(self, response: Response) -> Any:
        self.seen += 1
        if self.seen % self.every == 0:
            self.sample()
        if self.seen >= self.hosts:
            return
        for request in response.follow_all():
            if int(request.yarl_url.host[1:-5]) < self.hosts:  # type: ignore[index]
                yield request

    def sample(self) -> None:
        rss = rss_mb()
        previous = self.samples[-1] if self.samples else None
        slope = (
            (rss - previous["rss_mb"]) * 1000 / (self.seen - previous["hosts"]) if previous else 0.0
        )
        row = {
            "hosts": self.seen,
            "rss_mb": round(rss, 1),
            "mb_per_1k_hosts": round(slope, 3),
            "elapsed_s": round(time.monotonic() - self.started, 1),
        }
        self.samples.append(row)
        print(
            f"{row['hosts']:>8} hosts  RSS {row['rss_mb']:8.1f} MB"
            f"  {row['mb_per_1k_hosts']:+7.3f} MB/1k hosts  {row['elapsed_s']:7.1f} s",
            flush=True,
        )


async def crawl(args: argparse.Namespace, port: int) -> dict[str, Any]:
    resolve = {f"h{n}.test": "127.0.0.1" for n in range(args.hosts + args.window + 1)}
    spider = HostsSpider(f"http://h0.test:{port}/", args.hosts, args.every)
    settings = Settings.build(
        (
            "bench",
            {
                "RESOLVE": resolve,
                "ROBOTSTXT_OBEY": True,
                "AUTOTHROTTLE": True,
                "AUTOTHROTTLE_START_DELAY": 0.0,
                "CONCURRENCY": args.concurrency,
                "PROGRESS_INTERVAL": 0,
                "LOG_LEVEL": "WARNING",
            },
        )
    )
    del resolve
    result = await Crawler(spider, settings).run()
    stats = result.stats
    per_host_keys = sum(1 for key in stats if key.count("/") >= 2 and ".test" in key)
    return {
        "hosts": spider.seen,
        "finish_reason": result.finish_reason,
        "pages": stats.get("pages"),
        "per_host_stats_keys": per_host_keys,
        "samples": spider.samples,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--hosts", type=int, default=100_000)
    parser.add_argument("--every", type=int, default=10_000, help="sample RSS every N hosts")
    parser.add_argument("--window", type=int, default=32, help="links per page to next hosts")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        asyncio.run(serve(args.window))
        return 0
    site = subprocess.Popen(
        [sys.executable, __file__, "--serve", "--window", str(args.window)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert site.stdout is not None
        port = json.loads(site.stdout.readline())["port"]
        report = asyncio.run(crawl(args, port))
    finally:
        site.send_signal(signal.SIGTERM)
        site.wait(timeout=10)
    samples = report["samples"]
    warm = [s["mb_per_1k_hosts"] for s in samples[2:]]
    report["mb_per_1k_hosts_after_warmup"] = round(sum(warm) / len(warm), 3) if warm else None
    print(json.dumps(report))
    return 0 if report["hosts"] >= args.hosts else 1


if __name__ == "__main__":
    sys.exit(main())
