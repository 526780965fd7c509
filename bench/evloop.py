"""The event loop of a benchmark child: ``--loop asyncio`` (the default) or ``--loop uvloop``.

``bare.py`` and ``framework.py`` take ``--loop`` (``run.py --loop`` passes it on) so the
framework and the bare loop can be compared on the same loop, and each loop with itself.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

_T = TypeVar("_T")
LOOPS = ("asyncio", "uvloop")


def loop_option(default: str = "asyncio") -> str:
    """``--loop NAME`` (or ``--loop=NAME``) taken out of ``sys.argv``: the other options
    are parsed by ``measure.child_args``."""
    argv, loop = [sys.argv[0]], default
    rest = iter(sys.argv[1:])
    for arg in rest:
        if arg == "--loop":
            loop = next(rest, default)
        elif arg.startswith("--loop="):
            loop = arg.partition("=")[2]
        else:
            argv.append(arg)
    if loop not in LOOPS:
        raise SystemExit(f"--loop must be one of {', '.join(LOOPS)}, not {loop!r}")
    sys.argv[:] = argv
    return loop


def factory(loop: str) -> Callable[[], asyncio.AbstractEventLoop]:
    if loop == "uvloop":
        import uvloop  # pip install 'crawler[speedups]'

        return uvloop.new_event_loop
    return asyncio.new_event_loop


def run(coro: Coroutine[Any, Any, _T], loop: str) -> _T:
    """``asyncio.run(coro)`` on ``loop``."""
    with asyncio.Runner(loop_factory=factory(loop)) as runner:
        return runner.run(coro)
