"""Hostile input never makes a log line huge or leaks a credential.

Units: ``short_url``, ``scrub`` and ``SafeLogFilter`` (tracebacks included), and
``Request`` moving ``user:password@`` from its URL into an ``Authorization`` header.
End to end, against servers on 127.0.0.1: a credentialed link is fetched with Basic
auth and the password shows nowhere; a 200,000-character URL and a malformed
status line quoted byte for byte by aiohttp give bounded, scrubbed log lines.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import re
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from types import MappingProxyType
from typing import Any

import aiohttp
import pytest
from conftest import SiteFactory, run_spider
from multidict import CIMultiDict, CIMultiDictProxy
from request_state import request_state
from yarl import URL

from crawler import InvalidRequest, Request, Response, Spider
from crawler.downloader.proxies import redact
from crawler.fingerprint import fingerprint
from crawler.loglines import MAX_LINE, SafeLogFilter, get_logger, scrub, short_url
from crawler.testing import html_page

SECRET = "s3cret"
BASIC = "Basic dXNlcjpzM2NyZXQ="  # base64("user:s3cret")
HUGE = 200_000


def framework_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    """Every formatted line of every record from a framework logger (``crawler.*``)."""
    formatter = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    lines: list[str] = []
    for record in caplog.records:
        if record.name == "crawler" or record.name.startswith("crawler."):
            lines.extend(formatter.format(record).splitlines())
    return lines


# -- short_url --------------------------------------------------------------------------------


def test_short_url_keeps_a_short_url_and_drops_userinfo_even_from_malformed_text() -> None:
    assert short_url("http://a.test/p?q=1") == "http://a.test/p?q=1"
    assert short_url("http://user:s3cret@a.test:8080/p") == "http://a.test:8080/p"
    assert short_url(URL("https://user@a.test/")) == "https://a.test/"
    malformed = "ht!tp://user:s3cret@[bad/" + "y" * 500
    assert short_url(malformed, limit=30) == "ht!tp://[bad/" + "y" * 16 + "…"


def test_short_url_cuts_with_an_ellipsis_keeping_scheme_host_and_path_start() -> None:
    url = "https://user:s3cret@www.example.test/catalogue/" + "x" * HUGE
    shown = short_url(url)
    assert len(shown) == 200
    assert shown.startswith("https://www.example.test/catalogue/xxx")
    assert shown.endswith("…")
    assert SECRET not in shown
    assert len(short_url(url, limit=50)) == 50


# -- scrub ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("fetching http://user:s3cret@a.test/p", "fetching http://***@a.test/p"),
        ("redis://:s3cret@cache:6379/0 down", "redis://***@cache:6379/0 down"),
        (
            "a password with an @: http://u:s3@cret@a.test/",
            "a password with an @: http://***@a.test/",
        ),
        ("Authorization: Basic dXNlcjpzM2NyZXQ=", "Authorization: ***"),
        ("proxy-authorization: Basic Zm9v\nHost: a.test", "proxy-authorization: ***\nHost: a.test"),
        ("{'Cookie': 'sid=s3cret', 'Accept': '*/*'}", "{'Cookie': '***', 'Accept': '*/*'}"),
        ('{"authorization": "Bearer s3\\"cret", "n": 1}', '{"authorization": "***", "n": 1}'),
        ("[('Set-Cookie', 'sid=s3cret; Path=/')]", "[('Set-Cookie', '***')]"),
        (
            "<CIMultiDict('Cookie': 'a=s3cret', 'X': 'y')>",
            "<CIMultiDict('Cookie': '***', 'X': 'y')>",
        ),
        (
            r"b'HTTP/1.1 200 OK\r\nSet-Cookie: sid=s3cret\r\nX: y'",
            r"b'HTTP/1.1 200 OK\r\nSet-Cookie: ***\r\nX: y'",
        ),
    ],
)
def test_scrub_hides_userinfo_and_credential_headers(text: str, expected: str) -> None:
    assert scrub(text) == expected
    assert scrub(expected) == expected  # scrubbing twice changes nothing


@pytest.mark.parametrize(
    "text",
    [
        "http://a.test:80/p?mail=a@b.test",
        "restored 3 cookies for a.test",
        "Cannot combine AUTHORIZATION header with AUTH argument",
    ],
)
def test_scrub_leaves_harmless_text_alone(text: str) -> None:
    assert scrub(text) == text


def test_proxy_redaction_is_the_same_scrub() -> None:
    assert redact("http://user:s3cret@proxy.test:3128") == "http://***@proxy.test:3128"
    assert redact(None) == ""


# -- the log filter ---------------------------------------------------------------------------


@pytest.fixture
def hostile_logger() -> Iterator[logging.Logger]:
    """A framework logger (``get_logger``) whose records reach caplog."""
    logger = get_logger("crawler.test_hostile")
    yield logger
    logger.filters.clear()


def test_a_huge_message_is_rendered_once_scrubbed_and_capped(
    hostile_logger: logging.Logger, caplog: pytest.LogCaptureFixture
) -> None:
    url = f"http://user:{SECRET}@a.test/" + "x" * HUGE
    with caplog.at_level(logging.DEBUG, logger="crawler"):
        hostile_logger.warning("[spider] failed %s: %s", url, "connection refused")
    [record] = caplog.records
    assert record.args == ()
    assert isinstance(record.msg, str) and record.getMessage() == record.msg
    assert len(record.msg) < MAX_LINE
    assert record.msg.startswith("[spider] failed http://***@a.test/xxx")
    assert record.msg.endswith("xxx: connection refused")  # what went wrong survives the cut
    full = f"[spider] failed http://***@a.test/{'x' * HUGE}: connection refused"
    marker = re.search(r"… \[(\d+) chars cut\] …", record.msg)
    assert marker is not None
    assert len(record.msg) - len(marker.group(0)) + int(marker.group(1)) == len(full)
    assert SECRET not in caplog.text
    assert all(len(line) <= MAX_LINE for line in framework_lines(caplog))


def test_bad_format_arguments_do_not_raise(
    hostile_logger: logging.Logger, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG, logger="crawler"):
        hostile_logger.info("%d pages from %s", "many", f"http://u:{SECRET}@a.test/")
    [record] = caplog.records
    assert "arguments that do not fit" in record.msg
    assert SECRET not in record.msg


def test_a_traceback_is_scrubbed_and_each_line_capped(
    hostile_logger: logging.Logger, caplog: pytest.LogCaptureFixture
) -> None:
    body = "".join(f"line {i}: {'w' * 5000}\n" for i in range(100))  # ~500 KB of message
    with caplog.at_level(logging.DEBUG, logger="crawler"):
        try:
            raise ValueError(
                f"cannot fetch http://user:{SECRET}@a.test/{'z' * HUGE}\n{body}"
                f"sent headers {{'Authorization': '{BASIC}', 'Cookie': 'sid={SECRET}'}}"
            )
        except ValueError:
            hostile_logger.exception("[spider] internal error on %s", "http://a.test/")
    [record] = caplog.records
    assert record.exc_text is not None
    assert SECRET not in caplog.text and BASIC not in caplog.text
    lines = framework_lines(caplog)
    assert all(len(line) <= MAX_LINE for line in lines)
    assert len("\n".join(lines)) < 40_000  # cut in the middle, keeping its start and end
    assert lines[1] == "Traceback (most recent call last):"
    assert "chars cut" in record.exc_text
    assert any(line.startswith("ValueError: cannot fetch http://***@a.test/zzz") for line in lines)
    assert "sent headers {'Authorization': '***', 'Cookie': '***'}" in lines[-1]


def test_the_cli_handler_filters_loggers_not_taken_from_get_logger(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from crawler.cli.logs import setup_logging

    root = logging.getLogger("crawler")
    saved = (root.handlers[:], root.level, root.propagate)
    try:
        setup_logging("INFO")
        logging.getLogger("crawler.user_code").info("%s", f"http://u:{SECRET}@a.test/" + "q" * HUGE)
    finally:
        for handler in root.handlers:
            handler.close()
        root.handlers[:], root.level, root.propagate = saved
    err = capsys.readouterr().err
    assert "http://***@a.test/qqq" in err
    assert SECRET not in err
    assert all(len(line) <= MAX_LINE for line in err.splitlines())


# -- Request: URL credentials become a Basic Authorization header ----------------------------


def test_url_credentials_move_into_a_basic_authorization_header() -> None:
    request = Request(f"http://user:{SECRET}@a.test/p?q=1")
    assert request.url == "http://a.test/p?q=1"
    assert request.yarl_url == URL("http://a.test/p?q=1")
    assert request.headers == {"Authorization": BASIC}
    assert fingerprint(request) == fingerprint(Request("http://a.test/p?q=1"))
    assert SECRET not in repr(request) and BASIC not in repr(request)


def test_url_credentials_are_percent_decoded_and_join_existing_headers() -> None:
    given = {"Accept": "text/html"}
    request = Request("http://us%20er:p%40ss@a.test/", headers=given)
    token = base64.b64encode(b"us er:p@ss").decode()
    assert request.headers == {"Accept": "text/html", "Authorization": f"Basic {token}"}
    assert given == {"Accept": "text/html"}  # the caller's mapping is not changed
    multi = Request(
        "http://u:p@a.test/", headers=CIMultiDict([("X-Tag", "1"), ("X-Tag", "2")])
    ).headers
    assert multi is not None and isinstance(multi, CIMultiDict)
    assert multi.getall("X-Tag") == ["1", "2"] and multi["authorization"].startswith("Basic ")


def test_an_explicit_authorization_header_wins_over_url_credentials() -> None:
    request = Request(f"http://user:{SECRET}@a.test/", headers={"authorization": "Bearer t"})
    assert request.url == "http://a.test/"
    assert request.headers == {"authorization": "Bearer t"}


def test_the_link_fast_path_takes_credentials_the_same_way() -> None:
    def parse(response: object) -> None:
        return None

    url = URL(f"http://user:{SECRET}@A.test:80/x?b=2")
    fast = Request._link(url, parse)
    slow = Request(url, callback=parse)
    assert request_state(fast) == request_state(slow)
    assert fast.url == "http://a.test/x?b=2"
    assert fast.headers == {"Authorization": BASIC}


def test_follow_all_strips_credentials_from_links() -> None:
    body = html_page("t", [f"http://user:{SECRET}@b.test/private", "/public"]).encode()
    headers = CIMultiDict({"Content-Type": "text/html"})
    page = Response(
        "http://a.test/", 200, CIMultiDictProxy(headers), body, Request("http://a.test/")
    )
    private, public = page.follow_all()
    assert (private.url, private.headers) == ("http://b.test/private", {"Authorization": BASIC})
    assert (public.url, public.headers) == ("http://a.test/public", None)
    assert page.follow(f"http://user:{SECRET}@b.test/x").headers == {"Authorization": BASIC}


def test_replace_keeps_url_credentials_on_their_origin_only() -> None:
    request = Request(f"http://user:{SECRET}@a.test/1", headers={"Accept": "*/*"})
    same = request.replace(url="http://a.test/2", priority=5)
    assert same.headers == {"Accept": "*/*", "Authorization": BASIC}
    assert request.replace(priority=1).headers == request.headers
    other = request.replace(url="http://b.test/1")
    assert other.headers == {"Accept": "*/*"}
    again = request.replace(url="http://other:pw@b.test/1")
    assert again.url == "http://b.test/1"
    assert again.headers == {"Accept": "*/*", "Authorization": "Basic b3RoZXI6cHc="}
    explicit = request.replace(url="http://b.test/1", headers={"Authorization": "Bearer t"})
    assert explicit.headers == {"Authorization": "Bearer t"}
    fresh = Request("http://a.test/").replace(url=f"http://user:{SECRET}@a.test/")
    assert (fresh.url, fresh.headers) == ("http://a.test/", {"Authorization": BASIC})


@pytest.mark.parametrize(
    ("url", "method"),
    [
        (f"ftp://user:{SECRET}@a.test/" + "f" * HUGE, "GET"),
        (f"http://user:{SECRET}@a.test:99999/" + "p" * HUGE, "GET"),
        (f"http://user:{SECRET}@a.test:0/", "GET"),
        (f"http://user:{SECRET}@/nohost", "GET"),
        (f"http://user:{SECRET}@a.test/" + "m" * HUGE, "BREW" * HUGE),
    ],
    ids=["scheme", "port-range", "port-0", "no-host", "method"],
)
def test_invalid_request_messages_are_bounded_and_secret_free(url: str, method: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        Request(url, method=method)
    message = str(caught.value)
    assert SECRET not in message
    assert len(message) < 600
    assert "a.test" in message or "nohost" in message


# -- end to end -------------------------------------------------------------------------------


class UrlSpider(Spider):
    """Yields each page's URL as an item and follows every link."""

    name = "hostile"
    # A default Authorization header once made aiohttp refuse a URL with userinfo.
    headers = MappingProxyType({"Authorization": "Bearer public-token"})

    def parse(self, response: Response) -> Iterator[Any]:
        yield {"url": response.url}
        yield from response.follow_all()


