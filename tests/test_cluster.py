"""One crawl, several worker processes, one Redis: `crawl run` processes joined by FRONTIER_URL + JOB.

The site has six hosts of 25 pages linking across hosts. Every worker is a real
``python -m crawler run`` process with its own User-Agent, so the server knows who
fetched what. The first responses are held until every worker has sent a request, so
every process takes part (12 start pages and 6 hosts x 2 slots: while the first workers
wait, the last one can still lease). The killed worker is chosen the same way: the
request after the 100th is held until the test has killed whoever sent it. Nothing
waits on time.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import orjson
import pytest
from aiohttp import web
from redis_peer import RedisServer, running_redis

import crawler
from crawler.frontier.redis import read_status
from crawler.testing import SiteServer, html_page

ROOT = Path(crawler.__file__).resolve().parent.parent
HOSTS = [f"h{n}.test" for n in range(6)]
PAGES_PER_HOST = 25
PER_HOST = 2
WORKER_CONCURRENCY = 4
GUARD_S = 30.0  # only trips when something hangs

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

SPIDER = """
from crawler import Spider


class ClusterSpider(Spider):
    name = "cluster"

    def parse(self, response):
        yield {"url": response.url}
        yield from response.follow_all()
"""


@dataclass
class Site:
    """The test site: its server, every page URL, and the hooks tests use."""

    server: SiteServer
    workers: int
    seen_agents: set[str] = field(default_factory=set)
    all_in: asyncio.Event = field(default_factory=asyncio.Event)
    fetched_by: dict[str, list[str]] = field(default_factory=dict)  # host/path -> user agents
    fetches: int = 0
    page_delay_s: float = 0.01  # how long the server takes per page
    trap_after: int | None = None  # the request after this many is held until ``killed``
    trapped: asyncio.Event = field(default_factory=asyncio.Event)
    killed: asyncio.Event = field(default_factory=asyncio.Event)
    victims: list[str] = field(default_factory=list)

    def urls(self) -> set[str]:
        return {
            self.server.url(host, path)
            for host, pages in self.server.pages.items()
            for path in pages
        }

    def start_urls(self) -> list[str]:
        return [self.server.url(host, f"/p{n}") for host in HOSTS for n in (0, 1)]


def _page(site_ref: list[Site], host: str, n: int) -> Handler:
    k = HOSTS.index(host)
    links = [f"/p{n + 1}"] if n + 1 < PAGES_PER_HOST else []
    other = HOSTS[(k + 1 + n) % len(HOSTS)]
    links.append(f"http://{other}:{{port}}/p{(n * 7) % PAGES_PER_HOST}")
    links.append(f"/p{n // 2}")  # a link back: a duplicate for the frontier to drop

    async def handle(request: web.Request) -> web.StreamResponse:
        site = site_ref[0]
        agent = request.headers.get("User-Agent", "")
        site.fetched_by.setdefault(f"{host}{request.path}", []).append(agent)
        site.fetches += 1
        site.seen_agents.add(agent)
        if len(site.seen_agents) >= site.workers:
            site.all_in.set()
        await site.all_in.wait()  # the first requests wait until every worker is in
        if site.trap_after is not None and site.fetches > site.trap_after and not site.victims:
            site.victims.append(agent)  # mid-crawl: this worker is killed while it waits here
            site.trapped.set()
            await site.killed.wait()
        await asyncio.sleep(site.page_delay_s)
        port = site.server.port
        body = html_page(f"{host} {n}", [link.replace("{port}", str(port)) for link in links])
        return web.Response(text=body, content_type="text/html")

    return handle


@pytest.fixture
async def site(request: pytest.FixtureRequest) -> AsyncIterator[Site]:
    workers = getattr(request, "param", 3)
    ref: list[Site] = []
    pages = {host: {f"/p{n}": _page(ref, host, n) for n in range(PAGES_PER_HOST)} for host in HOSTS}
    async with SiteServer(pages) as server:  # type: ignore[arg-type]
        ref.append(Site(server, workers))
        yield ref[0]


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    with running_redis(tmp_path_factory.mktemp("redis")) as server:
        yield server


@dataclass
class Worker:
    name: str
    process: asyncio.subprocess.Process
    output: Path
    log: Path

    def items(self) -> list[str]:
        if not self.output.exists():
            return []
        lines = self.output.read_bytes().split(b"\n")
        return [orjson.loads(line)["url"] for line in lines[:-1] if line]  # whole lines only


class Cluster:
    """Starts ``crawl run`` worker processes on the site and the Redis; kills any left over."""

    def __init__(self, folder: Path, site: Site, redis: RedisServer) -> None:
        self.folder = folder
        self.site = site
        self.redis = redis
        self.started: list[Worker] = []

    async def start(self, job: str, count: int, settings: Sequence[str] = ()) -> list[Worker]:
        """Start ``count`` workers of ``job`` (``settings``: more NAME=VALUE); a second
        start of the same job runs the same commands again (the outputs are appended to)."""
        folder = self.folder / job
        folder.mkdir(parents=True, exist_ok=True)
        spider = folder / "cluster_spider.py"
        spider.write_text(SPIDER)
        resolve = orjson.dumps(self.site.server.resolve_map()).decode()
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        workers = []
        for n in range(count):
            name = f"worker-{job}-{n}"
            output, log = folder / f"{name}.jsonl", folder / f"{name}.log"
            args = [
                *("-m", "crawler", "run", str(spider), "-o", str(output)),
                *("-a", "start_urls=" + ",".join(self.site.start_urls())),
                *("-s", f"FRONTIER_URL={self.redis.url}", "-s", f"JOB={job}"),
                *("-s", f"RESOLVE={resolve}", "-s", "PROGRESS_INTERVAL=0"),
                *("-s", "ROBOTSTXT_OBEY=false", "-s", "RETRY_TIMES=0"),
                *("-s", f"CONCURRENCY={WORKER_CONCURRENCY}"),
                *("-s", f"CONCURRENCY_PER_HOST={PER_HOST}"),
                *("-s", "LEASE_TIMEOUT=1", "-s", "CHECKPOINT_INTERVAL=0.05"),
                *("-s", f"USER_AGENT={name}"),
                *(arg for setting in settings for arg in ("-s", setting)),
            ]
            with log.open("wb") as stderr:
                process = await asyncio.create_subprocess_exec(
                    sys.executable, *args, cwd=folder, env=env, stdout=stderr, stderr=stderr
                )
            workers.append(Worker(name, process, output, log))
        self.started += workers
        return workers

    async def finish(self, workers: list[Worker], expected: int = 0) -> None:
        """Wait for every worker to exit with the ``expected`` code."""
        try:
            async with asyncio.timeout(GUARD_S):
                for worker in workers:
                    code = await worker.process.wait()
                    log = worker.log.read_text()[-3000:]
                    assert code == expected, f"{worker.name} exited {code}:\n{log}"
        except TimeoutError:
            running = [w for w in workers if w.process.returncode is None]
            logs = "\n".join(f"{w.name}:\n{w.log.read_text()[-2000:]}" for w in running)
            raise AssertionError(f"workers still running after {GUARD_S}s:\n{logs}") from None

    async def kill_leftovers(self) -> None:
        for worker in self.started:
            if worker.process.returncode is None:
                worker.process.kill()
                await worker.process.wait()


@pytest.fixture
async def cluster(tmp_path: Path, site: Site, redis_server: RedisServer) -> AsyncIterator[Cluster]:
    cluster = Cluster(tmp_path, site, redis_server)
    yield cluster
    await cluster.kill_leftovers()


def assert_polite(site: Site) -> None:
    """Per-host concurrency the server saw, all workers together, stayed within the limit."""
    peaks = site.server.max_concurrency
    assert set(peaks) == set(HOSTS)
    assert max(peaks.values()) == PER_HOST, peaks  # the limit was reached ...
    assert all(peak <= PER_HOST for peak in peaks.values()), peaks  # ... and never passed


@pytest.mark.parametrize("site", [2, 3], indirect=True, ids=["2-workers", "3-workers"])
async def test_workers_share_one_crawl_exactly(
    site: Site, cluster: Cluster, redis_server: RedisServer
) -> None:
    job = f"share{site.workers}"
    workers = await cluster.start(job, site.workers)
    await cluster.finish(workers)
    items = [url for worker in workers for url in worker.items()]
    assert sorted(items) == sorted(site.urls())  # every page once, over all outputs
    assert Counter(site.server.paths_seen()).most_common(1)[0][1] == 1  # fetched once each
    assert {agent for agents in site.fetched_by.values() for agent in agents} == {
        worker.name for worker in workers
    }
    assert_polite(site)
    status = await read_status(redis_server.url, job)
    assert (status.state, status.done, status.queued, status.in_flight) == (
        "finished",
        len(site.urls()),
        0,
        0,
    )
    assert status.workers_alive == []  # each signed off when it finished


async def test_a_killed_worker_s_requests_are_fetched_by_the_others(
    site: Site, cluster: Cluster, redis_server: RedisServer
) -> None:
    # Slow pages: the victim works for seconds (several checkpoints) before it is killed,
    # so pages it finished long before the kill must have their items in its output.
    site.page_delay_s = 0.2
    site.trap_after = 100
    workers = await cluster.start("kill", 3)
    async with asyncio.timeout(GUARD_S):
        await site.trapped.wait()
    victim = next(worker for worker in workers if worker.name == site.victims[0])
    victim.process.send_signal(signal.SIGKILL)
    assert await victim.process.wait() == -signal.SIGKILL
    site.killed.set()
    survivors = [worker for worker in workers if worker is not victim]
    await cluster.finish(survivors)

    pages = {url.split("//")[1].replace(f":{site.server.port}", "") for url in site.urls()}
    assert set(site.fetched_by) == pages  # no page missing
    held = [agents for agents in site.fetched_by.values() if len(agents) > 1]
    assert held, "the page held at the kill was not fetched again"
    for page, agents in site.fetched_by.items():
        if len(agents) > 1:  # only what the victim held (or had not checkpointed) is fetched again
            assert agents[0] == victim.name and victim.name not in agents[1:], (page, agents)
    items = {url for worker in workers for url in worker.items()}
    assert items == site.urls()  # every page's item is written by someone
    assert_polite(site)
    status = await read_status(redis_server.url, "kill")
    assert status.state == "finished" and status.reclaimed >= 1
    assert [name.split(":")[1] for name in status.workers_gone] == [str(victim.process.pid)]


async def test_two_jobs_on_one_redis_do_not_mix(
    site: Site, cluster: Cluster, redis_server: RedisServer
) -> None:
    site.workers = 2
    first = await cluster.start("iso-a", 1)
    second = await cluster.start("iso-b", 1)
    await cluster.finish(first + second)
    for worker in first + second:  # each job crawls the whole site by itself
        assert sorted(worker.items()) == sorted(site.urls())
    assert Counter(Counter(site.server.paths_seen()).values()) == {2: len(site.urls())}
    for job in ("iso-a", "iso-b"):
        assert (await read_status(redis_server.url, job)).done == len(site.urls())
