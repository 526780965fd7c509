"""Per-request timings, and their summary.

Phases (seconds): ``dns`` (name resolution, when it happened), ``connect``
(TCP + TLS, only for a new connection), ``ttfb`` (request start to response
headers), ``total`` (request start to the last body byte); plus ``reused``
(1.0 if the request went over a pooled connection, else 0.0).

How they are taken, cheaply: ``fetch.py`` stamps ``perf_counter`` (:data:`now`) at the
request's start and at its headers, inline, and :meth:`TimingSummary.finish` at its
last byte. A new connection's ``connect`` and ``dns`` come
from the connector itself (:func:`instrument_connector` wraps its connection factory and
its resolver), which writes into the dict of the request being fetched, found through a ContextVar.
aiohttp's TraceConfig would give the same phases, but every request would then build a
Trace and send ~6 signals through coroutines: ~14 µs of CPU a request against about 3 µs
for all of this, the summary included (``bench/tracing_cost.py``).
:func:`timing_trace_config` remains for whoever wants it.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from contextvars import ContextVar
from types import SimpleNamespace
from typing import Any

import aiohttp
from aiohttp.abc import AbstractResolver

__all__ = ["TimingSummary", "instrument_connector", "timing_trace_config"]

now = time.perf_counter  # the clock of every stamp

# The timings dict of the request this task is fetching (None: not timed). Set by fetch.py
# as a request starts: the connector's wrapped methods run in the fetching task, so they
# see the right one.
CURRENT_TIMINGS: ContextVar[dict[str, float] | None] = ContextVar("crawler_timings", default=None)


def instrument_connector(connector: aiohttp.TCPConnector) -> aiohttp.TCPConnector:
    """Time ``connector``'s new connections (``connect``) and name lookups (``dns``).

    Wraps two of aiohttp's own attributes, ``_create_connection`` and ``_resolver``
    (stable through aiohttp 3.x; ``tests/test_client_tracing.py`` checks the phases),
    on this instance only. Returns ``connector``.
    """
    create = connector._create_connection

    async def timed_create(req: Any, traces: Any, limits: Any) -> Any:
        timings = CURRENT_TIMINGS.get()
        if timings is None:
            return await create(req, traces, limits)
        started = now()
        try:
            return await create(req, traces, limits)
        finally:
            timings["connect"] = timings.get("connect", 0.0) + now() - started
            timings["reused"] = 0.0

    connector._create_connection = timed_create  # type: ignore[method-assign,assignment]
    resolver = getattr(connector, "_resolver", None)
    if resolver is not None and not isinstance(resolver, _TimedResolver):
        connector._resolver = _TimedResolver(resolver)
    return connector


class _TimedResolver(AbstractResolver):
    """Adds each lookup's time to the current request's ``dns`` (cache misses only:
    aiohttp asks its resolver only for names not in its DNS cache)."""

    def __init__(self, inner: AbstractResolver) -> None:
        self.inner = inner

    async def resolve(self, host: str, port: int = 0, family: Any = 0) -> Any:
        timings = CURRENT_TIMINGS.get()
        if timings is None:
            return await self.inner.resolve(host, port, family)
        started = now()
        try:
            return await self.inner.resolve(host, port, family)
        finally:
            timings["dns"] = timings.get("dns", 0.0) + now() - started

    async def close(self) -> None:
        await self.inner.close()

    def __getattr__(self, name: str) -> Any:  # the inner resolver's own API (guard.py's)
        return getattr(self.inner, name)


async def _on_request_start(session: Any, ctx: SimpleNamespace, params: Any) -> None:
    timings = ctx.trace_request_ctx
    if timings is not None and "_start" not in timings:
        timings["_start"] = now()


async def _on_dns_start(session: Any, ctx: SimpleNamespace, params: Any) -> None:
    if ctx.trace_request_ctx is not None:
        ctx.trace_request_ctx["_dns"] = now()


async def _on_dns_end(session: Any, ctx: SimpleNamespace, params: Any) -> None:
    timings = ctx.trace_request_ctx
    if timings is not None and "_dns" in timings:
        timings["dns"] = timings.get("dns", 0.0) + now() - timings.pop("_dns")


async def _on_connect_start(session: Any, ctx: SimpleNamespace, params: Any) -> None:
    if ctx.trace_request_ctx is not None:
        ctx.trace_request_ctx["_connect"] = now()


async def _on_connect_end(session: Any, ctx: SimpleNamespace, params: Any) -> None:
    timings = ctx.trace_request_ctx
    if timings is not None and "_connect" in timings:
        timings["connect"] = timings.get("connect", 0.0) + now() - timings.pop("_connect")
        timings["reused"] = 0.0


async def _on_reuse(session: Any, ctx: SimpleNamespace, params: Any) -> None:
    timings = ctx.trace_request_ctx
    if timings is not None:
        timings.setdefault("reused", 1.0)


async def _on_request_end(session: Any, ctx: SimpleNamespace, params: Any) -> None:
    timings = ctx.trace_request_ctx
    if timings is not None and "_start" in timings:
        timings["ttfb"] = now() - timings["_start"]


def timing_trace_config() -> aiohttp.TraceConfig:
    """A TraceConfig filling the dict passed as ``trace_request_ctx`` with phase timings.

    For a session of your own: the crawl's sessions take their timings without it (an
    instrumented connector, see the module docstring), so do not add it to TRACE_CONFIGS.
    """
    config = aiohttp.TraceConfig(trace_config_ctx_factory=SimpleNamespace)
    config.on_request_start.append(_on_request_start)
    config.on_dns_resolvehost_start.append(_on_dns_start)
    config.on_dns_resolvehost_end.append(_on_dns_end)
    config.on_connection_create_start.append(_on_connect_start)
    config.on_connection_create_end.append(_on_connect_end)
    config.on_connection_reuseconn.append(_on_reuse)
    config.on_request_end.append(_on_request_end)
    config.freeze()
    return config


class TimingSummary:
    """Mean / p50 / p95 per phase, and the share of reused connections, over a uniform
    sample of at most ``sample_size`` requests (all of them, up to that many).

    Requests are sampled whole by reservoir sampling with skips (Li's "Algorithm L"):
    once the sample is full, a few random draws say which later request replaces one, so
    a request that is not sampled costs one comparison. Inside a crawl every bytecode
    spent per request counts several times over (cold caches): summing each value for
    an exact mean cost ~1 µs a request (``bench/tracing_cost.py``), a sample's mean is
    within a fraction of a per cent of it.
    """

    PHASES = ("dns", "connect", "ttfb", "total")

    def __init__(self, sample_size: int = 10_000, seed: int = 0) -> None:
        self._size = sample_size
        # One row per sampled request: its PHASES (None: not measured), then reused.
        self._rows: list[tuple[float | None, ...]] = []
        self._requests = 0
        self._next = sample_size  # the request that next goes into the sample once full
        self._weight = 1.0
        self._random = random.Random(seed).random

    def add(self, timings: dict[str, float]) -> None:
        """Count one request's timings (kept if the sample takes it)."""
        index = self._requests
        self._requests = index + 1
        if index < self._size or index == self._next:
            self._keep(timings, index)

    def finish(self, timings: dict[str, float]) -> dict[str, float]:
        """Close the ``total`` phase, drop the bookkeeping keys and :meth:`add` the request.

        A response with no new connection came over a pooled one (``reused`` 1.0). One
        call per response, the downloader's.
        """
        start = timings.pop("_start", None)
        if start is not None:
            timings["total"] = now() - start
            timings.setdefault("reused", 1.0)
        if "_dns" in timings or "_connect" in timings:  # a user's timing_trace_config() on top
            timings.pop("_dns", None)
            timings.pop("_connect", None)
        self.add(timings)
        return timings

    def _keep(self, timings: dict[str, float], index: int) -> None:
        get = timings.get
        row = (get("dns"), get("connect"), get("ttfb"), get("total"), get("reused"))
        size, draw = self._size, self._random
        if index < size:
            self._rows.append(row)
            if index + 1 == size:  # full: when the first replacement comes
                self._weight = math.exp(math.log(_positive(draw)) / size)
                self._next = size + self._skip()
            return
        self._rows[int(draw() * size)] = row
        self._weight *= math.exp(math.log(_positive(draw)) / size)
        self._next = index + 1 + self._skip()

    def _skip(self) -> int:
        """How many requests go by before the next one replaces a sampled one."""
        weight = self._weight
        if weight >= 1.0:
            return 0
        return int(math.log(_positive(self._random)) / math.log1p(-weight))

    def sample(self, phase: str) -> list[float]:
        """The sampled values of ``phase`` (at most ``sample_size``)."""
        column = self.PHASES.index(phase)
        return [value for row in self._rows if (value := row[column]) is not None]

    def summary(self) -> dict[str, float]:
        """``timings/<phase>/{mean,p50,p95}`` in milliseconds, and the connection reuse ratio."""
        result: dict[str, float] = {}
        for phase in self.PHASES:
            samples = sorted(self.sample(phase))
            if not samples:
                continue
            mean = sum(samples) / len(samples)
            result[f"timings/{phase}/mean_ms"] = round(mean * 1000, 3)
            result[f"timings/{phase}/p50_ms"] = round(_quantile(samples, 0.50) * 1000, 3)
            result[f"timings/{phase}/p95_ms"] = round(_quantile(samples, 0.95) * 1000, 3)
        if self._rows:
            reused = sum(1 for row in self._rows if row[-1])
            result["timings/reused_ratio"] = round(reused / len(self._rows), 4)
        return result


def _quantile(ordered: list[float], q: float) -> float:
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def _positive(draw: Callable[[], float]) -> float:
    """A uniform float in (0, 1): ``log`` of it is defined."""
    value = draw()
    return value if value > 0.0 else 5e-324
