"""Logging for the CLI: rich on a terminal, plain lines otherwise, always on stderr."""

from __future__ import annotations

import logging
import sys
from typing import TYPE_CHECKING

from ..loglines import SafeLogFilter

if TYPE_CHECKING:
    from rich.console import Console

__all__ = ["setup_logging", "stderr_console"]

_console: Console | None = None


def stderr_console() -> Console:
    """The one rich Console on stderr: log lines and the live progress panel share it,
    so log lines scroll above the panel instead of tearing it."""
    global _console
    if _console is None:
        from rich.console import Console

        _console = Console(stderr=True)
    return _console


def setup_logging(level: str) -> None:
    """Send the framework's logs to stderr (so ``-o -`` can stream items on stdout).

    Every line is bounded and scrubbed of credentials (see :mod:`crawler.loglines`).
    """
    root = logging.getLogger("crawler")
    for old in list(root.handlers):
        root.removeHandler(old)
    handler: logging.Handler
    if sys.stderr.isatty():
        from rich.logging import RichHandler

        handler = RichHandler(console=stderr_console(), show_path=False)
        handler.setFormatter(logging.Formatter("%(message)s"))
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S")
        )
    # Also catches records of loggers not taken from get_logger() (a user's "crawler.x").
    handler.addFilter(SafeLogFilter())
    root.addHandler(handler)
    root.setLevel(level.upper())
    root.propagate = False
