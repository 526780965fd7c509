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

Both parts stop by themselves (``--timeout``) and print a JSON report last (``--out``
also writes it to a file); the site is in ``scale_site.py``, the ``ops`` part in
``frontier_ops.py``. Nothing is written into the repository.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from frontier_ops import finish, ops, ops_one
from scale_site import host_name, serve, site_stats

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
    return finish(report, args, report["pass"])


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


# -- command line -------------------------------------------------------------------------------


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
