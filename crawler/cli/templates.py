"""The files ``crawl new`` writes, as ``string.Template`` text (``$name`` placeholders).

Templates are string constants, not package data, so every installation has them.
Values are validated by :mod:`crawler.cli.new` before they get here (names are
identifiers, URLs hold no quotes), so they can be pasted into Python and TOML as is.
Every Python file rendered here passes ``ruff check`` and ``ruff format --check``
(tests/test_cli_new.py runs ruff on them).
"""

from __future__ import annotations

from dataclasses import dataclass
from string import Template
from urllib.parse import urljoin

__all__ = ["SpiderTemplate", "project_files", "spider_file"]

LINE_LENGTH = 88  # ruff's and black's default: a longer line would be re-wrapped by the formatter

SPIDER_PY = Template('''\
"""The $spider spider: the URL and title of every page of $domain.

Run it with ``crawl run $run_target -o $spider.jsonl``.
Add ``--cache`` while you develop: reruns are answered from the local
HTTP cache instead of the site.
"""

from collections.abc import Iterator
from typing import Any, ClassVar

from crawler import Request, Response, Spider


class $class_name(Spider):
    """Yields each page's URL and title, and follows its links within the site."""

    name = "$spider"
$start_urls
$allowed_domains
    # Follow links at most 2 hops from the start page; remove to crawl the whole site.
    settings: ClassVar[dict[str, Any]] = {"DEPTH_LIMIT": 2}

    def parse(self, response: Response) -> Iterator[dict[str, Any] | Request]:
        """One item per page, then a request for every link on it."""
        title = response.css_first("title")
        yield {
            "url": response.url,
            "title": title.text(strip=True) if title is not None else None,
        }
        # Links to other sites are dropped (and counted) by allowed_domains.
        yield from response.follow_all()
''')

TEST_PY = Template('''\
"""Tests of the $spider spider's callback: offline, no server, no network."""

from crawler.testing import make_response, run_callback

from $project.spiders.$spider import $class_name

START_URL = "$start_url"
ABOUT_URL = "$about_url"
NEXT_URL = "$next_url"
PAGE = """<html><head><title> Home </title></head><body>
<a href="/about">About us</a> <a href="page-2.html">Next page</a>
</body></html>"""


async def test_parse_yields_the_url_and_title() -> None:
    result = await run_callback($class_name().parse, make_response(START_URL, PAGE))
    assert result.items == [{"url": START_URL, "title": "Home"}]


async def test_parse_follows_every_link() -> None:
    result = await run_callback($class_name().parse, make_response(START_URL, PAGE))
    assert [request.url for request in result.requests] == [ABOUT_URL, NEXT_URL]
''')

PYPROJECT_TOML = Template("""\
[build-system]
requires = ["setuptools>=68"]
build-backend = "setuptools.build_meta"

[project]
name = "$project"
version = "0.1.0"
description = "Spiders for $domain"
readme = "README.md"
requires-python = ">=3.11"
dependencies = ["crawler>=$crawler_version"]

[project.optional-dependencies]
test = ["pytest>=8", "pytest-asyncio>=0.24"]

[tool.setuptools.packages.find]
include = ["$project*"]

# Settings for every spider of this project; a spider's own `settings` and
# `crawl run -s NAME=VALUE` win over these. The crawler README lists them all.
[tool.crawler]
spider_modules = ["$project.spiders"]  # where `crawl list` and `crawl run NAME` look
# Say who you are and how to reach you: "$project-bot/0.1 (+https://you.example/bot)".
USER_AGENT = "$project-bot/0.1"
CONCURRENCY = 16                 # requests in flight at once, over all sites
CONCURRENCY_PER_HOST = 2         # ... and to one site: be gentle
DOWNLOAD_DELAY = 0.25            # seconds between two requests to the same site
ROBOTSTXT_OBEY = true

# A scheduled crawl: `crawl jobs list`, `crawl jobs run $spider`, `crawl scheduler`.
# Its run history, locks and state live in .crawler/jobs.
[tool.crawler.jobs.$spider]
spider = "$spider"
outputs = ["data/$spider/%(date)s-%(run_id)s.jsonl"]  # one new file per run
cron = "0 6 * * *"               # daily at 06:00 (or, instead of cron: every = "6h")
# timezone = "UTC"               # the zone of the cron expression (default: this machine's)
# incremental = true             # send If-None-Match / If-Modified-Since from the last run
# only_changed = true            # emit only new items and items that changed
# key_field = "url"              # what identifies an item across runs
# settings = { DOWNLOAD_DELAY = 1.0 }  # setting overrides for this job only

[tool.crawler.jobs.$spider.checks]
min_items = 1                    # a run without items failed (exit code 4)
# max_error_rate = 0.05          # more than 5% failed requests: the run failed (exit code 5)
# required_fields = { title = 1.0 }  # every item must have a title

[tool.pytest.ini_options]
asyncio_mode = "auto"
asyncio_default_fixture_loop_scope = "function"
testpaths = ["tests"]
pythonpath = ["."]
""")