async def test_a_credentialed_link_is_fetched_with_basic_auth_and_the_password_stays_hidden(
    site: SiteFactory, caplog: pytest.LogCaptureFixture
) -> None:
    server = await site(
        {
            "127.0.0.1": {
                "/": html_page("home", [f"http://user:{SECRET}@127.0.0.1:{{port}}/private"]),
                "/private": html_page("private"),
            }
        }
    )
    spider = UrlSpider(start_urls=[server.url("127.0.0.1")])
    with caplog.at_level(logging.DEBUG):
        result, items = await run_spider(spider, server)
    seen = {r.path_qs: r.headers.get("Authorization") for r in server.requests}
    assert seen == {"/": "Bearer public-token", "/private": BASIC}
    assert "internal_errors" not in result.stats
    assert items == [{"url": server.url("127.0.0.1")}, {"url": server.url("127.0.0.1", "/private")}]
    for text in (caplog.text, str(result.stats), str(items)):
        assert SECRET not in text
        assert BASIC not in text


async def test_a_huge_url_gives_bounded_log_lines_that_still_name_the_host(
    site: SiteFactory, refused_port: int, caplog: pytest.LogCaptureFixture
) -> None:
    huge_path = "/" + "a" * HUGE
    server = await site({"127.0.0.1": {"/": html_page("home", [huge_path])}})
    unreachable = f"http://user:{SECRET}@127.0.0.1:{refused_port}/" + "b" * HUGE
    spider = UrlSpider(start_urls=[server.url("127.0.0.1"), unreachable])
    with caplog.at_level(logging.DEBUG):
        result, _items = await run_spider(spider, server, RETRY_TIMES=0)
    assert result.stats["failures/network"] == 1
    assert result.stats["pages"] == 2  # the home page, and the server's answer to the huge link
    lines = framework_lines(caplog)
    assert all(len(line) <= MAX_LINE for line in lines)
    # shortened at the source ("…") or cut by the log filter ("chars cut"): either way bounded
    cut = [line for line in lines if "chars cut" in line or "…" in line]
    assert any(f"127.0.0.1:{refused_port}/bbb" in line for line in cut)
    assert any(f"127.0.0.1:{server.port}/aaa" in line for line in cut)
    assert SECRET not in caplog.text


