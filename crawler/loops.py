"""The event loop a command runs on: the ``LOOP`` setting (auto, asyncio or uvloop).

``auto`` takes uvloop when it is importable (``pip install 'crawler[speedups]'``) and
asyncio's own loop otherwise; ``uvloop`` without uvloop installed is a
:class:`~crawler.errors.ConfigError` (the commands exit 2 with its one line).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from .errors import ConfigError
from .loglines import get_logger

__all__ = ["LOOPS", "loop_factory", "run"]

LOOPS = ("auto", "asyncio", "uvloop")
UVLOOP_MISSING = "LOOP = 'uvloop' but uvloop is not installed: pip install 'crawler[speedups]'"

logger = get_logger("crawler.loops")

_T = TypeVar("_T")


def loop_factory(loop: str = "auto") -> tuple[Callable[[], asyncio.AbstractEventLoop], str]:
    """The factory of the event loop ``loop`` names, and the name of the loop it makes."""
    if loop not in LOOPS:
        raise ConfigError(f"LOOP must be one of {', '.join(LOOPS)}, not {loop!r}")
    if loop != "asyncio":
        try:
            import uvloop
        except ImportError:
            if loop == "uvloop":
                raise ConfigError(UVLOOP_MISSING) from None
        else:
            return uvloop.new_event_loop, "uvloop"
    return asyncio.new_event_loop, "asyncio"


def run(coro: Coroutine[Any, Any, _T], loop: str = "auto") -> _T:
    """``asyncio.run(coro)`` on the event loop ``loop`` names (see :func:`loop_factory`)."""
    try:
        factory, name = loop_factory(loop)
    except ConfigError:
        coro.close()  # never awaited: no "coroutine was never awaited" warning
        raise
    logger.debug("event loop: %s", name)
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(coro)
