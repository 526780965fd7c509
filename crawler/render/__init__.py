"""Rendering pages in a headless browser (Chromium driven by Playwright), on demand.

``Request(url, render=True)``, or ``RENDER="always"``, sends a request through
:class:`Renderer` instead of aiohttp; everything else about it stays the same: it is
leased from the frontier like any request (per-host concurrency and delays apply),
passes through the same middleware chain (robots.txt, retries, proxy rotation and bans,
the status filter) and its callback gets a :class:`~crawler.Response` holding the
rendered HTML. See docs/rendering.md.

Nothing here imports Playwright until a page is rendered: it is an optional extra
(``pip install 'crawler[browser]'``).

    options.py   RenderOptions (the BROWSER_* settings), finding the browser, the errors
    browser.py   BrowserHost: launches, recycles and closes the browser; BROWSER_PAGES
    renderer.py  Renderer: one rendered request (identity, guard, waiting, the Response)
"""

from .options import BrowserError, BrowserMissing, BrowserUnavailable, RenderOptions, find_browser
from .renderer import PageActions, Renderer

__all__ = [
    "BrowserError",
    "BrowserMissing",
    "BrowserUnavailable",
    "PageActions",
    "RenderOptions",
    "Renderer",
    "find_browser",
]
