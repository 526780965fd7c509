"""``crawl bench``: how fast the framework crawls on this machine, without the internet.

A generated site (:mod:`crawler.benchsite`) is served on 127.0.0.1 by its own
process, so its CPU is not counted as the crawler's; this process crawls it
with the real :class:`~crawler.Crawler` (robots.txt, de-duplication, per-host
politeness and stats all on, items exported to a temporary JSON Lines file) and
reports pages/s, CPU-ms per page and peak RSS.
"""

from __future__ import annotations

import asyncio
import json
import platform
import resource
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import aiohttp
import click

from ..engine import Crawler
from ..errors import ConfigError, CrawlerError
from ..loops import run as run_loop
from ..request import Request
from ..response import Response
from ..settings import Settings
from ..spider import Spider
from .logs import setup_logging

__all__ = ["BenchResult", "bench_command"]

SITE_READY_TIMEOUT_S = 120  # rendering a very large site takes a while; a dead child answers EOF


class _BenchSpider(Spider):
    """What a user's first spider does: the title of every page, every link followed."""

    name = "bench"

    def parse(self, response: Response) -> Iterator[dict[str, Any] | Request]:
        title = response.css_first("title")
        yield {"url": response.url, "title": title.text() if title is not None else None}
        yield from response.follow_all()


@dataclass(frozen=True, slots=True)
class BenchResult:
    """One benchmark run: what was crawled, how fast, at what cost."""

    site_pages: int
    pages: int
    items: int
    errors: int
    hosts: int
    concurrency: int
    wall_s: float
    cpu_s: float
    pages_per_s: float
    cpu_ms_per_page: float
    peak_rss_mb: float
    site_cpu_ms_per_page: float
    python: str
    aiohttp: str
    crawler: str

    def text(self) -> str:
        """The human-readable report."""
        return "\n".join(
            [
                f"crawl bench: {self.pages} of {self.site_pages} pages on {self.hosts} host(s),"
                f" concurrency {self.concurrency}",
                f"  Python {self.python}, aiohttp {self.aiohttp}, crawler {self.crawler}",
                f"  pages/s          {self.pages_per_s:.1f}",
                f"  CPU-ms/page      {self.cpu_ms_per_page:.3f}",
                f"  peak RSS MB      {self.peak_rss_mb:.1f}",
                f"  crawl s          {self.wall_s:.2f} (CPU {self.cpu_s:.2f})",
                f"  items            {self.items}",
                f"  errors           {self.errors}",
                f"  site CPU-ms/page {self.site_cpu_ms_per_page:.3f} (the server, another process)",
            ]
        )


def _version(package: str) -> str:
    try:
        return version(package)
    except PackageNotFoundError:
        return "unknown"


def _peak_rss_mb() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # ru_maxrss is KiB on Linux and bytes on macOS.
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime  # every thread: exporters write off the event loop


async def _start_site(pages: int, hosts: int) -> tuple[asyncio.subprocess.Process, dict[str, Any]]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "crawler.benchsite",
        "--pages",
        str(pages),
        "--hosts",
        str(hosts),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None
    try:
        line = await asyncio.wait_for(proc.stdout.readline(), SITE_READY_TIMEOUT_S)
        if not line:
            raise CrawlerError(f"the benchmark site exited with code {await proc.wait()}")
        return proc, json.loads(line)
    except BaseException:
        await _stop_site(proc)
        raise


async def _stop_site(proc: asyncio.subprocess.Process) -> dict[str, Any]:
    """Stop the site (closing its stdin) and return its counters ({} if it had none)."""
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.close()
    try:
        line = await asyncio.wait_for(proc.stdout.readline(), 30)
        await asyncio.wait_for(proc.wait(), 30)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        return {}
    return json.loads(line) if line.strip() else {}


