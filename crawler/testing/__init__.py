"""Public helpers for testing spiders.

- :class:`SiteServer` serves pages for many host names from one loopback server and
  records what it saw; :func:`html_page` builds a small page.
- :class:`ManualClock` is a clock that moves only when a test advances it.
"""

from .clock import ManualClock
from .site import Page, SeenRequest, SiteServer, html_page

__all__ = ["ManualClock", "Page", "SeenRequest", "SiteServer", "html_page"]
