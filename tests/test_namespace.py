"""Our built-ins are crawler.spiders and crawler.pipelines: a project's own names never collide.

The repository keeps top-level ``spiders/`` and ``pipelines/`` folders; pyproject.toml maps
them into the ``crawler`` package, so nothing named ``spiders`` or ``pipelines`` is installed
top-level and a user project with a ``pipelines`` package or module (or a ``spiders``
package) runs ``crawl run ... -o out.jsonl`` like any other.
"""

from __future__ import annotations

import asyncio
import csv
import json
import os
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

import pytest

from crawler.testing import SiteServer, html_page

REPO = Path(__file__).resolve().parents[1]
CRAWL = [sys.executable, "-m", "crawler"]
OUR_TOP_LEVEL = {"crawler"}
BUILTINS = {"crawler.spiders": "spiders", "crawler.pipelines": "pipelines"}

# Ours must never import these: each raises if it is imported.
RAISES = 'raise RuntimeError("the project\'s own {name} was imported by crawler")\n'

# The project's own pipeline, imported by its own module name through PIPELINES.
TAG = textwrap.dedent(
    """
    LAYOUT = {layout!r}
    exporter_for = None  # a name ours has too: it must not be taken for ours


    class Tag:
        async def process_item(self, item, spider):
            item["tag"] = LAYOUT
            return item
    """
)

SPIDER = textwrap.dedent(
    """
    from crawler import Spider


    class Pages(Spider):
        name = "pages"
        settings = {"PIPELINES": ["pipelines:Tag"]}

        def parse(self, response):
            yield {"url": response.url, "title": response.css_first("title").text()}
            yield from response.follow_all()
    """
)


async def crawl(*args: str, cwd: Path, timeout: float = 60) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        *CRAWL,
        *args,
        cwd=cwd,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


@pytest.fixture
async def site():
    pages = {
        "a.test": {
            "/": html_page("Home", ["/1", "/2"]),
            "/1": html_page("One", ["/2"]),
            "/2": html_page("Two", ["/"]),
        }
    }
    async with SiteServer(pages) as server:
        yield server


def make_project(root: Path, layout: str) -> None:
    """A user project with its own ``spiders/`` package and ``pipelines`` package or module."""
    (root / "spiders").mkdir()
    (root / "spiders" / "__init__.py").write_text(RAISES.format(name="spiders package"))
    (root / "spiders" / "links.py").write_text(RAISES.format(name="spiders.links"))
    if layout == "package":
        # A package beside a module of the same name: the package is what `pipelines` is.
        (root / "pipelines").mkdir()
        (root / "pipelines" / "__init__.py").write_text(TAG.format(layout=layout))
        (root / "pipelines" / "jsonlines.py").write_text(RAISES.format(name="pipelines.jsonlines"))
        (root / "pipelines.py").write_text(RAISES.format(name="pipelines.py"))
    else:
        (root / "pipelines.py").write_text(TAG.format(layout=layout))
    (root / "s.py").write_text(SPIDER)


@pytest.mark.parametrize("layout", ["package", "module"])
async def test_project_with_own_pipelines_and_spiders_runs(site, tmp_path, layout):
    make_project(tmp_path, layout)
    start = site.url("a.test")
    code, _, err = await crawl(
        "run",
        "s.py",
        "-a",
        f"start_urls={start}",
        "-s",
        "RESOLVE=a.test:127.0.0.1",
        "-s",
        "PROGRESS_INTERVAL=0",
        "-o",
        "out.jsonl",
        "-o",
        "out.csv",
        cwd=tmp_path,
    )
    assert code == 0, err
    assert "Traceback" not in err
    expected = {
        (start, "Home", layout),
        (site.url("a.test", "/1"), "One", layout),
        (site.url("a.test", "/2"), "Two", layout),
    }
    lines = (tmp_path / "out.jsonl").read_text().splitlines()
    assert len(lines) == 3
    assert {(i["url"], i["title"], i["tag"]) for i in map(json.loads, lines)} == expected
    with (tmp_path / "out.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 3
    assert {(r["url"], r["title"], r["tag"]) for r in rows} == expected

    # Built-in spiders by name, and the listing, never touch the project's spiders/ package.
    code, out, err = await crawl("list", cwd=tmp_path)
    assert code == 0, err
    assert {"links", "sitemap"} <= {line.split("\t")[0] for line in out.splitlines()}
    code, out, err = await crawl(
        "run",
        "links",
        "-a",
        f"start_urls={start}",
        "-s",
        "RESOLVE=a.test:127.0.0.1",
        "-s",
        "PROGRESS_INTERVAL=0",
        "-o",
        "-",
        cwd=tmp_path,
    )
    assert code == 0, err
    assert len(out.splitlines()) == 3


# Run from an empty folder in isolated mode (-I: neither the repo, the cwd nor PYTHONPATH on
# sys.path, so the repo's own crawler.egg-info is not found): what the environment installed.
INSTALLED = """
import importlib.metadata, importlib.util, json
import crawler.pipelines, crawler.spiders
dist = importlib.metadata.distribution("crawler")
print(json.dumps({
    "top_level": (dist.read_text("top_level.txt") or "crawler").split(),
    "first_parts": sorted({f.parts[0] for f in dist.files or []}),
    "pipelines": importlib.util.find_spec("pipelines") is None,
    "spiders": importlib.util.find_spec("spiders") is None,
    "exporter_for": callable(crawler.pipelines.exporter_for),
    "spiders_name": crawler.spiders.__name__,
}))
"""


def test_installed_top_level_is_only_crawler(tmp_path):
    done = subprocess.run(
        [sys.executable, "-I", "-c", INSTALLED],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout)
    assert set(found["top_level"]) == OUR_TOP_LEVEL
    installed = {part.removesuffix(".py") for part in found["first_parts"]}
    assert not installed & {"spiders", "pipelines"}, found["first_parts"]
    assert found["pipelines"] and found["spiders"], "nothing importable as pipelines/spiders"
    assert found["exporter_for"]
    assert found["spiders_name"] == "crawler.spiders"


def _packages_on_disk() -> set[str]:
    names = set()
    for root, dotted in [("crawler", "crawler"), *((d, p) for p, d in BUILTINS.items())]:
        for init in (REPO / root).rglob("__init__.py"):
            rel = init.parent.relative_to(REPO / root).parts
            names.add(".".join((dotted, *rel)))
    return names


def test_setuptools_config_maps_builtins_into_crawler():
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    packages = config["packages"]
    assert isinstance(packages, list), "packages are listed: find cannot follow package-dir"
    assert {name.split(".")[0] for name in packages} == OUR_TOP_LEVEL
    assert config["package-dir"] == BUILTINS
    # Every package folder is installed (a new subpackage must be listed in pyproject.toml).
    assert set(packages) == _packages_on_disk()
