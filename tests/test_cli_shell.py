"""`crawl shell`: a page and fetch() in a REPL, driven non-interactively with -c and stdin."""

from __future__ import annotations

import textwrap
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from aiohttp import web
from test_cli_fetch import RESOLVE, Invoke, cli_in

from crawler.cli.shell import NO_BROWSER_ENV, LoopThread, ShellSession
from crawler.settings import Settings
from crawler.testing import SiteServer, html_page
from crawler.testing.callbacks import make_response

NO_BROWSER = {NO_BROWSER_ENV: "1"}


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Invoke]:
    yield from cli_in(tmp_path, monkeypatch)


async def _login(request: web.Request) -> web.StreamResponse:
    response = web.Response(text="ok")
    response.set_cookie("sid", "s1")
    return response


async def _me(request: web.Request) -> web.StreamResponse:
    return web.Response(text=f"sid={request.cookies.get('sid')}")


@pytest.fixture
async def site() -> AsyncIterator[SiteServer]:
    pages = {
        "a.test": {
            "/": html_page("Home", ["/p/1", "/p/2"]),
            "/p/1": html_page("One"),
            "/robots.txt": "User-agent: *\nAllow: /\n",
            "/login": _login,
            "/me": _me,
        }
    }
    async with SiteServer(pages) as server:
        yield server


async def test_c_prints_a_str_value(cli, site):
    result = await cli(
        "shell", site.url("a.test"), *RESOLVE, "-c", 'response.css_first("title").text()'
    )
    assert result.code == 0, result.err
    assert result.out == "Home\n"
    assert len(site.robots_requests) == 1


async def test_c_prints_repr_of_other_values(cli, site):
    code = "[r.url for r in response.follow_all()], response.status"
    result = await cli("shell", site.url("a.test"), *RESOLVE, "-c", code)
    assert result.code == 0, result.err
    expected = ([site.url("a.test", "/p/1"), site.url("a.test", "/p/2")], 200)
    assert result.out == repr(expected) + "\n"


async def test_fetch_rebinds_response_and_request(cli, site):
    code = 'fetch("/p/1"); print(response.css_first("title").text(), request.url)'
    result = await cli("shell", site.url("a.test"), *RESOLVE, "-c", code)
    assert result.code == 0, result.err
    assert result.out == f"One {site.url('a.test', '/p/1')}\n"
    assert site.paths_seen("a.test") == ["/", "/p/1"]


async def test_cookies_carry_over_between_fetches(cli, site):
    code = 'fetch("/login"); fetch("/me"); print(response.text)'
    result = await cli("shell", site.url("a.test"), *RESOLVE, "-c", code)
    assert result.code == 0, result.err
    assert result.out == "sid=s1\n"


async def test_settings_and_spider_are_bound(cli, site, tmp_path):
    (tmp_path / "shop.py").write_text(
        textwrap.dedent(
            """
            from crawler import Spider

            class Shop(Spider):
                name = "shop"
                headers = {"X-Shop": "1"}
            """
        )
    )
    code = "spider.name, settings.USER_AGENT"
    args = ["--spider", "shop.py", "-s", "USER_AGENT=ua/9", "-c", code]
    result = await cli("shell", site.url("a.test"), *RESOLVE, *args)
    assert result.code == 0, result.err
    assert result.out == "('shop', 'ua/9')\n"
    assert site.requests[0].headers["X-Shop"] == "1"
    assert site.requests[0].headers["User-Agent"] == "ua/9"


async def test_standard_repl_reads_stdin(cli, site):
    stdin = 'fetch("/p/1")\nresponse.css_first("title").text()\n'
    result = await cli("shell", site.url("a.test"), *RESOLVE, "--repl", "python", stdin=stdin)
    assert result.code == 0, result.err
    assert "'One'" in result.out
    assert "fetch(url_or_request)" in result.err  # the banner


async def test_file_argument_needs_no_network(cli, tmp_path):
    (tmp_path / "page.html").write_text(html_page("From file", ["/a", "b"]))
    code = 'response.css_first("title").text(), [r.url for r in response.follow_all()]'
    result = await cli("shell", "page.html", "--url", "https://shop.test/cat/", "-c", code)
    assert result.code == 0, result.err
    assert (
        result.out == repr(("From file", ["https://shop.test/a", "https://shop.test/cat/b"])) + "\n"
    )


async def test_view_writes_a_file_and_does_not_open_a_browser(cli, tmp_path):
    (tmp_path / "page.html").write_text("<html><head><title>V</title></head></html>")
    result = await cli("shell", "page.html", "-c", "view(response)", env=NO_BROWSER)
    assert result.code == 0, result.err
    path = Path(result.out.splitlines()[0])
    assert '<head><base href="http://localhost/page.html"><title>' in path.read_text()
    path.unlink()


def test_view_uses_the_injected_opener():
    opened: list[str] = []
    loop = LoopThread()
    try:
        session = ShellSession(Settings(), None, loop, opener=opened.append)
        session.show(make_response("https://a.test/", "<p>hi</p>"))
        path = Path(session.view())
    finally:
        loop.close()
    assert opened == [path.as_uri()]
    assert path.read_text() == '<base href="https://a.test/"><p>hi</p>'
    path.unlink()


async def test_c_error_exits_10_with_the_user_traceback(cli, tmp_path):
    (tmp_path / "page.html").write_text("<p>x</p>")
    result = await cli("shell", "page.html", "-c", "1/0")
    assert result.code == 10
    assert result.err.startswith("error: -c raised ZeroDivisionError: division by zero\n")
    assert 'File "<-c>"' in result.err and "crawler/cli" not in result.err


async def test_failed_fetch_with_c_exits_9(cli, refused_port):
    url = f"http://127.0.0.1:{refused_port}/"
    result = await cli("shell", url, "--no-robots", "-s", "RETRY_TIMES=0", "-c", "response")
    assert result.code == 9
    assert result.err.startswith(f"error: cannot fetch {url}:")


async def test_missing_file_is_an_error(cli):
    result = await cli("shell", "nope.html", "-c", "response")
    assert result.code == 2
    assert "'nope.html' does not exist" in result.err


async def test_help_has_an_example(cli):
    result = await cli("shell", "--help")
    assert result.code == 0
    assert "crawl shell https://" in result.out and "-c" in result.out