README_MD = Template("""\
# $project

Spiders for $domain, built with the `crawler` framework.

## Set up

Install this project, with the crawler framework and pytest, into a virtual environment:

```sh
python3 -m venv .venv && .venv/bin/pip install -e ".[test]"
```

## Run

```sh
crawl list                                  # the spiders of this project
crawl run $spider -o $spider.jsonl     # crawl, appending items to the file
crawl run $spider --cache -O $spider.jsonl     # develop against cached pages
```

`--cache` keeps every response in `.crawler/httpcache` and answers repeated requests
from it, so rerunning an edited spider costs no network and is fast. Delete that folder
(or run without `--cache`) to fetch fresh pages.

## Test

```sh
python -m pytest
```

`tests/test_$spider.py` runs the spider's callback on a hand-made response with
`crawler.testing.make_response` and `run_callback`: offline, in milliseconds. Copy a
real page into a test when you change a selector.

## Add a spider

```sh
crawl new spider other other.example        # writes $project/spiders/other.py
```

## Schedule it

The job `$spider` in `pyproject.toml` crawls daily at 06:00 into `data/$spider/`:

```sh
crawl jobs list             # jobs, their schedule and last run
crawl jobs run $spider     # run it now (what cron or a systemd timer calls)
crawl scheduler             # run every job when it is due, until stopped
```

Settings for every spider are in `[tool.crawler]` in `pyproject.toml`.
""")

GITIGNORE = """\
.crawler/
data/
*.jsonl
__pycache__/
.venv/
"""


@dataclass(frozen=True, slots=True)
class SpiderTemplate:
    """What a new spider is: its name, class, first URL and the domain it stays on."""

    name: str
    class_name: str
    start_url: str
    domain: str


def _tuple_attribute(attribute: str, value: str) -> str:
    """``    attribute = ("value",)``, wrapped the way ``ruff format`` would if too long."""
    line = f'    {attribute} = ("{value}",)'
    if len(line) <= LINE_LENGTH:
        return line
    return f'    {attribute} = (\n        "{value}",\n    )'


def spider_file(spider: SpiderTemplate, run_target: str) -> str:
    """The Python source of a new spider; ``run_target`` is what ``crawl run`` takes."""
    return SPIDER_PY.substitute(
        spider=spider.name,
        class_name=spider.class_name,
        domain=spider.domain,
        run_target=run_target,
        start_urls=_tuple_attribute("start_urls", spider.start_url),
        allowed_domains=_tuple_attribute("allowed_domains", spider.domain),
    )


def project_files(project: str, spider: SpiderTemplate, crawler_version: str) -> dict[str, str]:
    """Every file of a new project, by path relative to the project folder."""
    values = {
        "project": project,
        "spider": spider.name,
        "class_name": spider.class_name,
        "domain": spider.domain,
        "start_url": spider.start_url,
        "about_url": urljoin(spider.start_url, "/about"),
        "next_url": urljoin(spider.start_url, "page-2.html"),
        "crawler_version": crawler_version,
    }
    return {
        "pyproject.toml": PYPROJECT_TOML.substitute(values),
        "README.md": README_MD.substitute(values),
        ".gitignore": GITIGNORE,
        f"{project}/__init__.py": f'"""The {project} crawling project."""\n',
        f"{project}/spiders/__init__.py": (
            f'"""The spiders of {project}.\n\n``crawl list`` and ``crawl run`` search every'
            ' module of this package.\n"""\n'
        ),
        f"{project}/spiders/{spider.name}.py": spider_file(spider, spider.name),
        f"tests/test_{spider.name}.py": TEST_PY.substitute(values),
    }
