"""Logging for the CLI: rich on a terminal, plain lines otherwise, always on stderr."""

from __future__ import annotations

import logging
import sys

from ..loglines import SafeLogFilter

__all__ = ["setup_logging"]


def setup_logging(level: str) -> None:
    """Send the framework's logs to stderr (so ``-o -`` can stream items on stdout).

    Every line is bounded and scrubbed of credentials (see :mod:`crawler.loglines`).
    """
    root = logging.getLogger("crawler")
    for old in list(root.handlers):
        root.removeHandler(old)
    handler: logging.Handler
    if sys.stderr.isatty():
        from rich.console import Console
        from rich.logging import RichHandler

        handler = RichHandler(console=Console(stderr=True), show_path=False)
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
