"""Which failures are retried, and after how long.

A retry re-enters the frontier with a ready time; no worker sleeps. Back-off is
exponential with jitter (tenacity's ``wait_exponential_jitter``); a server's
``Retry-After`` (seconds or an HTTP date) wins, capped at ``RETRY_AFTER_MAX``.
Decisions read exception classes (``isinstance``), never message text.
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

from tenacity import wait_exponential_jitter

from .errors import FetchError, RetryableFetchError
from .request import Request
from .settings import Settings

__all__ = ["RetryDecision", "RetryPolicy", "parse_retry_after"]

_IDEMPOTENT = frozenset(("GET", "HEAD", "OPTIONS", "PUT", "DELETE"))


@dataclass(frozen=True, slots=True)
class RetryDecision:
    """Retry after ``delay_s``; ``hold_host`` means the whole host should wait that long."""

    delay_s: float
    reason: str
    hold_host: bool = False


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP date), or None."""
    if not value:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():  # not str.isdigit() alone: float("²") raises
        return float(value)  # huge is fine: the caller caps it (float("9" * 400) is inf)
    try:
        when = email.utils.parsedate_to_datetime(value)
        current = time.time() if now is None else now
        return max(0.0, when.timestamp() - current)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


@dataclass
class RetryPolicy:
    """Retry transient failures with back-off; see the RETRY_* settings.

    ``wall_clock`` (default ``time.time``) dates a ``Retry-After`` given as an HTTP
    date; it is wall time, not the crawl's monotonic clock, because the header is.
    """

    times: int = 2
    http_codes: frozenset[int] = frozenset((408, 429, 500, 502, 503, 504))
    backoff_base_s: float = 0.5
    backoff_max_s: float = 60.0
    retry_after_max_s: float = 300.0
    non_idempotent: bool = False
    wall_clock: Callable[[], float] = field(default=time.time, repr=False)
    _wait: Any = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._wait = wait_exponential_jitter(
            multiplier=self.backoff_base_s, max=self.backoff_max_s, jitter=self.backoff_base_s
        )

    @classmethod
    def from_settings(cls, settings: Settings) -> RetryPolicy:
        """The policy the settings describe."""
        return cls(
            times=settings.RETRY_TIMES,
            http_codes=frozenset(int(c) for c in settings.RETRY_HTTP_CODES),
            backoff_base_s=settings.RETRY_BACKOFF_BASE,
            backoff_max_s=settings.RETRY_BACKOFF_MAX,
            retry_after_max_s=settings.RETRY_AFTER_MAX,
            non_idempotent=settings.RETRY_NON_IDEMPOTENT,
        )

    def _allowed(self, request: Request) -> bool:
        meta = request.meta
        if meta.get("dont_retry"):
            return False
        if request.method not in _IDEMPOTENT and not (
            self.non_idempotent or meta.get("retry_non_idempotent")
        ):
            return False
        limit = meta.get("max_retry_times", self.times)
        return int(meta.get("retry_times", 0)) < int(limit)

    def backoff_s(self, attempt: int) -> float:
        """Exponential back-off with jitter for the ``attempt``-th retry (1-based)."""
        return float(self._wait(SimpleNamespace(attempt_number=attempt)))

    def for_error(self, request: Request, error: FetchError) -> RetryDecision | None:
        """Retry decision after a failed fetch."""
        if not isinstance(error, RetryableFetchError) or not self._allowed(request):
            return None
        attempt = int(request.meta.get("retry_times", 0)) + 1
        return RetryDecision(self.backoff_s(attempt), error.kind)

    def for_status(
        self, request: Request, status: int, retry_after: str | None
    ) -> RetryDecision | None:
        """Retry decision after a response with ``status``."""
        if status not in self.http_codes or not self._allowed(request):
            return None
        attempt = int(request.meta.get("retry_times", 0)) + 1
        waited = parse_retry_after(retry_after, self.wall_clock()) if retry_after else None
        if waited is not None:
            return RetryDecision(min(waited, self.retry_after_max_s), f"http_{status}", True)
        return RetryDecision(self.backoff_s(attempt), f"http_{status}", status in (429, 503))
