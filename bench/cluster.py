"""Benchmark: one crawl spread over 1, 2 (, 4 ...) worker processes sharing a Redis frontier.

    .venv/bin/python bench/cluster.py --pages 3000 --hosts 16 --latency 0.05 --workers 1,2 \
        --concurrency 16 --repeat 3

Starts a ``redis-server`` (no persistence, a free port) and the generated site of
``site_server.py`` in its own process, answering every request after ``--latency``
seconds (a slow remote site: the crawl is bound by latency, not CPU, until the
machine's cores run out). Then, for each worker count, runs that many
``python -m crawler run`` processes with ``FRONTIER_URL`` and a fresh ``JOB``, each
with ``--concurrency`` requests in flight and ``--per-host`` as the cluster-wide
``CONCURRENCY_PER_HOST``; and once a single process on the in-memory frontier, for
reference. This is repeated ``--repeat`` times (the order of the runs reversed every other
round) and the medians are reported, with the speed-up of N Redis workers over one Redis
worker. PASS: 2 workers reach at least ``--target`` (1.6) times one worker's pages/s.

At 50 ms per page one process with CONCURRENCY=16 can do at most 16 / 0.05 = 320 pages/s,
two 640: the site (one asyncio process, ~0.1 ms of CPU per page) is far from saturated by
one worker, so the comparison measures how the frontier scales, not the site.
``CONCURRENCY_PER_HOST`` holds for the whole cluster on Redis, and the crawl reaches the
site's hosts unevenly at times (``peak/host`` 14 of 16 requests on one host for one
worker, 24 of 32 for two, on 16 hosts), so ``--per-host`` defaults to CONCURRENCY x the most
workers: the per-host limit caps neither one worker nor the cluster, and each run is bound
by its own CONCURRENCY alone (``in flight`` shows how close it gets).

Every run is checked: the site served every page exactly once, no unknown URL, and
the outputs hold one item per page. Reported per run:

* pages/s      -- pages / seconds from the first page served to the last (start-up excluded)
* wall s       -- from starting the processes to the last one exiting (start-up included)
* in flight    -- pages/s x latency: requests in flight on average (at most workers x CONCURRENCY)
* peak/host    -- the most requests one host saw at once, all processes together
* CPU ms/page  -- the workers' user + system CPU (whole processes, start-up included) / pages,
                 and Redis's (``INFO cpu``)

Then the Redis memory a crawl leaves: bytes per URL in the de-duplication set after
the crawls, and bytes per queued request (``--queue-sample`` requests pushed and
measured with ``INFO memory``). Results also go to ``--out`` as JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:0] = [str(HERE), str(ROOT)]

from frontier_memory import url_of  # noqa: E402
from site_server import SiteShape  # noqa: E402
from slow_site import serve_site  # noqa: E402

SPIDER = """
from crawler import Spider


class BenchSpider(Spider):
    name = "bench"

    def parse(self, response):
        title = response.css_first("title")
        yield {"url": response.url, "title": title.text() if title is not None else None}
        yield from response.follow_all()
"""

# -- the runner ----------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _get(port: int, path: str) -> dict[str, Any]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as answer:
        return dict(json.load(answer))


def _redis_memory(url: str) -> int:
    import redis

    client = redis.Redis.from_url(url)
    try:
        return int(client.info("memory")["used_memory"])
    finally:
        client.close()


def _redis_cpu(url: str | None) -> float:
    """Redis's user + system CPU seconds so far (0 without Redis)."""
    if not url:
        return 0.0
    import redis

    client = redis.Redis.from_url(url)
    try:
        info = client.info("cpu")
        return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])
    finally:
        client.close()


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _delete_queues(url: str, prefix: str) -> None:
    import redis

    client = redis.Redis.from_url(url)
    try:
        client.delete(prefix + "req", *client.scan_iter(match=prefix + "q:*"))
    finally:
        client.close()


