"""The examples of docs/testing.md ("Testing your spiders") run as written, with the pytest
set-up the page states (pytest-asyncio, asyncio_mode = "auto"), in a project of their own."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from pathlib import Path

TESTING_PAGE = Path(__file__).resolve().parent.parent / "docs" / "testing.md"

SPIDERS = textwrap.dedent(
    """
    from crawler import Spider


    class MySpider(Spider):
        name = "my"

        async def parse(self, response):
            yield {"title": response.css_first("title").text()}
            for request in response.follow_all():
                yield request


    class ShopSpider(Spider):
        name = "shop"

        def parse_product(self, response):
            yield {"name": response.css_first("h1").text()}
            yield from response.follow_all()
    """
)


def read_testing_page() -> str:
    return TESTING_PAGE.read_text(encoding="utf-8")


def test_the_testing_examples_run_as_written(tmp_path: Path) -> None:
    section = read_testing_page()
    assert 'asyncio_mode = "auto"' in section and "pytest-asyncio" in section
    blocks = re.findall(r"```python\n(.*?)```", section, re.S)
    assert len(blocks) == 2
    (tmp_path / "myproject").mkdir()
    (tmp_path / "myproject" / "__init__.py").write_text("")
    (tmp_path / "myproject" / "spiders.py").write_text(SPIDERS)
    (tmp_path / "tests").mkdir()
    for n, block in enumerate(blocks):
        (tmp_path / "tests" / f"test_example_{n}.py").write_text(block)
    (tmp_path / "pyproject.toml").write_text(
        '[tool.pytest.ini_options]\nasyncio_mode = "auto"\npythonpath = ["."]\n'
        'asyncio_default_fixture_loop_scope = "function"\n'
    )
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 passed" in done.stdout, done.stdout