async def run_bench(pages: int, concurrency: int, hosts: int) -> BenchResult:
    """Serve a ``pages``-page site on ``hosts`` hosts, crawl it, measure the crawl."""
    proc, site = await _start_site(pages, hosts)
    try:
        with tempfile.TemporaryDirectory(prefix="crawl-bench-") as folder:
            from crawler.pipelines import exporter_for

            output = Path(folder) / "items.jsonl"
            spider = _BenchSpider(start_urls=site["start_urls"], allowed_domains=site["hosts"])
            settings = Settings.build(
                (
                    "crawl bench",
                    {
                        "CONCURRENCY": concurrency,
                        # The per-host limit is enforced but not the bottleneck: with few
                        # hosts, a tighter one would measure the site's shape, not the crawler.
                        "CONCURRENCY_PER_HOST": concurrency,
                        "RESOLVE": dict.fromkeys(site["hosts"], "127.0.0.1"),
                        "PROGRESS_INTERVAL": 0,
                        "LOG_LEVEL": "WARNING",
                    },
                )
            )
            crawler = Crawler(spider, settings, pipelines=[exporter_for(output, overwrite=True)])
            cpu_before, wall_before = _cpu_s(), time.perf_counter()
            result = await crawler.run()
            wall_s = time.perf_counter() - wall_before
            cpu_s = _cpu_s() - cpu_before
            with output.open("rb") as lines:
                items = sum(1 for _ in lines)
    finally:
        counters = await _stop_site(proc)
    stats = result.stats
    crawled = int(stats.get("pages", 0))
    errors = sum(int(v) for k, v in stats.items() if k.startswith("failures/"))
    errors += int(stats.get("callback_errors", 0)) + int(stats.get("internal_errors", 0))
    per_page = max(crawled, 1)
    return BenchResult(
        site_pages=int(site["pages"]),
        pages=crawled,
        items=items,
        errors=errors,
        hosts=len(site["hosts"]),
        concurrency=concurrency,
        wall_s=round(wall_s, 4),
        cpu_s=round(cpu_s, 4),
        pages_per_s=round(crawled / wall_s, 1) if wall_s > 0 else 0.0,
        cpu_ms_per_page=round(cpu_s * 1000 / per_page, 4),
        peak_rss_mb=round(_peak_rss_mb(), 1),
        site_cpu_ms_per_page=round(float(counters.get("cpu_s", 0.0)) * 1000 / per_page, 4),
        python=platform.python_version(),
        aiohttp=aiohttp.__version__,
        crawler=_version("crawler"),
    )


@click.command("bench")
@click.option(
    "--pages",
    type=click.IntRange(1, 1_000_000),
    default=2000,
    show_default=True,
    help="Pages in the generated site (~20 KB and ~33 links each); all are crawled.",
)
@click.option(
    "--concurrency",
    type=click.IntRange(1, 10_000),
    default=32,
    show_default=True,
    help="Requests in flight at once (= CONCURRENCY).",
)
@click.option(
    "--hosts",
    type=click.IntRange(1, 1000),
    default=4,
    show_default=True,
    help="Virtual hosts the pages are spread over.",
)
@click.option(
    "--loop",
    type=click.Choice(["auto", "asyncio", "uvloop"]),
    default="auto",
    show_default=True,
    help="The event loop (= LOOP): auto is uvloop when installed.",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of text.")
def bench_command(pages: int, concurrency: int, hosts: int, loop: str, as_json: bool) -> None:
    """Benchmark the crawler on this machine against a generated local site.

    Serves a generated site on 127.0.0.1 from a child process (no internet
    needed), crawls all of it with robots.txt, de-duplication, politeness and
    stats on, exports the items to a temporary JSON Lines file, and prints
    pages/s, CPU-ms per page (this process's CPU time / pages) and peak RSS.

    \b
    Examples:
      crawl bench
      crawl bench --pages 10000 --concurrency 64 --hosts 8
      crawl bench --json > bench.json
    """
    from . import EXIT_CONFIG, EXIT_INTERNAL, EXIT_INTERRUPTED

    setup_logging("WARNING")
    try:
        result = run_loop(run_bench(pages, concurrency, min(hosts, pages)), loop)
    except ConfigError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_CONFIG)
    except KeyboardInterrupt:
        click.echo("crawl bench: interrupted", err=True)
        sys.exit(EXIT_INTERRUPTED)
    except (CrawlerError, OSError, ValueError) as exc:
        click.echo(f"error: crawl bench failed: {exc}", err=True)
        sys.exit(EXIT_INTERNAL)
    click.echo(json.dumps(asdict(result)) if as_json else result.text())
    if result.pages != result.site_pages or result.items != result.pages:
        # Numbers from an incomplete crawl are not comparable with other runs.
        click.echo(
            f"error: the crawl fetched {result.pages} of {result.site_pages} pages and wrote"
            f" {result.items} items: see the log above",
            err=True,
        )
        sys.exit(EXIT_INTERNAL)
