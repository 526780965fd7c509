"""Frontier scale: a crawl whose queue passes 1,000,000 URLs, and push/lease/ack cost by size.

    /work/venv/bin/python bench/frontier_scale.py crawl --pages 1100 --links 1000
    /work/venv/bin/python bench/frontier_scale.py ops --sizes 10000,100000,1000000

``crawl`` starts a generated site in its own process on loopback (a bare asyncio
``Protocol``, like ``site_server.py``): page ``/p/<n>`` links to ``/p/<n*L+1>`` ..
``/p/<n*L+L>`` (``L`` = ``--links``), page ``m`` living on host ``h<m % hosts>.scale``,
so every link is a new URL and the queue grows by ``L - 1`` per page. It then runs
``python -m crawler run`` on a small spider with ``--state`` (the SQLite frontier),
``MAX_PAGES=--pages`` and ``RESOLVE`` to 127.0.0.1, in a child process whose peak RSS
is ``ru_maxrss`` from ``os.wait4``. After the run it opens ``frontier.db`` read-only
and counts its rows by state. PASS: more than 1,000,000 queued and peak RSS under 300 MB.

``ops`` fills a fresh :class:`SqliteFrontier` (a real file in a temp folder) to each
size with pushes of 1000 requests over ``--hosts`` hosts, flushing every 10 batches,
then times ``--cycles`` cycles of push (one new request) + lease + ack, with a full
flush every ``--flush-every`` cycles (as the engine's checkpoints do). Each size runs
in its own child process, ``--repeat`` times (sizes interleaved; medians reported). PASS:
the µs per cycle (median of 10 rounds) at the largest size is at most ``--max-growth``
times the one at the smallest.

Both parts stop by themselves (``--timeout``) and print a JSON report last
(``--out`` also writes it to a file). Nothing is written into the repository.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import resource
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, ClassVar

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
RSS_LIMIT_MB = 300
QUEUE_TARGET = 1_000_000
STATE_NAMES = ("pending", "leased", "done", "failed", "delayed", "seen")

SPIDER = '''\
"""Spider for bench/frontier_scale.py: one item per page, follow every link."""

from crawler import Spider


class ScaleSpider(Spider):
    name = "frontier_scale"

    async def parse(self, response):
        yield {"url": response.url}
        for request in response.follow_all():
            yield request
'''


def host_name(k: int) -> str:
    return f"h{k}.scale"


# -- the site ---------------------------------------------------------------------------


class ScaleSite(asyncio.Protocol):
    """Keep-alive GETs of /p/<n>, each page rendered from its number; ``/__scale/stats``."""

    counters: ClassVar[dict[str, int]] = {"served": 0, "bytes": 0, "not_found": 0, "wrong_host": 0}
    port = 0
    links = 1000
    hosts = 8

    def __init__(self) -> None:
        self.buffer = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer + data if self.buffer else data
        transport = self.transport
        assert transport is not None
        while True:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                break
            head = buffer[:end]
            buffer = buffer[end + 4 :]
            line_end = head.find(b"\r\n")
            try:
                _method, target, _version = head[: line_end if line_end >= 0 else None].split(
                    b" ", 2
                )
            except ValueError:
                transport.close()
                return
            lower = head.lower()
            at = lower.find(b"\r\nhost:")
            host = b""
            if at >= 0:
                stop = lower.find(b"\r\n", at + 7)
                host = lower[at + 7 : stop if stop >= 0 else None].strip().split(b":", 1)[0]
            transport.write(self.answer(host, target))
        self.buffer = buffer

    @classmethod
    def answer(cls, host: bytes, target: bytes) -> bytes:
        counters = cls.counters
        if target.startswith(b"/p/") and target[3:].isdigit():
            n = int(target[3:])
            if host != host_name(n % cls.hosts).encode():
                counters["wrong_host"] += 1
                return _response(404, b"wrong host", "text/plain")
            body = cls.page(n)
            counters["served"] += 1
            counters["bytes"] += len(body)
            return _response(200, body, "text/html; charset=utf-8")
        if target == b"/__scale/stats":
            return _response(200, json.dumps(counters).encode(), "application/json")
        counters["not_found"] += 1
        return _response(404, b"not found", "text/plain")

    @classmethod
    def page(cls, n: int) -> bytes:
        port, hosts, first = cls.port, cls.hosts, n * cls.links + 1
        items = "".join(
            f'<li><a href="http://h{m % hosts}.scale:{port}/p/{m}">{m}</a></li>\n'
            for m in range(first, first + cls.links)
        )
        return (
            f"<!DOCTYPE html>\n<html><head><title>Page {n}</title></head>"
            f"<body><h1>Page {n}</h1><ul>\n{items}</ul></body></html>\n"
        ).encode()


def _response(status: int, body: bytes, content_type: str) -> bytes:
    reason = "OK" if status == 200 else "Not Found"
    return (
        f"HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\nConnection: keep-alive\r\n\r\n"
    ).encode() + body


async def serve(links: int, hosts: int) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(1024)
    ScaleSite.port = sock.getsockname()[1]
    ScaleSite.links, ScaleSite.hosts = links, hosts
    loop = asyncio.get_running_loop()
    server = await loop.create_server(ScaleSite, sock=sock, backlog=1024)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(json.dumps({"port": ScaleSite.port}), flush=True)
    async with server:
        await stop.wait()


def site_stats(port: int) -> dict[str, Any]:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        conn.sendall(b"GET /__scale/stats HTTP/1.1\r\nHost: h0.scale\r\n\r\n")
        data = b""
        while b"}" not in data:
            chunk = conn.recv(65536)
            if not chunk:
                break
            data += chunk
    return json.loads(data.split(b"\r\n\r\n", 1)[1])


# -- part 1: the crawl --------------------------------------------------------------------


def _affinity(cpu: int | None) -> Any:
    if cpu is None or not hasattr(os, "sched_setaffinity"):
        return None
    return lambda: os.sched_setaffinity(0, {cpu})


def _rss_mb(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


_PROGRESS = re.compile(r"(\d+) pages \(.*?\), (\d+) items, (\d+) queued")


def frontier_rows(db_path: Path) -> dict[str, int]:
    """Rows of the state file by state, read-only, after the crawl closed it."""
    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        rows = conn.execute("SELECT state, COUNT(*) FROM requests GROUP BY state").fetchall()
    finally:
        conn.close()
    return {STATE_NAMES[state] if state < len(STATE_NAMES) else str(state): n for state, n in rows}


def crawl(args: argparse.Namespace) -> int:
    pin = (os.cpu_count() or 1) >= 2 and not args.no_pin
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    site_cpu, crawl_cpu = (cpus[0], cpus[1]) if pin and len(cpus) >= 2 else (None, None)
    site = subprocess.Popen(
        [sys.executable, __file__, "serve", "--links", str(args.links), "--hosts", str(args.hosts)],
        stdout=subprocess.PIPE,
        text=True,
        preexec_fn=_affinity(site_cpu),
    )
    assert site.stdout is not None
    line = site.stdout.readline()
    if not line:
        site.wait()
        raise SystemExit(f"site exited with {site.returncode} before it was ready")
    port = json.loads(line)["port"]
    try:
        with tempfile.TemporaryDirectory(prefix="crawler-scale-") as tmp:
            report = _crawl_once(args, port, Path(tmp), crawl_cpu)
    finally:
        site.terminate()
        site.wait()
    return _finish(report, args, report["pass"])


def _crawl_once(args: argparse.Namespace, port: int, tmp: Path, cpu: int | None) -> dict[str, Any]:
    spider = tmp / "scale_spider.py"
    spider.write_text(SPIDER)
    state, items, stats_file, log = (
        tmp / "state",
        tmp / "items.jsonl",
        tmp / "stats.json",
        tmp / "log",
    )
    resolve = ",".join(f"{host_name(k)}:127.0.0.1" for k in range(args.hosts))
    settings = {
        "MAX_PAGES": args.pages,
        "CONCURRENCY": args.concurrency,
        "CONCURRENCY_PER_HOST": args.concurrency,
        "ROBOTSTXT_OBEY": "false",
        "PROGRESS_INTERVAL": args.progress,
        "RESOLVE": resolve,
    }
    cmd = [sys.executable, "-m", "crawler", "run", str(spider), "--state", str(state)]
    cmd += ["-a", f"start_urls=http://{host_name(0)}:{port}/p/0"]
    for name, value in settings.items():
        cmd += ["-s", f"{name}={value}"]
    cmd += ["-o", str(items), "--stats", str(stats_file)]
    env = dict(
        os.environ,
        PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
    )
    print(
        f"crawling {args.pages} pages x {args.links} links over {args.hosts} hosts"
        f" (concurrency {args.concurrency}, state in {state})",
        file=sys.stderr,
    )
    started = time.perf_counter()
    with open(log, "wb") as log_out, open(log, "rb") as log_in:
        proc = subprocess.Popen(
            cmd,
            cwd=REPO,
            env=env,
            stdout=log_out,
            stderr=subprocess.STDOUT,
            preexec_fn=_affinity(cpu),
        )
        samples: list[dict[str, Any]] = []  # (seconds, RSS MB, pages, queued)
        pages = queued = 0
        tail = b""
        timed_out = False
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            elapsed = time.perf_counter() - started
            tail += log_in.read()
            *done_lines, tail = tail.split(b"\n")
            for raw in done_lines:
                match = _PROGRESS.search(raw.decode(errors="replace"))
                if match:
                    pages, queued = int(match[1]), int(match[3])
                    print(f"  {raw.decode(errors='replace').strip()}", file=sys.stderr)
            rss = _rss_mb(proc.pid)
            if rss is not None:
                samples.append(
                    {
                        "s": round(elapsed, 1),
                        "rss_mb": round(rss, 1),
                        "pages": pages,
                        "queued": queued,
                    }
                )
            if elapsed > args.timeout and not timed_out:
                timed_out = True
                print(f"timeout after {args.timeout}s: stopping the crawl", file=sys.stderr)
                proc.send_signal(signal.SIGINT)
            elif timed_out and elapsed > args.timeout + 60:
                proc.kill()
            time.sleep(0.2)
        wall = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
    output = log.read_text(errors="replace")
    stats = json.loads(stats_file.read_text()) if stats_file.exists() else {}
    rows = frontier_rows(state / "frontier.db") if (state / "frontier.db").exists() else {}
    item_lines = 0
    if items.exists():
        with open(items, "rb") as f:
            item_lines = sum(1 for _ in f)
    peak_mb = usage.ru_maxrss / 1024  # Linux: KiB
    queued_final = rows.get("pending", 0) + rows.get("leased", 0) + rows.get("delayed", 0)
    crawl_pages = stats.get("pages", 0)
    report = {
        "part": "crawl",
        "params": {k: v for k, v in vars(args).items() if k != "func"} | {"cmd": cmd},
        "exit_code": proc.returncode,
        "timed_out": timed_out,
        "pages": crawl_pages,
        "items": item_lines,
        "finish_reason": stats.get("finish_reason"),
        "frontier_rows": rows,
        "queued_final": queued_final,
        "db_mb": round(sum(p.stat().st_size for p in state.glob("frontier.db*")) / 2**20, 1),
        "crawl_s": stats.get("elapsed_s"),
        "process_wall_s": round(wall, 2),
        "process_cpu_s": round(usage.ru_utime + usage.ru_stime, 2),
        "pages_per_s": stats.get("pages_per_s"),
        "peak_rss_mb": round(peak_mb, 1),
        "rss_timeline": _thin(samples, 20),
        "site": site_stats(port),
        "stats": {k: v for k, v in stats.items() if not isinstance(v, (dict, list))},
    }
    problems = []
    if proc.returncode != 0:
        problems.append(f"crawler exited with {proc.returncode}: {output[-2000:]}")
    if queued_final <= QUEUE_TARGET:
        problems.append(f"frontier reached only {queued_final} queued (need > {QUEUE_TARGET})")
    if peak_mb >= RSS_LIMIT_MB:
        problems.append(f"peak RSS {peak_mb:.1f} MB >= {RSS_LIMIT_MB} MB")
    if report["site"]["not_found"] or report["site"]["wrong_host"]:
        problems.append(f"site saw bad requests: {report['site']}")
    report["problems"] = problems
    report["pass"] = not problems
    print(
        f"\npages crawled      {crawl_pages} ({item_lines} items,"
        f" finish: {stats.get('finish_reason')})"
        f"\nqueued at the end  {queued_final:,} (frontier.db rows: {rows}, {report['db_mb']} MB)"
        f"\ncrawl time         {report['crawl_s']} s crawl, {wall:.1f} s process,"
        f" {report['process_cpu_s']} s CPU"
        f"\npeak RSS           {peak_mb:.1f} MB (limit {RSS_LIMIT_MB} MB)"
        f"\nRSS over time      "
        + ", ".join(
            f"{s['s']:.0f}s:{s['rss_mb']:.0f}MB@{s['queued']:,}q" for s in _thin(samples, 8)
        )
        + f"\n-> {'PASS' if report['pass'] else 'FAIL: ' + '; '.join(problems)}",
        file=sys.stderr,
    )
    return report


def _thin(samples: list[dict[str, Any]], n: int) -> list[dict[str, Any]]:
    if len(samples) <= n:
        return samples
    step = (len(samples) - 1) / (n - 1)
    return [samples[round(i * step)] for i in range(n)]


# -- part 2: push / lease / ack cost by queue size ---------------------------------------------


def ops(args: argparse.Namespace) -> int:
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    runs: dict[int, list[dict[str, Any]]] = {size: [] for size in sizes}
    first = True
    for rep in range(args.repeat):  # sizes interleaved, so slow phases of the machine spread
        for size in sizes:
            result = _ops_child(args, size)
            runs[size].append(result)
            _print_ops_row(result, f"{rep + 1}", header=first)
            first = False
    keys = ("push_us", "lease_us", "ack_us", "flush_us", "cycle_us", "cycle_round_median_us")
    keys += ("cycle_cpu_us", "cycle_p99_us", "fill_s", "fill_us_per_request", "peak_rss_mb")
    summary = [
        {"size": size, "runs": len(rs), "loaded": rs[0]["loaded"]}
        | {k: round(statistics.median(r[k] for r in rs), 2) for k in keys}
        for size, rs in runs.items()
    ]
    if args.repeat > 1:
        print(f"median of {args.repeat} runs:", file=sys.stderr)
        for row in summary:
            _print_ops_row(row, "med", header=False)
    metric = "cycle_round_median_us"
    base, last = summary[0][metric], summary[-1][metric]
    growth = last / base if base else float("inf")
    cpu_growth = summary[-1]["cycle_cpu_us"] / summary[0]["cycle_cpu_us"]
    ok = growth <= args.max_growth
    print(
        f"\nµs per push+lease+ack cycle at {summary[-1]['size']:,} / at {summary[0]['size']:,}:"
        f" {growth:.2f}x wall, {cpu_growth:.2f}x CPU (limit {args.max_growth}x)"
        f" -> {'PASS' if ok else 'FAIL'}",
        file=sys.stderr,
    )
    report = {
        "part": "ops",
        "params": {k: v for k, v in vars(args).items() if k != "func"},
        "summary": summary,
        "runs": runs,
        "growth": round(growth, 3),
        "cpu_growth": round(cpu_growth, 3),
        "pass": ok,
    }
    return _finish(report, args, ok)


def _ops_child(args: argparse.Namespace, size: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="crawler-scale-ops-") as tmp:
        cmd = [sys.executable, __file__, "ops-one", "--size", str(size)]
        cmd += ["--hosts", str(args.hosts), "--cycles", str(args.cycles)]
        cmd += ["--flush-every", str(args.flush_every), "--path", str(Path(tmp) / "frontier.db")]
        started = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
        try:
            output, _ = proc.communicate(timeout=args.timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            raise SystemExit(f"ops at size {size} took more than {args.timeout}s") from None
        if proc.returncode != 0:
            raise SystemExit(f"ops at size {size} exited with {proc.returncode}")
        result: dict[str, Any] = json.loads(output.strip().splitlines()[-1])
        result["process_wall_s"] = round(time.perf_counter() - started, 1)
        return result


def _print_ops_row(r: dict[str, Any], run: str, header: bool) -> None:
    if header:
        print(
            f"{'run':>4}{'size':>11}{'fill s':>7}{'fill µs/req':>12}{'push':>8}{'lease':>8}"
            f"{'ack':>6}{'flush':>7}{'cycle':>8}{'cyc med':>9}{'cyc CPU':>9}{'p99':>7}"
            f"{'loaded':>7}{'RSS MB':>8}   (µs per op)",
            file=sys.stderr,
        )
    print(
        f"{run:>4}{r['size']:>11,}{r['fill_s']:>7.1f}{r['fill_us_per_request']:>12.1f}"
        f"{r['push_us']:>8.1f}{r['lease_us']:>8.1f}{r['ack_us']:>6.1f}{r['flush_us']:>7.1f}"
        f"{r['cycle_us']:>8.1f}{r['cycle_round_median_us']:>9.1f}{r['cycle_cpu_us']:>9.1f}"
        f"{r['cycle_p99_us']:>7.0f}{r['loaded']:>7}{r['peak_rss_mb']:>8.1f}",
        file=sys.stderr,
    )


def ops_one(args: argparse.Namespace) -> int:
    sys.path.insert(1, str(REPO))
    from crawler import Request
    from crawler.frontier.base import PolitenessPolicy
    from crawler.frontier.sqlite import SqliteFrontier

    hosts = [f"o{k}.scale" for k in range(args.hosts)]

    def make(start: int, count: int) -> list[Any]:
        return [
            Request(f"http://{hosts[i % len(hosts)]}/p/{i}") for i in range(start, start + count)
        ]

    async def run() -> dict[str, Any]:
        frontier = SqliteFrontier(
            args.path,
            PolitenessPolicy(per_host=1_000_000, delay_s=0.0),
            flush_ops=2**62,  # as make_frontier: only explicit flushes (the engine's checkpoints)
            flush_interval_s=float("inf"),
        )
        await frontier.open()
        started = time.perf_counter()
        batch = 1000
        for n, start in enumerate(range(0, args.size, batch)):
            await frontier.push(make(start, min(batch, args.size - start)))
            if n % 10 == 9:
                await frontier.flush()
        await frontier.flush()
        fill_s = time.perf_counter() - started
        counts = await frontier.counts()
        assert counts.queued == args.size, counts
        clock = time.perf_counter_ns
        push_ns = lease_ns = ack_ns = flush_ns = 0
        cycles: list[int] = []
        next_url = args.size
        cpu_started = time.process_time()  # both threads: the loop's and aiosqlite's
        for n in range(args.cycles):
            fresh = make(next_url, 1)
            next_url += 1
            t0 = clock()
            (pushed,) = await frontier.push(fresh)
            t1 = clock()
            lease = await frontier.lease()
            t2 = clock()
            assert lease is not None and pushed
            await frontier.ack(lease)
            t3 = clock()
            if n % args.flush_every == args.flush_every - 1:
                await frontier.flush()
            t4 = clock()
            push_ns += t1 - t0
            lease_ns += t2 - t1
            ack_ns += t3 - t2
            flush_ns += t4 - t3
            cycles.append(t4 - t0)
        cpu_s = time.process_time() - cpu_started
        counts = await frontier.counts()
        loaded = frontier.loaded_count()
        await frontier.close()
        c = args.cycles
        # Wall time is noisy (every call is a hop to aiosqlite's thread and back): the
        # median over 10 rounds of the mean cycle time drops bursts of outside load.
        per_round = max(1, c // 10)
        rounds = [
            sum(cycles[i : i + per_round]) / len(cycles[i : i + per_round])
            for i in range(0, c, per_round)
        ]
        cycles.sort()
        return {
            "size": args.size,
            "hosts": args.hosts,
            "cycles": c,
            "fill_s": round(fill_s, 2),
            "fill_us_per_request": round(1e6 * fill_s / args.size, 2),
            "push_us": round(push_ns / c / 1000, 2),
            "lease_us": round(lease_ns / c / 1000, 2),
            "ack_us": round(ack_ns / c / 1000, 2),
            "flush_us": round(flush_ns / c / 1000, 2),
            "cycle_us": round((push_ns + lease_ns + ack_ns + flush_ns) / c / 1000, 2),
            "cycle_round_median_us": round(statistics.median(rounds) / 1000, 2),
            "cycle_cpu_us": round(1e6 * cpu_s / c, 2),
            "cycle_median_us": round(statistics.median(cycles) / 1000, 2),
            "cycle_p99_us": round(cycles[int(0.99 * (c - 1))] / 1000, 2),
            "queued_after": counts.queued,
            "loaded": loaded,
            "db_mb": round(
                sum(p.stat().st_size for p in Path(args.path).parent.iterdir()) / 2**20, 1
            ),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        }

    print(json.dumps(asyncio.run(run())), flush=True)
    return 0


# -- command line -------------------------------------------------------------------------------


def _finish(report: dict[str, Any], args: argparse.Namespace, ok: bool) -> int:
    text = json.dumps(report, indent=2)
    if args.out:
        Path(args.out).write_text(text)
    print(text)
    return 0 if ok else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="part", required=True)

    p = sub.add_parser("crawl", help="crawl a generated site until the frontier passes 1M URLs")
    p.add_argument("--pages", type=int, default=1100, help="MAX_PAGES")
    p.add_argument("--links", type=int, default=1000, help="new links per page")
    p.add_argument("--hosts", type=int, default=8)
    p.add_argument("--concurrency", type=int, default=16, help="CONCURRENCY and per host")
    p.add_argument("--progress", type=float, default=5, help="PROGRESS_INTERVAL")
    p.add_argument("--timeout", type=float, default=1200, help="SIGINT the crawl after this")
    p.add_argument("--no-pin", action="store_true", help="do not pin site and crawler to CPUs")
    p.add_argument("--out", default=None, help="also write the JSON report here")
    p.set_defaults(func=crawl)

    p = sub.add_parser("ops", help="SqliteFrontier push/lease/ack cost at several queue sizes")
    p.add_argument("--sizes", default="10000,100000,1000000")
    p.add_argument("--hosts", type=int, default=50)
    p.add_argument("--cycles", type=int, default=10_000)
    p.add_argument("--flush-every", type=int, default=256, help="cycles between full flushes")
    p.add_argument("--repeat", type=int, default=3, help="runs per size (medians reported)")
    p.add_argument("--max-growth", type=float, default=1.5, help="PASS limit: largest / smallest")
    p.add_argument("--timeout", type=float, default=900, help="per size")
    p.add_argument("--out", default=None, help="also write the JSON report here")
    p.set_defaults(func=ops)

    p = sub.add_parser("serve", help=argparse.SUPPRESS)  # internal: the site process
    p.add_argument("--links", type=int, default=1000)
    p.add_argument("--hosts", type=int, default=8)
    p.set_defaults(func=lambda a: asyncio.run(serve(a.links, a.hosts)) or 0)

    p = sub.add_parser("ops-one", help=argparse.SUPPRESS)  # internal: one size of `ops`
    p.add_argument("--size", type=int, required=True)
    p.add_argument("--hosts", type=int, default=50)
    p.add_argument("--cycles", type=int, default=10_000)
    p.add_argument("--flush-every", type=int, default=256)
    p.add_argument("--path", required=True)
    p.set_defaults(func=ops_one)

    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
