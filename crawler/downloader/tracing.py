"""Per-request timings from aiohttp's client tracing, and their summary.

Phases (seconds): ``dns`` (name resolution, when it happened), ``connect``
(TCP + TLS, only for a new connection), ``ttfb`` (request start to response
headers), ``total`` (request start to the last body byte); plus ``reused``
(1.0 if the request went over a pooled connection, else 0.0).
"""

from __future__ import annotations

import random
import time
from types import SimpleNamespace
from typing import Any

import aiohttp

__all__ = ["TimingSummary", "timing_trace_config"]

_now = time.perf_counter


async def _on_request_start(session: Any, ctx: SimpleNamespace, params: Any) -> None:
    timings = ctx.trace_request_ctx
    if timings is not None and "_start" not in timings:
        timings["_start"] = _now()


async def _on_dns_start(session: Any, ctx: SimpleNamespace, params: Any) -> None:
    if ctx.trace_request_ctx is not None:
        ctx.trace_request_ctx["_dns"] = _now()


async def _on_dns_end(session: Any, ctx: SimpleNamespace, params: Any) -> None:
    timings = ctx.trace_request_ctx
    if timings is not None and "_dns" in timings:
        timings["dns"] = timings.get("dns", 0.0) + _now() - timings.pop("_dns")


async def _on_connect_start(session: Any, ctx: SimpleNamespace, params: Any) -> None:
    if ctx.trace_request_ctx is not None:
        ctx.trace_request_ctx["_connect"] = _now()


async def _on_connect_end(session: Any, ctx: SimpleNamespace, params: Any) -> None:
    timings = ctx.trace_request_ctx
    if timings is not None and "_connect" in timings:
        timings["connect"] = timings.get("connect", 0.0) + _now() - timings.pop("_connect")
        timings["reused"] = 0.0


async def _on_reuse(session: Any, ctx: SimpleNamespace, params: Any) -> None:
    timings = ctx.trace_request_ctx
    if timings is not None:
        timings.setdefault("reused", 1.0)


async def _on_request_end(session: Any, ctx: SimpleNamespace, params: Any) -> None:
    timings = ctx.trace_request_ctx
    if timings is not None and "_start" in timings:
        timings["ttfb"] = _now() - timings["_start"]


def timing_trace_config() -> aiohttp.TraceConfig:
    """A TraceConfig filling the dict passed as ``trace_request_ctx`` with phase timings."""
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


def finish_timings(timings: dict[str, float]) -> dict[str, float]:
    """Close the ``total`` phase and drop the bookkeeping keys."""
    start = timings.pop("_start", None)
    if start is not None:
        timings["total"] = _now() - start
    timings.pop("_dns", None)
    timings.pop("_connect", None)
    return timings


class TimingSummary:
    """Mean / p50 / p95 per phase over a bounded uniform sample (reservoir sampling)."""

    PHASES = ("dns", "connect", "ttfb", "total")

    def __init__(self, sample_size: int = 10_000, seed: int = 0) -> None:
        self._size = sample_size
        self._samples: dict[str, list[float]] = {p: [] for p in self.PHASES}
        self._seen: dict[str, int] = dict.fromkeys(self.PHASES, 0)
        self._sums: dict[str, float] = dict.fromkeys(self.PHASES, 0.0)
        self._reused = 0
        self._requests = 0
        self._rng = random.Random(seed)

    def add(self, timings: dict[str, float]) -> None:
        """Record one request's timings."""
        self._requests += 1
        if timings.get("reused"):
            self._reused += 1
        for phase in self.PHASES:
            value = timings.get(phase)
            if value is None:
                continue
            seen = self._seen[phase] = self._seen[phase] + 1
            self._sums[phase] += value
            samples = self._samples[phase]
            if len(samples) < self._size:
                samples.append(value)
            else:
                slot = self._rng.randrange(seen)
                if slot < self._size:
                    samples[slot] = value

    def summary(self) -> dict[str, float]:
        """``timings/<phase>/{mean,p50,p95}`` in milliseconds, and the connection reuse ratio."""
        result: dict[str, float] = {}
        for phase in self.PHASES:
            samples = sorted(self._samples[phase])
            if not samples:
                continue
            mean = self._sums[phase] / self._seen[phase]
            result[f"timings/{phase}/mean_ms"] = round(mean * 1000, 3)
            result[f"timings/{phase}/p50_ms"] = round(_quantile(samples, 0.50) * 1000, 3)
            result[f"timings/{phase}/p95_ms"] = round(_quantile(samples, 0.95) * 1000, 3)
        if self._requests:
            result["timings/reused_ratio"] = round(self._reused / self._requests, 4)
        return result


def _quantile(ordered: list[float], q: float) -> float:
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]
