"""`crawl fetch URL`: the body or the headers of one page, fetched as the crawl would."""

from __future__ import annotations

import asyncio
import logging
import sys
import textwrap
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiohttp import web
from click.testing import CliRunner

from crawler.cli import main
from crawler.testing import SiteServer, html_page

RESOLVE = ["-s", "RESOLVE=a.test:127.0.0.1"]
BINARY = bytes(range(256))


@dataclass(frozen=True)
class Result:
    """What one CLI invocation printed and returned."""

    code: int
    out: str
    err: str
    out_bytes: bytes


Invoke = Callable[..., Awaitable[Result]]


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Invoke]:
    """See :func:`cli_in`."""
    yield from cli_in(tmp_path, monkeypatch)


def cli_in(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Invoke]:
    """Run `crawl ...` in-process (in a thread: the test's loop serves the site) in tmp_path.

    The command configures the "crawler" logger and appends spider folders to
    sys.path; both are put back afterwards so other tests see neither.
    """
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    logger = logging.getLogger("crawler")
    saved = (list(logger.handlers), logger.level, logger.propagate)

    async def invoke(*args: str, env: dict[str, str] | None = None, stdin: str = "") -> Result:
        runner = CliRunner()
        result = await asyncio.to_thread(
            runner.invoke, main, list(args), input=stdin, env=env, catch_exceptions=False
        )
        return Result(result.exit_code, result.stdout, result.stderr, result.stdout_bytes)

    yield invoke
    logger.handlers[:] = saved[0]
    logger.setLevel(saved[1])
    logger.propagate = saved[2]


async def _redirect(request: web.Request) -> web.StreamResponse:
    raise web.HTTPFound("/new")


async def _cookie_echo(request: web.Request) -> web.StreamResponse:
    return web.Response(text=f"cookie={request.headers.get('Cookie', '')}")


@pytest.fixture
async def site() -> AsyncIterator[SiteServer]:
    pages = {
        "a.test": {
            "/": html_page("Home ü", ["/p/1"]),
            "/bin": BINARY,
            "/old": _redirect,
            "/new": html_page("New"),
            "/private/x": html_page("Secret"),
            "/cookie": _cookie_echo,
            "/robots.txt": "User-agent: *\nDisallow: /private/\n",
        }
    }
    async with SiteServer(pages) as server:
        yield server


SPIDER = textwrap.dedent(
    """
    from crawler import Spider

    class Shop(Spider):
        name = "shop"
        headers = {"X-From-Spider": "yes", "Authorization": "Bearer s3cret"}
        cookies = {"session": "abc123"}
        settings = {"USER_AGENT": "shop-bot/2"}
    """
)


async def test_body_is_printed_as_bytes_and_robots_txt_is_obeyed(cli, site):
    result = await cli("fetch", site.url("a.test", "/bin"), *RESOLVE)
    assert result.code == 0, result.err
    assert result.out_bytes == BINARY
    assert [r.path_qs for r in site.robots_requests] == ["/robots.txt"]
    assert site.paths_seen("a.test") == ["/bin"]


async def test_html_page_and_default_user_agent(cli, site):
    result = await cli("fetch", site.url("a.test"), *RESOLVE)
    assert result.code == 0
    assert result.out == html_page("Home ü", ["/p/1"])
    assert site.requests[0].headers["User-Agent"] == "crawler/0.1"


async def test_no_robots_skips_robots_txt(cli, site):
    result = await cli("fetch", site.url("a.test", "/private/x"), *RESOLVE, "--no-robots")
    assert result.code == 0
    assert "Secret" in result.out
    assert site.robots_requests == []


async def test_disallowed_url_says_so_and_suggests_no_robots(cli, site):
    result = await cli("fetch", site.url("a.test", "/private/x"), *RESOLVE)
    assert result.code == 9
    assert result.out == ""
    line = result.err.strip()
    assert "\n" not in line
    assert site.url("a.test", "/private/x") in line
    assert "robots.txt disallows" in line and "--no-robots" in line
    assert site.requests == []  # the page itself was never requested


