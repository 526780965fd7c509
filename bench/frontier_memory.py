"""Memory per queued request in each frontier backend: memory, SQLite and Redis.

    .venv/bin/python bench/frontier_memory.py --count 100000

Each backend runs in its own child process, which opens a fresh frontier, pushes
``--count`` distinct requests of a realistic URL length (``https://www.shop7.example.com/
catalog/garden/tools/item-123456-stainless-steel-hand-trowel.html?ref=nav``, ~110
characters, over ``--hosts`` hosts) in batches of 1000, and measures what the queue
costs, divided by ``--count``:

* memory -- ``tracemalloc``: Python allocations still live after the pushes (the
  ``Request`` objects, the host heaps, the fingerprint set), and the process RSS delta
  (``VmRSS`` from ``/proc``; tracemalloc runs in a separate child so it does not
  inflate the RSS).
* sqlite -- the state file on disk (``frontier.db`` + its WAL after a full flush, and
  ``frontier.db`` alone after ``close``, which checkpoints the WAL), and the process RSS
  delta. The frontier is configured as ``make_frontier`` does for ``--state`` (only
  explicit flushes: one every 10 batches, as the engine's checkpoints would).
* redis -- ``INFO memory`` ``used_memory`` of a fresh ``redis-server`` (started here,
  no persistence; or ``--redis-url``) before and after the pushes, and again after
  deleting the pending queues (``q:*`` and ``req``), which leaves the de-duplication set:
  bytes per URL that the seen set keeps for the whole crawl.

The requests are built batch by batch and dropped after each push, so only what the
frontier keeps is counted. A JSON report goes to stdout last (and ``--out``).
Nothing is written into the repository.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
BATCH = 1000

_SECTIONS = ("garden", "kitchen", "books", "toys", "sports", "office", "music", "tools")
_SUBSECTIONS = ("tools", "accessories", "new-arrivals", "bestsellers", "outdoor", "spare-parts")
_SLUGS = (
    "stainless-steel-hand-trowel",
    "ergonomic-pruning-shears-with-lock",
    "cast-iron-skillet-28cm",
    "wooden-building-blocks-set",
    "waterproof-hiking-backpack-35l",
    "wireless-noise-cancelling-headphones",
)


def url_of(n: int, hosts: int) -> str:
    """A realistic product URL (~110 characters), page ``n`` on host ``n % hosts``."""
    return (
        f"https://www.shop{n % hosts}.example.com/catalog/{_SECTIONS[n % 8]}"
        f"/{_SUBSECTIONS[(n // 8) % 6]}/item-{n}-{_SLUGS[(n // 48) % 6]}.html?ref=nav"
    )


def _rss_bytes() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def _file_sizes(folder: Path) -> dict[str, int]:
    return {p.name: p.stat().st_size for p in folder.glob("frontier.db*")}


def _redis_used_memory(url: str) -> int:
    import redis

    client = redis.Redis.from_url(url)
    try:
        return int(client.info("memory")["used_memory"])
    finally:
        client.close()


# -- one backend, in a child process ----------------------------------------------------


async def _measure(args: argparse.Namespace) -> dict[str, Any]:
    sys.path.insert(1, str(REPO))
    import math
    import tracemalloc

    from crawler import Request
    from crawler.frontier import MemoryFrontier, PolitenessPolicy

    policy = PolitenessPolicy()
    backend, count = args.backend, args.count
    tmp = Path(args.tmp)
    frontier: Any
    if backend == "memory":
        frontier = MemoryFrontier(policy)
    elif backend == "sqlite":
        from crawler.frontier.sqlite import SqliteFrontier

        frontier = SqliteFrontier(  # as make_frontier configures it for STATE_DIR
            tmp / "frontier.db",
            policy,
            window=max(16, 2 * policy.per_host),
            flush_ops=2**62,
            flush_interval_s=math.inf,
        )
    else:
        from crawler.frontier.redis import RedisFrontier

        frontier = RedisFrontier(
            args.redis_url, job="bench-frontier-memory", policy=policy, flush_interval_s=math.inf
        )
    await frontier.open()
    if backend == "redis":
        await frontier.reset()
    # warm up: the first push loads fingerprinting, the codec, the Lua scripts ...
    await frontier.push([Request(url_of(count + n, args.hosts)) for n in range(10)])
    if backend == "sqlite":
        await frontier.flush()
    gc.collect()
    if args.trace:
        tracemalloc.start()
    traced_before = tracemalloc.get_traced_memory()[0] if args.trace else 0
    rss_before = _rss_bytes()
    redis_before = _redis_used_memory(args.redis_url) if backend == "redis" else 0
    started = time.perf_counter()
    url_chars = 0
    for batch, start in enumerate(range(0, count, BATCH)):
        requests = [Request(url_of(n, args.hosts)) for n in range(start, min(count, start + BATCH))]
        url_chars += sum(len(r.url) for r in requests)
        accepted = await frontier.push(requests)
        assert all(accepted), "a request was refused as a duplicate"
        del requests, accepted
        if backend == "sqlite" and batch % 10 == 9:
            await frontier.flush()
    if backend == "sqlite":
        await frontier.flush()
    push_s = time.perf_counter() - started
    gc.collect()
    result: dict[str, Any] = {
        "backend": backend,
        "count": count,
        "hosts": args.hosts,
        "mean_url_chars": round(url_chars / count, 1),
        "push_s": round(push_s, 2),
        "rss_bytes_per_request": round((_rss_bytes() - rss_before) / count, 1),
    }
    counts = await frontier.counts()
    result["queued"] = counts.queued
    if args.trace:
        result["traced_bytes_per_request"] = round(
            (tracemalloc.get_traced_memory()[0] - traced_before) / count, 1
        )
        tracemalloc.stop()
    if backend == "sqlite":
        files = _file_sizes(tmp)
        result["file_bytes_per_request"] = round(sum(files.values()) / count, 1)
        result["files_after_flush"] = files
        result["loaded"] = frontier.loaded_count()
    if backend == "redis":
        queued = _redis_used_memory(args.redis_url)
        result["redis_bytes_per_request"] = round((queued - redis_before) / count, 1)
        import redis

        client = redis.Redis.from_url(args.redis_url)
        prefix = "crawler:{bench-frontier-memory}:"
        try:
            client.delete(prefix + "req", *client.scan_iter(match=prefix + "q:*"))
        finally:
            client.close()
        seen_only = _redis_used_memory(args.redis_url)
        result["redis_seen_bytes_per_url"] = round((seen_only - redis_before) / count, 1)
        await frontier.reset()
    await frontier.close()
    if backend == "sqlite":
        db_bytes = _file_sizes(tmp)["frontier.db"]
        result["db_bytes_per_request_after_close"] = round(db_bytes / count, 1)
    result["peak_rss_mb"] = round(_peak_rss() / 2**20, 1)
    return result


def _peak_rss() -> int:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _child(args: argparse.Namespace, backend: str, trace: bool, redis_url: str) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="crawler-frontier-memory-") as tmp:
        cmd = [sys.executable, __file__, "--one", backend, "--count", str(args.count)]
        cmd += ["--hosts", str(args.hosts), "--tmp", tmp, "--redis-url", redis_url]
        if trace:
            cmd.append("--trace")
        out = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, check=True).stdout
        return dict(json.loads(out.strip().splitlines()[-1]))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=100_000, help="requests queued")
    parser.add_argument("--hosts", type=int, default=100)
    parser.add_argument("--backends", default="memory,sqlite,redis")
    parser.add_argument("--redis-url", default="", help="use this Redis (default: start one)")
    parser.add_argument("--out", default=None, help="also write the JSON report here")
    parser.add_argument("--one", default=None, help=argparse.SUPPRESS)  # internal: the child
    parser.add_argument("--trace", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--tmp", default="", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:
        args.backend = args.one
        print(json.dumps(asyncio.run(_measure(args))), flush=True)
        return 0

    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    redis_server = None
    redis_url = args.redis_url
    folder = tempfile.mkdtemp(prefix="crawler-frontier-memory-redis-")
    try:
        if "redis" in backends and not redis_url:
            binary = shutil.which("redis-server")
            if binary is None:
                sys.exit("redis-server is not installed (apt-get install redis-server)")
            port = _free_port()
            redis_url = f"redis://127.0.0.1:{port}/0"
            redis_server = subprocess.Popen(
                [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", ""]  # noqa: RUF005
                + ["--appendonly", "no", "--dir", folder, "--loglevel", "warning"],
                stdout=subprocess.DEVNULL,
            )
            for _ in range(100):
                try:
                    _redis_used_memory(redis_url)
                    break
                except Exception:
                    time.sleep(0.05)
        results: dict[str, dict[str, Any]] = {}
        for backend in backends:
            results[backend] = _child(args, backend, False, redis_url)
            if backend == "memory":
                traced = _child(args, backend, True, redis_url)
                results[backend]["traced_bytes_per_request"] = traced["traced_bytes_per_request"]
            print(f"{backend}: {json.dumps(results[backend])}", file=sys.stderr)
    finally:
        if redis_server is not None:
            redis_server.terminate()
            redis_server.wait()
        shutil.rmtree(folder, ignore_errors=True)

    first = next(iter(results.values()))
    print(
        f"\n{args.count:,} distinct requests queued, URLs of {first['mean_url_chars']} characters"
        f" on average over {args.hosts} hosts; bytes per queued request:",
        file=sys.stderr,
    )
    for backend, r in results.items():
        if backend == "memory":
            line = (
                f"Python heap (tracemalloc) {r['traced_bytes_per_request']:>7}"
                f"   process RSS {r['rss_bytes_per_request']:>7}"
            )
        elif backend == "sqlite":
            line = (
                f"file (db + WAL) {r['file_bytes_per_request']:>7}"
                f"   db after close {r['db_bytes_per_request_after_close']:>7}"
                f"   process RSS {r['rss_bytes_per_request']:>7}"
                f" ({r['loaded']:,} requests held in memory)"
            )
        else:
            line = (
                f"Redis used_memory {r['redis_bytes_per_request']:>7}"
                f"   (of which the seen set {r['redis_seen_bytes_per_url']})"
                f"   client RSS {r['rss_bytes_per_request']:>7}"
            )
        print(f"  {backend:<7} {line}   (peak RSS {r['peak_rss_mb']} MB)", file=sys.stderr)
    report = {"params": {k: v for k, v in vars(args).items()}, "results": results}
    text = json.dumps(report, indent=2)
    if args.out:
        Path(args.out).write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
