"""The browser process: launched on first use, recycled, bounded, closed by its owner.

One :class:`BrowserHost` per crawl (the Renderer owns it, the crawl closes it). It starts
Playwright and Chromium only when the first page is rendered, so a crawl that renders
nothing never pays for (or needs) a browser. Pages are capped by a semaphore
(BROWSER_PAGES). After BROWSER_RECYCLE_PAGES pages, when the browser's processes grow
past BROWSER_RECYCLE_MEMORY, or when it crashed, new pages go to a fresh browser; the
old one is closed once its last page is done, so no page is cut short by a recycle.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import ConfigError
from ..loglines import get_logger
from .options import BrowserError, BrowserMissing, RenderOptions, find_browser

if TYPE_CHECKING:
    from playwright.async_api import Browser, Playwright

__all__ = ["BrowserHost", "browser_rss_bytes"]

logger = get_logger("crawler.render")

# Chromium flags: no sandbox (containers run it as root), no GPU, no first-run chatter.
_ARGS = ("--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run")


class _Instance:
    """One launched browser and the pages it has open / has rendered."""

    __slots__ = ("browser", "open", "rendered", "retiring")

    def __init__(self, browser: Browser) -> None:
        self.browser = browser
        self.open = 0
        self.rendered = 0
        self.retiring = False


class BrowserHost:
    """Hands out a browser for one page at a time (see the module docstring)."""

    def __init__(self, options: RenderOptions, resolve: Mapping[str, str] | None = None) -> None:
        self.options = options
        self.launches = 0
        self._resolve = dict(resolve or {})
        self._pages = asyncio.Semaphore(options.pages)
        self._lock = asyncio.Lock()
        self._playwright: Playwright | None = None
        self._current: _Instance | None = None
        self._retired: set[_Instance] = set()
        self._closed = False

    @asynccontextmanager
    async def browser(self) -> AsyncIterator[Browser]:
        """A connected browser for one page; the page must be closed before this exits."""
        async with self._pages:
            instance = await self._instance()
            instance.open += 1
            try:
                yield instance.browser
            finally:
                instance.open -= 1
                instance.rendered += 1
                await self._after_page(instance)

    async def _instance(self) -> _Instance:
        async with self._lock:
            if self._closed:
                raise BrowserError("the browser is closed: the crawl is ending")
            current = self._current
            if current is not None and current.browser.is_connected() and not current.retiring:
                return current
            if current is not None:
                self._retire(current)
            self._current = current = _Instance(await self._launch())
            return current

    async def _launch(self) -> Browser:
        """Start Playwright (once) and a browser; BrowserMissing if either is not there."""
        try:
            from playwright.async_api import Error, async_playwright
        except ImportError:
            raise BrowserMissing(
                "rendering needs Playwright: pip install 'crawler[browser]'"
                " (and a Chromium: apt-get install chromium, or BROWSER_EXECUTABLE)"
            ) from None
        executable = self.options.executable or find_browser()
        if self._playwright is None:
            self._playwright = await async_playwright().start()
        args = list(_ARGS)
        if self._resolve:  # RESOLVE: the browser dials the same addresses aiohttp would
            rules = ", ".join(f"MAP {host} {ip}" for host, ip in self._resolve.items())
            args.append(f"--host-resolver-rules={rules}")
        try:
            browser = await self._playwright.chromium.launch(
                executable_path=executable, args=args, headless=True
            )
        except Error as exc:
            raise ConfigError(
                f"cannot start the browser {executable}: {str(exc).splitlines()[0]}"
                " (set BROWSER_EXECUTABLE to a working Chromium)"
            ) from None
        self.launches += 1
        logger.info("browser started: %s", Path(executable).name)
        return browser

    async def _after_page(self, instance: _Instance) -> None:
        """Retire the browser when it is due; close a retired one once its pages are done."""
        if instance is self._current and self._due(instance):
            self._current = None
            self._retire(instance)
        if instance.retiring and instance.open == 0 and instance in self._retired:
            self._retired.discard(instance)
            await _close_browser(instance.browser)

    def _due(self, instance: _Instance) -> bool:
        options = self.options
        if not instance.browser.is_connected():
            return True
        if options.recycle_pages and instance.rendered >= options.recycle_pages:
            logger.info("restarting the browser after %d pages", instance.rendered)
            return True
        if options.recycle_rss_bytes and instance.rendered % 16 == 0:  # /proc walk: not per page
            rss = browser_rss_bytes()
            if rss > options.recycle_rss_bytes:
                logger.info("restarting the browser: %d MiB of RSS", rss >> 20)
                return True
        return False

    def _retire(self, instance: _Instance) -> None:
        instance.retiring = True
        self._retired.add(instance)

    async def close(self) -> None:
        """Close every browser, then Playwright (pages are closed by their renders)."""
        async with self._lock:
            self._closed = True
            instances = list(self._retired)
            if self._current is not None:
                instances.append(self._current)
            self._current = None
            self._retired.clear()
            for instance in instances:
                await _close_browser(instance.browser)
            if self._playwright is not None:
                playwright, self._playwright = self._playwright, None
                await playwright.stop()


async def _close_browser(browser: Browser) -> None:
    try:
        await browser.close()
    except Exception:  # already gone (a crash): nothing left to close
        logger.debug("closing a browser that was gone", exc_info=True)


def browser_rss_bytes(root: int | None = None) -> int:
    """Memory of the browser processes started by this process, in bytes (Linux; else 0).

    Walks /proc for the Chromium descendants of ``root`` (default: this process), whose
    driver (Playwright's node process) is not counted.
    """
    proc = Path("/proc")
    if not proc.is_dir():
        return 0
    root = os.getpid() if root is None else root
    parents: dict[int, int] = {}
    names: dict[int, str] = {}
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        name_end = stat.rfind(")")
        fields = stat[name_end + 2 :].split()
        parents[int(entry.name)] = int(fields[1])
        names[int(entry.name)] = stat[stat.find("(") + 1 : name_end]
    total = 0
    for pid, name in names.items():
        if "chrom" not in name.lower() or not _descends(pid, root, parents):
            continue
        total += _rss(pid)
    return total


def _descends(pid: int, root: int, parents: dict[int, int]) -> bool:
    seen = 0
    while pid > 1 and seen < 64:
        pid = parents.get(pid, 0)
        if pid == root:
            return True
        seen += 1
    return False


def _rss(pid: int) -> int:
    """``pid``'s proportional set size (shared pages split between the processes sharing
    them: summing plain RSS over Chromium's processes counts its shared memory many times),
    else its RSS."""
    for path, key in ((f"/proc/{pid}/smaps_rollup", "Pss:"), (f"/proc/{pid}/status", "VmRSS:")):
        try:
            for line in Path(path).read_text().splitlines():
                if line.startswith(key):
                    return int(line.split()[1]) * 1024
        except (OSError, ValueError, IndexError):
            continue
    return 0