def _run(
    workers: int, site: dict[str, Any], redis_url: str | None, args: argparse.Namespace, tmp: Path
) -> dict[str, Any]:
    port = site["port"]
    _get(port, "/__bench/reset")
    spider = tmp / "bench_spider.py"
    spider.write_text(SPIDER)
    job = f"bench-{workers}-{time.time_ns()}"
    resolve = json.dumps({host: "127.0.0.1" for host in site["hosts"]})
    common = [
        *("-a", "start_urls=" + ",".join(site["start_urls"])),
        *("-s", f"RESOLVE={resolve}", "-s", "PROGRESS_INTERVAL=0", "-s", "ROBOTSTXT_OBEY=false"),
        *("-s", f"CONCURRENCY={args.concurrency}", "-s", f"CONCURRENCY_PER_HOST={args.per_host}"),
        *("-s", "LOG_LEVEL=WARNING", "-s", "RETRY_TIMES=0"),
    ]
    if redis_url:
        common += ["-s", f"FRONTIER_URL={redis_url}", "-s", f"JOB={job}"]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    outputs = [tmp / f"{job}-{n}.jsonl" for n in range(workers)]
    cpu_before, redis_cpu_before = _children_cpu(), _redis_cpu(redis_url)
    started = time.monotonic()
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "crawler", "run", str(spider), "-o", str(out), *common],
            cwd=tmp,
            env=env,
            stderr=subprocess.PIPE,
        )
        for out in outputs
    ]
    errors = []
    for process in processes:
        _, stderr = process.communicate()
        if process.returncode != 0:
            errors.append(f"exit {process.returncode}: {stderr.decode()[-2000:]}")
    wall = time.monotonic() - started
    cpu = _children_cpu() - cpu_before
    redis_cpu = _redis_cpu(redis_url) - redis_cpu_before
    stats = _get(port, "/__bench/stats")
    items = sum(len(out.read_bytes().splitlines()) for out in outputs)
    problems = list(errors)
    if stats["unique"] != args.pages or stats["repeated"] or stats["not_found"]:
        problems.append(f"site counters wrong: {stats}")
    if items != args.pages:
        problems.append(f"{items} items written for {args.pages} pages")
    crawl_s = stats["crawl_s"] or wall
    return {
        "frontier": "redis" if redis_url else "memory",
        "workers": workers,
        "pages": stats["unique"],
        "pages_per_s": round(args.pages / crawl_s, 1),
        "crawl_s": round(crawl_s, 3),
        "wall_s": round(wall, 3),
        "in_flight": round(args.pages / crawl_s * args.latency, 1),
        "peak_per_host": stats["peak_per_host"],
        "cpu_ms_per_page": round(1000 * cpu / args.pages, 3),
        "redis_cpu_ms_per_page": round(1000 * redis_cpu / args.pages, 3),
        "problems": problems,
    }


