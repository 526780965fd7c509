"""Ready-made spiders, runnable by name from the CLI (``crawl list`` shows them), and
``RuleSpider``/``Rule`` to subclass for rule-based link following.

They use only crawler's public API.
"""

from .links import LinkSpider
from .rules import Rule, RuleSpider
from .sitemap import SitemapSpider

__all__ = ["LinkSpider", "Rule", "RuleSpider", "SitemapSpider"]
