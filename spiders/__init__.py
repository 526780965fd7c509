"""Ready-made spiders, runnable by name from the CLI (``crawl list`` shows them).

They use only crawler's public API.
"""

from .links import LinkSpider
from .sitemap import SitemapSpider

__all__ = ["LinkSpider", "SitemapSpider"]