async def _queue_memory(redis_url: str, count: int) -> dict[str, float]:
    """Bytes per queued request, and per URL in the seen set alone."""
    from crawler import Request
    from crawler.frontier.redis import RedisFrontier

    frontier = RedisFrontier(redis_url, job="bench-memory", flush_interval_s=0)
    await frontier.open()
    try:
        await frontier.reset()
        before = _redis_memory(redis_url)
        for start in range(0, count, 1000):
            await frontier.push(
                [
                    Request(url_of(n, 16))  # ~110 characters, as frontier_memory.py
                    for n in range(start, min(count, start + 1000))
                ]
            )
        queued = _redis_memory(redis_url)
        _delete_queues(redis_url, "crawler:{bench-memory}:")  # leaves the seen set
        seen_only = _redis_memory(redis_url)
        await frontier.reset()
    finally:
        await frontier.close()
    return {
        "bytes_per_queued_request": round((queued - before) / count, 1),
        "bytes_per_seen_url": round((seen_only - before) / count, 1),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pages", type=int, default=3000)
    parser.add_argument("--hosts", type=int, default=16)
    parser.add_argument("--latency", type=float, default=0.05, help="seconds per response")
    parser.add_argument("--workers", default="1,2", help="worker process counts to run")
    parser.add_argument("--concurrency", type=int, default=16, help="CONCURRENCY per process")
    parser.add_argument(
        "--per-host",
        type=int,
        default=0,
        help="CONCURRENCY_PER_HOST, cluster-wide on Redis (default: concurrency x most workers)",
    )
    parser.add_argument("--repeat", type=int, default=3, help="rounds; medians are reported")
    parser.add_argument("--target", type=float, default=1.6, help="PASS: 2 workers / 1 worker")
    parser.add_argument("--queue-sample", type=int, default=100_000)
    parser.add_argument("--no-memory-frontier", action="store_true")
    parser.add_argument("--out", default=str(Path(tempfile.gettempdir()) / "crawler-cluster.json"))
    parser.add_argument("--serve-site", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if not args.per_host:
        args.per_host = args.concurrency * max(int(n) for n in args.workers.split(","))
    if args.serve_site:
        asyncio.run(serve_site(SiteShape(args.pages, args.hosts), args.latency))
        return
    binary = shutil.which("redis-server")
    if binary is None:
        sys.exit("redis-server is not installed (apt-get install redis-server)")
    with tempfile.TemporaryDirectory(prefix="crawler-cluster-") as folder:
        tmp = Path(folder)
        redis_port = _free_port()
        redis_url = f"redis://127.0.0.1:{redis_port}/0"
        redis_server = subprocess.Popen(
            [binary, "--port", str(redis_port), "--bind", "127.0.0.1", "--save", ""]  # noqa: RUF005
            + ["--appendonly", "no", "--dir", folder, "--loglevel", "warning"],
            stdout=subprocess.DEVNULL,
        )
        site_args = [sys.executable, __file__, "--serve-site", "--pages", str(args.pages)]
        site_args += ["--hosts", str(args.hosts), "--latency", str(args.latency)]
        server = subprocess.Popen(site_args, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        try:
            assert server.stdout is not None
            site = json.loads(server.stdout.readline())
            for _ in range(100):
                try:
                    _redis_memory(redis_url)
                    break
                except Exception:
                    time.sleep(0.05)
            plan: list[tuple[int, bool]] = [] if args.no_memory_frontier else [(1, False)]
            plan += [(int(n), True) for n in args.workers.split(",")]
            runs = []
            for round_no in range(args.repeat):
                for count, on_redis in plan if round_no % 2 == 0 else plan[::-1]:
                    base = _redis_memory(redis_url)
                    run = _run(count, site, redis_url if on_redis else None, args, tmp)
                    run["round"] = round_no + 1
                    if on_redis:
                        run["redis_bytes_per_url"] = round(
                            (_redis_memory(redis_url) - base) / args.pages, 1
                        )
                    runs.append(run)
                    _print_run(run, header=not runs[:-1])
            memory = (
                asyncio.run(_queue_memory(redis_url, args.queue_sample))
                if args.queue_sample
                else None
            )
        finally:
            server.communicate(b"")
            redis_server.terminate()
            redis_server.wait()
    print(
        f"\nsite: {args.pages} pages on {args.hosts} hosts,"
        f" {args.latency * 1000:.0f} ms per response;"
        f" CONCURRENCY={args.concurrency} per process, CONCURRENCY_PER_HOST={args.per_host};"
        f" {os.cpu_count()} CPUs; median of {args.repeat}"
    )
    summary = []
    for count, on_redis in plan:
        frontier = "redis" if on_redis else "memory"
        group = [r for r in runs if r["frontier"] == frontier and r["workers"] == count]
        row: dict[str, Any] = {"frontier": frontier, "workers": count, "runs": len(group)}
        for key in ("pages_per_s", "crawl_s", "wall_s", "in_flight", "cpu_ms_per_page"):
            row[key] = round(statistics.median(r[key] for r in group), 3)
        row["redis_cpu_ms_per_page"] = round(
            statistics.median(r["redis_cpu_ms_per_page"] for r in group), 3
        )
        row["peak_per_host"] = max(r["peak_per_host"] for r in group)
        row["all_pages_per_s"] = [r["pages_per_s"] for r in group]
        summary.append(row)
        _print_run(row, header=len(summary) == 1)
    one = next((r for r in summary if r["frontier"] == "redis" and r["workers"] == 1), None)
    verdict = None
    for row in summary:
        if one is not None and row["frontier"] == "redis" and row["workers"] > 1:
            row["speedup"] = round(row["pages_per_s"] / one["pages_per_s"], 2)
            line = (
                f"{row['workers']} Redis workers / 1 Redis worker: {row['speedup']:.2f}x pages/s"
                f" ({row['pages_per_s']:.1f} / {one['pages_per_s']:.1f})"
            )
            if row["workers"] == 2:
                verdict = row["speedup"] >= args.target
                line += f" -> {'PASS' if verdict else 'FAIL'} (target {args.target}x)"
            print(line)
    if memory is not None:
        print(
            f"redis memory: {memory['bytes_per_seen_url']} bytes per URL in the seen set,"
            f" {memory['bytes_per_queued_request']} bytes per queued request"
            f" ({args.queue_sample} pushed, ~110-character URLs; all backends:"
            " bench/frontier_memory.py)"
        )
    report = {"args": vars(args), "summary": summary, "runs": runs, "memory": memory}
    Path(args.out).write_text(json.dumps(report, indent=2))
    problems = [(run["frontier"], run["workers"], p) for run in runs for p in run["problems"]]
    for problem in problems:
        print("PROBLEM", *problem)
    sys.exit(1 if problems or verdict is False else 0)


def _print_run(run: dict[str, Any], header: bool) -> None:
    if header:
        print(
            f"{'frontier':<9}{'workers':>8}{'round':>6}{'pages/s':>9}{'crawl s':>9}{'wall s':>8}"
            f"{'in flight':>10}{'peak/host':>10}{'CPU ms/page':>12}{'redis':>7}",
            flush=True,
        )
    print(
        f"{run['frontier']:<9}{run['workers']:>8}{run.get('round', 'med'):>6}"
        f"{run['pages_per_s']:>9.1f}{run['crawl_s']:>9.2f}{run['wall_s']:>8.2f}"
        f"{run['in_flight']:>10.1f}{run['peak_per_host']:>10}{run['cpu_ms_per_page']:>12.2f}"
        f"{run['redis_cpu_ms_per_page']:>7.2f}",
        flush=True,
    )


if __name__ == "__main__":
    main()