async def test_http_error_status_is_shown(cli, site):
    result = await cli("fetch", site.url("a.test", "/missing"), *RESOLVE, "--no-robots")
    assert result.code == 0
    assert result.out == "not found"


async def test_headers_show_redirect_chain_and_mask_secrets(cli, site, tmp_path):
    (tmp_path / "shop.py").write_text(SPIDER)
    result = await cli(
        "fetch", site.url("a.test", "/old"), *RESOLVE, "--spider", "shop.py", "--headers"
    )
    assert result.code == 0, result.err
    out = result.out
    assert "Home" not in out and "<html>" not in out  # headers, not the body
    assert f"> GET {site.url('a.test', '/old')}" in out
    assert f"> GET {site.url('a.test', '/new')}" in out
    assert "< 302" in out and "< Location: /new" in out and "< 200" in out
    assert "> X-From-Spider: yes" in out
    assert "> User-Agent: shop-bot/2" in out  # the spider's settings apply
    assert "s3cret" not in out and "abc123" not in out
    assert "> Authorization: <masked" in out and "> Cookie: <masked" in out
    assert f"redirects: {site.url('a.test', '/old')} -> {site.url('a.test', '/new')}" in out
    # ...but they were sent
    seen = site.requests[0].headers
    assert seen["Authorization"] == "Bearer s3cret" and "session=abc123" in seen["Cookie"]


async def test_spider_cookies_and_settings_override(cli, site, tmp_path):
    (tmp_path / "shop.py").write_text(SPIDER)
    result = await cli(
        "fetch",
        site.url("a.test", "/cookie"),
        *RESOLVE,
        "--spider",
        "shop.py",
        "-s",
        "USER_AGENT=cli/3",
    )
    assert result.code == 0, result.err
    assert result.out == "cookie=session=abc123"
    assert site.requests[0].headers["User-Agent"] == "cli/3"  # -s beats the spider


async def test_project_settings_and_spider_by_name(cli, site, tmp_path):
    (tmp_path / "myspiders").mkdir()
    (tmp_path / "myspiders" / "shop.py").write_text(SPIDER.replace("shop-bot/2", "named/1"))
    (tmp_path / "pyproject.toml").write_text(
        '[tool.crawler]\nspider_modules = ["myspiders"]\nDEFAULT_HEADERS = {"X-Project" = "p1"}\n'
    )
    result = await cli("fetch", site.url("a.test"), *RESOLVE, "--spider", "shop")
    assert result.code == 0, result.err
    headers = site.requests[0].headers
    assert headers["X-Project"] == "p1" and headers["User-Agent"] == "named/1"


async def test_unreachable_page_fails_with_one_line(cli, refused_port):
    url = f"http://127.0.0.1:{refused_port}/page"
    result = await cli("fetch", url, "--no-robots", "-s", "RETRY_TIMES=0")
    assert result.code == 9
    lines = result.err.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(f"error: cannot fetch {url}:")


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["ftp://a.test/"], 2, "'ftp://a.test/'"),
        (["http://a.test/", "-s", "CONCURENCY=3"], 2, "did you mean CONCURRENCY"),
        (["http://a.test/", "-s", "NOEQUALS"], 2, "NAME=VALUE"),
        (["http://a.test/", "--spider", "nosuch"], 3, "no spider named 'nosuch'"),
    ],
)
async def test_bad_input_is_one_line_error(cli, args, code, message):
    result = await cli("fetch", *args)
    assert result.code == code
    assert message in result.err
    assert "Traceback" not in result.err


async def test_help_has_an_example(cli):
    result = await cli("fetch", "--help")
    assert result.code == 0
    assert "crawl fetch https://" in result.out and "--no-robots" in result.out


def test_header_values_are_masked_by_name_and_escaped_for_the_terminal():
    from crawler.cli.fetch import _masked

    for name in ("Authorization", "X-Api-Key", "X-Auth-Token", "Set-Cookie", "X-Session-Id"):
        assert _masked(name, "SECRET-VALUE") == "<masked>", name
    assert _masked("Server", "nginx") == "nginx"
    assert _masked("X-Title", "a\x1b]0;pwned\x07b") == "a\\x1b]0;pwned\\x07b"
