"""Start-up stays cheap (issue 17): what `import crawler` and the commands import, and LOOP.

No test here asserts a time (bench/startup.py measures those): they assert which modules a
fresh process has imported, which is what the time depends on.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import click
import pytest

import crawler
from crawler.errors import ConfigError
from crawler.loops import UVLOOP_MISSING, loop_factory, run

# Heavy optional or command-specific dependencies that a start-up must not import.
HEAVY = {"redis", "rich", "pydantic", "croniter", "parsel", "itemadapter", "publicsuffixlist"}
# What neither `import crawler`, `crawl --help` nor `crawl list` needs.
NOT_FOR_LISTING = HEAVY | {"aiohttp", "aiosqlite", "tenacity", "uvloop", "crawler.engine"}

HAS_UVLOOP = importlib.util.find_spec("uvloop") is not None
BLOCK_UVLOOP = "import sys; sys.modules['uvloop'] = None\n"  # as if it were not installed


def imported_after(code: str, cwd: Path) -> set[str]:
    """The modules a fresh interpreter has imported after running ``code``."""
    script = textwrap.dedent(code) + textwrap.dedent(
        """
        import json as _json, sys as _sys
        print("MODULES=" + _json.dumps(sorted(_sys.modules)))
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], cwd=cwd, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    line = next(line for line in proc.stdout.splitlines() if line.startswith("MODULES="))
    return set(json.loads(line.removeprefix("MODULES=")))


def heavy_in(modules: set[str], heavy: set[str]) -> set[str]:
    return {m for m in modules if m in heavy or m.split(".")[0] in heavy}


CLI = """
from crawler.cli import main
try:
    main({argv!r})
except SystemExit:
    pass
"""


def test_import_crawler_imports_no_dependency(tmp_path: Path) -> None:
    modules = imported_after("import crawler", tmp_path)
    assert heavy_in(modules, NOT_FOR_LISTING) == set()
    assert "crawler.downloader" not in modules


def test_public_names_load_on_first_use(tmp_path: Path) -> None:
    modules = imported_after("from crawler import Spider, Settings, Request", tmp_path)
    assert heavy_in(modules, NOT_FOR_LISTING) == set()
    assert set(crawler.__all__) <= set(dir(crawler))
    for name in crawler.__all__:
        assert getattr(crawler, name) is getattr(sys.modules["crawler"], name)
    with pytest.raises(AttributeError, match="no_such_name"):
        crawler.no_such_name  # noqa: B018


def test_help_imports_no_command(tmp_path: Path) -> None:
    modules = imported_after(CLI.format(argv=["--help"]), tmp_path)
    assert heavy_in(modules, NOT_FOR_LISTING) == set()
    assert not {m for m in modules if m.startswith("crawler.cli.") and m != "crawler.cli"}


def test_list_imports_no_engine(tmp_path: Path) -> None:
    modules = imported_after(CLI.format(argv=["list"]), tmp_path)
    assert "crawler.cli.listing" in modules
    assert heavy_in(modules, NOT_FOR_LISTING) == set()


def test_run_command_imports_no_optional_dependency(tmp_path: Path) -> None:
    # redis only for FRONTIER_URL=redis://, croniter for jobs, rich on a terminal,
    # itemadapter/pydantic for a non-dict item, the suffix list for a host name.
    modules = imported_after("import crawler.cli.run", tmp_path)
    assert heavy_in(modules, HEAVY) == set()
    assert "crawler.jobs" not in modules


def test_help_lists_every_command_with_its_own_short_help() -> None:
    from crawler.cli import COMMANDS, main

    out = subprocess.run(
        [sys.executable, "-m", "crawler", "--help"], capture_output=True, text=True, check=True
    ).stdout
    listed = out.split("Commands:")[1]
    ctx = click.Context(main)
    for name, (module, attribute, help) in COMMANDS.items():
        real = getattr(importlib.import_module(module, "crawler.cli"), attribute)
        assert real.name == name
        # The help stored for the listing is the command's own first paragraph.
        assert help == (real.help or "").split("\n\n")[0].strip(), name
        assert f"  {name} " in listed
        for width in (30, 45, 80, 200):
            stored = click.Command(name, help=help).get_short_help_str(width)
            assert stored == real.get_short_help_str(width), name
        assert main.get_command(ctx, name) is real
    assert sorted(main.list_commands(ctx)) == sorted(COMMANDS)
    assert "jobs" in main.commands


