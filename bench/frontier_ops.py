"""``frontier_scale.py ops``: SqliteFrontier push / lease / ack cost by queue size.

``ops`` runs ``frontier_scale.py ops-one`` (``ops_one``) in a child process for each size
and ``--repeat``, sizes interleaved: the child fills a fresh frontier file to the size,
then times push + lease + ack cycles and prints one JSON line. ``ops`` prints a row per
run, the medians, and PASS when the cycle time at the largest size is at most
``--max-growth`` times the one at the smallest. See ``frontier_scale.py`` for the options.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent


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
    return finish(report, args, ok)


def _ops_child(args: argparse.Namespace, size: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="crawler-scale-ops-") as tmp:
        cmd = [sys.executable, str(HERE / "frontier_scale.py"), "ops-one", "--size", str(size)]
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


def finish(report: dict[str, Any], args: argparse.Namespace, ok: bool) -> int:
    """Print the JSON report last (and write it to ``--out``); the exit status."""
    text = json.dumps(report, indent=2)
    if args.out:
        Path(args.out).write_text(text)
    print(text)
    return 0 if ok else 1
