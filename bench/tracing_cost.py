"""What per-request timing costs: CPU µs per request with and without it.

    .venv/bin/python bench/tracing_cost.py --requests 20000 --repeat 5

Two measurements, both in this process:

1. **Fetch**: ``--requests`` sequential GETs of a 20 KB page from a bare asyncio server on
   loopback (one kept-alive connection) through ``crawler.downloader.fetch.fetch``: with
   the timings the crawl records (``timings=`` dict: perf_counter stamps in fetch.py, the
   connector instrumented by ``tracing.instrument_connector``, then
   ``TimingSummary.finish``), without any (no dict), and with aiohttp's TraceConfig
   (``timing_trace_config``, how timings were taken before). The three take turns in
   chunks of ``--chunk`` fetches (``--requests`` x ``--repeat`` each); what timing adds
   to a request is the median difference of neighbouring chunks' CPU per request
   (server CPU included in all), so slow drifts of the machine cancel out.
2. **Summary**: ``TimingSummary.add`` alone (µs per call, timeit) and ``summary()`` over
   a million requests (ms, once at the end of a crawl).

Prints one JSON object; nothing is written anywhere.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
import timeit
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import aiohttp

from crawler.downloader.fetch import BodyLimit, fetch
from crawler.downloader.tracing import (
    TimingSummary,
    instrument_connector,
    timing_trace_config,
)
from crawler.request import Request

BODY = b"<html><body>" + b"x" * 20_000 + b"</body></html>"
RESPONSE = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: "
    + str(len(BODY)).encode()
    + b"\r\n\r\n"
    + BODY
)


class Page(asyncio.Protocol):
    """Answers every request head with the same page (keep-alive)."""

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        for _ in range(data.count(b"\r\n\r\n")):
            self.transport.write(RESPONSE)


HOWS = ("off", "crawler", "trace_config")


async def open_client(port: int, how: str) -> tuple[aiohttp.ClientSession, TimingSummary]:
    """A session fetching the page ``how`` the timings are taken, its connection open.

    ``how``: ``off`` (no timings), ``crawler`` (what the crawl does now: stamps and the
    instrumented connector), ``trace_config`` (aiohttp's TraceConfig, as before).
    """
    traces = [timing_trace_config()] if how == "trace_config" else None
    connector = aiohttp.TCPConnector()
    if how == "crawler":
        instrument_connector(connector)
    session = aiohttp.ClientSession(connector=connector, trace_configs=traces)
    await fetch(session, Request(f"http://127.0.0.1:{port}/page"), BodyLimit(10 * 1024 * 1024))
    return session, TimingSummary()


async def run_chunk(
    session: aiohttp.ClientSession, summary: TimingSummary, port: int, how: str, count: int
) -> float:
    """CPU seconds of ``count`` sequential fetches, timed ``how``."""
    limit = BodyLimit(10 * 1024 * 1024)
    request = Request(f"http://127.0.0.1:{port}/page")
    timed = how != "off"
    started = time.process_time()
    for _ in range(count):
        if timed:
            timings: dict[str, float] = {}
            response = await fetch(session, request, limit, timings=timings)
            summary.finish(timings)  # what the downloader does with each response
        else:
            response = await fetch(session, request, limit)
        assert response.status == 200
    return time.process_time() - started


async def fetch_cost(requests: int, repeat: int, chunk: int) -> dict[str, float]:
    """Each way, ``requests`` x ``repeat`` fetches in chunks of ``chunk``, the ways taking
    turns chunk by chunk: slow drifts of the machine (frequency, caches, other load) hit
    them alike, and the cost of timings is the median of neighbouring chunks' difference."""
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Page, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    # "off" and "crawler" share one session (instrumented: that costs only new connections,
    # and the connection is kept alive), so nothing but the timing code differs between
    # them; aiohttp's TraceConfig needs a session of its own.
    # The process's first session fetches ~1.6x slower for as long as it lives (seen on
    # a 2-vCPU VM; later sessions do not): a throwaway one takes that, then the measured.
    warm_up, _ = await open_client(port, "off")
    await run_chunk(warm_up, TimingSummary(), port, "off", chunk)
    await warm_up.close()
    crawler_client = await open_client(port, "crawler")
    clients = {
        "off": crawler_client,
        "crawler": crawler_client,
        "trace_config": await open_client(port, "trace_config"),
    }
    chunks: dict[str, list[float]] = {how: [] for how in HOWS}
    try:
        for turn in range(max(1, requests * repeat // chunk)):
            order = HOWS if turn % 2 == 0 else HOWS[::-1]
            for how in order:
                session, summary = clients[how]
                chunks[how].append(await run_chunk(session, summary, port, how, chunk) / chunk)
    finally:
        for session, _ in {id(c): c for c in clients.values()}.values():
            await session.close()
        server.close()
        await server.wait_closed()

    def cost(how: str) -> float:
        return statistics.median(a - b for a, b in zip(chunks[how], chunks["off"], strict=True))

    return {
        "fetch_us_without_timings": round(statistics.median(chunks["off"]) * 1e6, 2),
        "fetch_us_with_timings": round(statistics.median(chunks["crawler"]) * 1e6, 2),
        "timing_cost_us_per_request": round(cost("crawler") * 1e6, 2),
        # Beside the µs, a figure that does not depend on how fast this machine fetches.
        "timing_cost_share_of_fetch": round(cost("crawler") / statistics.median(chunks["off"]), 4),
        "trace_config_cost_us_per_request": round(cost("trace_config") * 1e6, 2),
        "chunks_per_way": len(chunks["off"]),
    }


def summary_cost() -> dict[str, float]:
    summary = TimingSummary()
    sample = {"ttfb": 0.0021, "total": 0.0034, "reused": 1.0}
    number = 200_000
    add = min(timeit.repeat(lambda: summary.add(sample), number=number, repeat=3)) / number
    big = TimingSummary()
    for i in range(1_000_000):
        big.add({"ttfb": i * 1e-6, "total": i * 2e-6, "reused": 1.0})
    started = time.perf_counter()
    big.summary()
    return {
        "summary_add_us": round(add * 1e6, 3),
        "summary_of_1M_requests_ms": round((time.perf_counter() - started) * 1e3, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--chunk", type=int, default=500, help="fetches per turn of a way")
    args = parser.parse_args()
    result = asyncio.run(fetch_cost(args.requests, args.repeat, args.chunk)) | summary_cost()
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