@asynccontextmanager
async def raw_server(answer: bytes) -> AsyncIterator[int]:
    """A TCP server on 127.0.0.1 that answers every request with ``answer``; yields its port."""

    async def reply(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(answer)
            await writer.drain()
        finally:
            writer.close()
            await writer.wait_closed()

    server = await asyncio.start_server(reply, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()


# A status line llhttp rejects: aiohttp quotes the whole line (~12,000 characters of
# repr'd bytes), the cookie at its end included.
BAD_STATUS_LINE = (
    b"HTTP/1.1 2\xff0 OK " + b"\xff" * 3000 + b" Set-Cookie: sid=" + SECRET.encode() + b"\r\n\r\n"
)


async def test_an_aiohttp_message_quoting_raw_bytes_is_capped_and_scrubbed(
    hostile_logger: logging.Logger, caplog: pytest.LogCaptureFixture
) -> None:
    async with raw_server(BAD_STATUS_LINE) as port, aiohttp.ClientSession() as session:
        url = f"http://127.0.0.1:{port}/"
        with pytest.raises(aiohttp.ClientResponseError) as caught:
            async with session.get(url):
                pass
    raw = caught.value.message
    assert len(raw) > MAX_LINE and SECRET in raw  # what the framework is handed
    with caplog.at_level(logging.DEBUG, logger="crawler"):
        hostile_logger.warning("[spider] invalid HTTP response from %s: %s", url, raw)
    [record] = caplog.records
    assert record.msg.startswith(f"[spider] invalid HTTP response from {url}: Bad status line")
    assert "chars cut" in record.msg
    assert "Set-Cookie: ***" in record.msg
    assert SECRET not in caplog.text
    assert all(len(line) <= MAX_LINE for line in framework_lines(caplog))


async def test_a_malformed_response_gives_a_bounded_secret_free_failure_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with raw_server(BAD_STATUS_LINE) as port:
        spider = UrlSpider(start_urls=[f"http://127.0.0.1:{port}/"])
        with caplog.at_level(logging.DEBUG):
            result, items = await run_spider(spider, None, RETRY_TIMES=0)
    assert items == []
    assert result.stats["failures/bad_response"] == 1
    lines = framework_lines(caplog)
    assert all(len(line) <= MAX_LINE for line in lines)
    [failure] = [line for line in lines if "invalid HTTP response" in line]
    assert f"http://127.0.0.1:{port}/" in failure
    assert SECRET not in caplog.text and SECRET not in str(result.stats)


def test_framework_loggers_carry_the_filter_once(hostile_logger: logging.Logger) -> None:
    again = get_logger("crawler.test_hostile")
    assert again is hostile_logger
    assert sum(isinstance(f, SafeLogFilter) for f in again.filters) == 1
    for name in ("crawler.engine", "crawler.frontier", "crawler.checkpoint", "crawler.pipeline"):
        assert any(isinstance(f, SafeLogFilter) for f in logging.getLogger(name).filters), name
    assert any(isinstance(f, SafeLogFilter) for f in UrlSpider().logger.filters)
