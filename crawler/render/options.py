"""What rendering is configured to do (the RENDER and BROWSER_* settings) and its errors."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError, FetchError, RetryableFetchError
from ..settings import Settings

__all__ = [
    "BrowserError",
    "BrowserMissing",
    "BrowserUnavailable",
    "RenderOptions",
    "find_browser",
]

# Debian's package, Ubuntu's older name, Google's build: the first one on PATH is used.
BROWSER_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
# Heavy resources a scraper rarely needs: blocked unless BROWSER_ALLOW_RESOURCES lists them.
BLOCKED_RESOURCES = frozenset(("image", "font", "media"))
WAIT_STATES = frozenset(("load", "domcontentloaded", "networkidle", "commit"))


class BrowserMissing(ConfigError):
    """Rendering was asked for but no browser can be started (exit code 2)."""


class BrowserError(RetryableFetchError):
    """The browser crashed, or the page failed in it: retried like a network error."""

    kind = "browser"


class BrowserUnavailable(FetchError):
    """A request asked to be rendered but there is no browser: failed, not retried."""

    kind = "browser_missing"


def find_browser(configured: str = "") -> str:
    """The browser executable to launch: ``configured`` (BROWSER_EXECUTABLE) or one on PATH.

    Raises :class:`BrowserMissing` with the one line that says how to get one.
    """
    if configured:
        found = shutil.which(configured) or (configured if Path(configured).is_file() else None)
        if found is None:
            raise BrowserMissing(
                f"BROWSER_EXECUTABLE={configured!r} is not an executable file; point it at"
                " a Chromium binary, or install one (apt-get install chromium)"
            )
        return found
    for name in BROWSER_NAMES:
        found = shutil.which(name)
        if found is not None:
            return found
    raise BrowserMissing(
        "rendering needs a Chromium browser and none was found on PATH: install one"
        " (apt-get install chromium) or set BROWSER_EXECUTABLE=/path/to/chrome"
    )


@dataclass(frozen=True, slots=True)
class RenderOptions:
    """The rendering knobs of one crawl."""

    always: bool = False
    executable: str = ""
    pages: int = 4
    wait_for: str = "load"
    blocked_resources: frozenset[str] = BLOCKED_RESOURCES
    recycle_pages: int = 500
    recycle_rss_bytes: int = 1024 * 1024 * 1024
    screenshot_dir: Path = Path("screenshots")
    timeout_s: float = 30.0
    max_bytes: int = 16 * 1024 * 1024

    @classmethod
    def from_settings(cls, settings: Settings) -> RenderOptions:
        """Options from the settings; with RENDER="always" the browser must exist now."""
        always = settings.RENDER == "always"
        executable = settings.BROWSER_EXECUTABLE
        if always or executable:
            executable = find_browser(executable)  # fail before the crawl, not per request
        allowed = {kind.strip().lower() for kind in settings.BROWSER_ALLOW_RESOURCES}
        return cls(
            always=always,
            executable=executable,
            pages=settings.BROWSER_PAGES,
            wait_for=settings.BROWSER_WAIT_FOR.strip() or "load",
            blocked_resources=BLOCKED_RESOURCES - allowed,
            recycle_pages=settings.BROWSER_RECYCLE_PAGES,
            recycle_rss_bytes=settings.BROWSER_RECYCLE_MEMORY * 1024 * 1024,
            screenshot_dir=Path(settings.BROWSER_SCREENSHOT_DIR),
            timeout_s=settings.REQUEST_TIMEOUT,
            max_bytes=settings.MAX_RESPONSE_SIZE,
        )
