"""What a crawl returns: its finish reason, stats, the error that stopped it, its items."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .spider import Spider
from .supervisor import FAILURES

__all__ = ["CrawlResult", "ItemCollector"]


@dataclass(frozen=True, slots=True)
class CrawlResult:
    """How a crawl ended: ``finish_reason``, a stats snapshot and the error that stopped it.

    ``finish_reason`` is ``finished``, a stop condition (``max_pages``, ``max_items``,
    ``max_duration``, ``max_errors``), ``interrupted``, ``cancelled``,
    ``already_finished``, or a failure: ``output_failed`` (an output cannot write;
    ``crawl run`` exits 7), ``checkpoint_failed`` (the crawl state could not be
    saved; exit 8), ``state_lost`` (the shared frontier lost the crawl's state, e.g.
    Redis restarted empty; exit 11) or ``frontier_unavailable`` (the shared frontier
    stayed unreachable longer than ``REDIS_UNAVAILABLE_TIMEOUT``; exit 12). After a
    failure ``error`` is the exception and ``stats["error"]`` describes it in one line;
    the state (``--state``, or the shared job but after ``state_lost``) stays resumable.

    ``stats`` reads 0 for a counter that was never incremented (``stats["pages"]`` of an
    empty crawl is 0). ``items`` holds the items that passed every pipeline when the
    crawler was created with ``collect_items=True`` (tests, notebooks); else it is empty.
    """

    finish_reason: str
    stats: dict[str, Any]
    error: BaseException | None = None
    items: list[Any] = field(default_factory=list)

    @property
    def interrupted(self) -> bool:
        """True if the crawl was stopped before it finished (by a signal or a failure)."""
        return self.finish_reason in ("interrupted", "cancelled") or self.failed

    @property
    def failed(self) -> bool:
        """True after a failure: ``output_failed``, ``checkpoint_failed``, ``state_lost``,
        ``frontier_unavailable``."""
        return self.finish_reason in FAILURES


class ItemCollector:
    """The last pipeline of a crawl asked to ``collect_items``: keeps every item in memory."""

    def __init__(self) -> None:
        self.items: list[Any] = []

    async def process_item(self, item: Any, spider: Spider) -> Any:
        """Keep ``item`` (after every other pipeline) and pass it on."""
        self.items.append(item)
        return item
