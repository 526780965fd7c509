"""Pick the frontier backend a crawl's settings ask for: memory, SQLite (STATE_DIR) or Redis."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from ..clock import Clock
from ..errors import SettingsError
from ..settings import Settings
from .base import Frontier, PolitenessPolicy
from .memory import MemoryFrontier

__all__ = ["make_frontier"]


def make_frontier(
    settings: Settings, spider: Any, policy: PolitenessPolicy, clock: Clock
) -> Frontier:
    """The frontier for these settings; persistent ones resolve callbacks on ``spider``."""
    if settings.FRONTIER_URL:
        if not settings.FRONTIER_URL.startswith(("redis://", "rediss://", "unix://")):
            raise SettingsError(
                f"bad value FRONTIER_URL={settings.FRONTIER_URL!r}: expected redis://host:port/db"
            )
        from .redis import RedisFrontier

        return RedisFrontier(
            settings.FRONTIER_URL,
            job=settings.JOB or spider.name or type(spider).__name__,
            policy=policy,
            clock=clock,
            spider=spider,
            lease_timeout_s=settings.LEASE_TIMEOUT,
            flush_interval_s=math.inf,  # acks become final at the engine's checkpoints
        )
    if settings.STATE_DIR:
        from .sqlite import SqliteFrontier

        # Only the engine's checkpoints flush: items are made durable first, then the
        # requests that produced them are marked done (never the other way round).
        return SqliteFrontier(
            Path(settings.STATE_DIR) / "frontier.db",
            policy,
            clock,
            spider=spider,
            window=max(16, 2 * policy.per_host),  # a smaller window would cap a host's concurrency
            flush_ops=2**62,
            flush_interval_s=math.inf,
        )
    return MemoryFrontier(policy, clock)
