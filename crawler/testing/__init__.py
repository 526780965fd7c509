"""Public helpers for testing spiders.

- :func:`make_response` builds a real :class:`~crawler.Response` from a URL and a body, and
  :func:`run_callback` runs a callback on it and returns its items and requests: a unit
  test of one callback needs no server.
- :func:`replay` runs a spider offline against a recording (``crawl parse URL --record
  FILE``, or any HTTP cache file); a request that was not recorded fails with
  :class:`ReplayError` naming it.
- :class:`SiteServer` serves pages for many host names from one loopback server and
  records what it saw; :func:`html_page` builds a small page.
- :class:`ManualClock` is a clock that moves only when a test advances it.
"""

from .callbacks import CallbackOutput, make_response, run_callback
from .clock import ManualClock
from .replay import ReplayError, replay
from .site import Page, SeenRequest, SiteServer, html_page

__all__ = [
    "CallbackOutput",
    "ManualClock",
    "Page",
    "ReplayError",
    "SeenRequest",
    "SiteServer",
    "html_page",
    "make_response",
    "replay",
    "run_callback",
]