# --- LOOP -----------------------------------------------------------------------------


async def _loop_module() -> str:
    return type(asyncio.get_running_loop()).__module__


def test_loop_asyncio() -> None:
    assert run(_loop_module(), "asyncio").startswith("asyncio")
    assert loop_factory("asyncio")[1] == "asyncio"


@pytest.mark.skipif(not HAS_UVLOOP, reason="uvloop is not installed")
def test_loop_auto_and_uvloop_use_uvloop() -> None:
    assert run(_loop_module(), "uvloop").startswith("uvloop")
    assert run(_loop_module(), "auto").startswith("uvloop")


def test_loop_auto_without_uvloop_is_asyncio(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "uvloop", None)
    assert loop_factory("auto")[1] == "asyncio"
    with pytest.raises(ConfigError, match=r"pip install 'crawler\[speedups\]'"):
        loop_factory("uvloop")


def test_loop_setting_is_checked() -> None:
    from crawler import Settings, SettingsError

    assert Settings().LOOP == "auto"
    with pytest.raises(SettingsError, match="LOOP"):
        Settings.build(("-s", {"LOOP": "tokio"}))


EMPTY_SPIDER = """
from crawler import Spider

class Empty(Spider):
    name = "empty"
"""


def _crawl(tmp_path: Path, *args: str, prelude: str = "") -> subprocess.CompletedProcess[str]:
    (tmp_path / "empty_spider.py").write_text(EMPTY_SPIDER)
    code = prelude + CLI.replace("pass", "raise").format(argv=list(args))
    return subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )


@pytest.mark.parametrize("loop", ["asyncio", "uvloop", "auto"])
def test_crawl_run_logs_the_loop_it_runs_on(tmp_path: Path, loop: str) -> None:
    if loop == "uvloop" and not HAS_UVLOOP:
        pytest.skip("uvloop is not installed")
    proc = _crawl(tmp_path, "run", "empty_spider.py", "-q", "-L", "DEBUG", "-s", f"LOOP={loop}")
    assert proc.returncode == 9, proc.stderr  # no start requests: nothing crawled
    expected = "uvloop" if loop == "uvloop" or (loop == "auto" and HAS_UVLOOP) else "asyncio"
    assert f"event loop: {expected}" in proc.stderr


def test_crawl_run_loop_uvloop_not_installed_is_one_line_exit_2(tmp_path: Path) -> None:
    proc = _crawl(tmp_path, "run", "empty_spider.py", "-s", "LOOP=uvloop", prelude=BLOCK_UVLOOP)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == f"error: {UVLOOP_MISSING}"
    assert "Traceback" not in proc.stderr


def test_crawl_run_auto_without_uvloop_runs_on_asyncio(tmp_path: Path) -> None:
    proc = _crawl(tmp_path, "run", "empty_spider.py", "-q", "-L", "DEBUG", prelude=BLOCK_UVLOOP)
    assert proc.returncode == 9, proc.stderr
    assert "event loop: asyncio" in proc.stderr


def test_crawl_fetch_loop_uvloop_not_installed_exits_2(tmp_path: Path) -> None:
    proc = _crawl(
        tmp_path, "fetch", "http://127.0.0.1:9/", "-s", "LOOP=uvloop", prelude=BLOCK_UVLOOP
    )
    assert proc.returncode == 2, proc.stderr
    assert "pip install 'crawler[speedups]'" in proc.stderr.strip().splitlines()[-1]


def test_crawl_bench_loop_uvloop_not_installed_exits_2(tmp_path: Path) -> None:
    proc = _crawl(tmp_path, "bench", "--pages", "1", "--loop", "uvloop", prelude=BLOCK_UVLOOP)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == f"error: {UVLOOP_MISSING}"


def test_job_commands_take_loop_from_the_project(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text('[tool.crawler]\nLOOP = "uvloop"\n')
    proc = _crawl(tmp_path, "jobs", "list", prelude=BLOCK_UVLOOP)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == f"error: {UVLOOP_MISSING}"
    (tmp_path / "pyproject.toml").write_text('[tool.crawler]\nLOOP = "asyncio"\n')
    proc = _crawl(tmp_path, "jobs", "list", prelude=BLOCK_UVLOOP)
    assert proc.returncode == 0, proc.stderr
