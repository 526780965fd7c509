"""The documentation site (docs/, mkdocs.yml) builds, links up and tells the truth.

- ``mkdocs build --strict`` succeeds: every page is in the nav and every link and anchor
  between pages resolves (mkdocs.yml turns those checks into warnings, strict into errors);
- the settings reference (docs/settings.md) is what ``python docs/gen_settings.py``
  generates from ``Settings.describe()``: run that script after changing a setting;
- README.md links to every page, and every link it has into docs/ exists;
- the tutorial's spider and test work against the demo bookstore.

The python blocks of every page are parsed and the named snippets run in
tests/test_readme_snippets.py; docs/testing.md in tests/test_readme_testing.py,
docs/coming-from-scrapy.md in tests/test_scrapy_compat.py.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import yaml

from crawler import Crawler, Settings, Spider

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
README = ROOT / "README.md"
HANG_GUARD_S = 30.0

_PYTHON_BLOCK = re.compile(r"^```python\n(.*?)^```", re.MULTILINE | re.DOTALL)


def load(path: Path, name: str) -> ModuleType:
    """Import the file at ``path`` as module ``name``."""
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def nav_pages() -> list[str]:
    """Every page file named in mkdocs.yml's nav, in order."""
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"))
    found: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, str):
            found.append(node)
        elif isinstance(node, list):
            for child in node:
                walk(child)
        elif isinstance(node, dict):
            for child in node.values():
                walk(child)

    walk(config["nav"])
    return found


# -- the site ---------------------------------------------------------------------------------


def test_mkdocs_builds_strict(tmp_path: Path) -> None:
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert (tmp_path / "site" / "index.html").is_file()
    assert (tmp_path / "site" / "settings" / "index.html").is_file()


def test_every_page_is_in_the_nav_and_every_nav_entry_exists() -> None:
    pages = nav_pages()
    assert len(pages) == len(set(pages)), pages
    on_disk = sorted(path.name for path in DOCS.glob("*.md"))
    assert sorted(pages) == on_disk


# -- the settings reference -------------------------------------------------------------------


def test_the_settings_page_is_generated_from_the_settings() -> None:
    gen = load(DOCS / "gen_settings.py", "docs_gen_settings")
    page = (DOCS / "settings.md").read_text(encoding="utf-8")
    missing = [
        name
        for name, doc, default in Settings.describe()
        if f"\n{gen.settings_row(name, doc, default)}\n" not in page
    ]
    assert not missing, (
        f"docs/settings.md is missing or outdated for {missing}:"
        " regenerate it with `python docs/gen_settings.py`"
    )
    assert gen.generated_page(page) == page, (
        "docs/settings.md differs from what `python docs/gen_settings.py` writes: run it"
    )


# -- README.md --------------------------------------------------------------------------------


def test_the_readme_links_to_every_page() -> None:
    readme = README.read_text(encoding="utf-8")
    links = set(re.findall(r"\]\((docs/[^)#\s]+)", readme))
    for link in links:
        assert (ROOT / link).is_file(), f"README.md links to {link}, which does not exist"
    for page in nav_pages():
        assert f"docs/{page}" in links, f"README.md has no link to docs/{page}"
    assert 'pip install -e ".[test]" && mkdocs serve' in readme


def test_the_readme_stays_short() -> None:
    assert len(README.read_text(encoding="utf-8").splitlines()) < 150


# -- the tutorial -----------------------------------------------------------------------------


def tutorial_blocks() -> list[str]:
    return _PYTHON_BLOCK.findall((DOCS / "tutorial.md").read_text(encoding="utf-8"))


async def test_the_tutorial_spider_crawls_the_demo_bookstore(tmp_path: Path) -> None:
    [spider_source, test_source] = tutorial_blocks()
    demo = load(ROOT / "examples" / "demo_site.py", "docs_demo_site")
    books = ModuleType("books")
    exec(compile(spider_source, "docs/tutorial.md (books.py)", "exec"), books.__dict__)
    spider_class = books.BooksSpider
    assert issubclass(spider_class, Spider)
    cache = str(tmp_path / "httpcache")
    async with demo.DemoSite() as site:
        runs = []
        for _ in range(2):
            settings = Settings.build(
                ("spider settings", spider_class.settings),
                (
                    "test",
                    {"PROGRESS_INTERVAL": 0, "HTTPCACHE_ENABLED": True, "HTTPCACHE_DIR": cache},
                ),
            )
            spider = spider_class(start_urls=[site.url])
            async with asyncio.timeout(HANG_GUARD_S):
                runs.append(await Crawler(spider, settings, collect_items=True).run())
    first, second = runs
    assert len(first.items) == 60
    assert set(first.items[0]) == {"url", "title", "price", "genre"}
    assert all(isinstance(item["price"], float) for item in first.items)
    assert first.stats["httpcache/hit"] == 0
    assert second.stats["httpcache/miss"] == 0  # the rerun came from the cache
    assert sorted(map(str, second.items)) == sorted(map(str, first.items))

    # the tutorial's test, with its `from books import BooksSpider`
    sys.modules["books"] = books
    try:
        namespace: dict[str, Any] = {"__name__": "test_books"}
        exec(compile(test_source, "docs/tutorial.md (test_books.py)", "exec"), namespace)
        await namespace["test_parse_book"]()
    finally:
        del sys.modules["books"]
