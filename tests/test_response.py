"""Response: decoding, JSON, CSS selection, link joining and following."""

from __future__ import annotations

import pytest
from multidict import CIMultiDict, CIMultiDictProxy
from request_state import request_state
from yarl import URL

from crawler import InvalidRequest, RedirectHop, Request, Response

PAGE_URL = "http://a.test/dir/page.html"


def headers(content_type: str | None = None, **extra: str) -> CIMultiDictProxy[str]:
    values: CIMultiDict[str] = CIMultiDict(extra)
    if content_type is not None:
        values["Content-Type"] = content_type
    return CIMultiDictProxy(values)


def make(
    body: bytes,
    content_type: str | None = "text/html",
    url: str = PAGE_URL,
    history: tuple[RedirectHop, ...] = (),
) -> Response:
    return Response(url, 200, headers(content_type), body, Request(url), history=history)


# -- text decoding ----------------------------------------------------------------------------


def test_http_charset_decides_the_encoding() -> None:
    body = "<p>héllo wörld</p>".encode("latin-1")
    response = make(body, "text/html; charset=ISO-8859-1")
    assert response.text == "<p>héllo wörld</p>"
    assert response.encoding == "cp1252"  # the WHATWG label for latin-1


def test_http_charset_beats_meta_charset() -> None:
    body = '<meta charset="utf-8"><p>привет</p>'.encode("cp1251")
    assert "привет" in make(body, "text/html; charset=windows-1251").text


def test_utf8_bom_is_used_and_stripped() -> None:
    response = make(b"\xef\xbb\xbf<p>caf\xc3\xa9</p>", "text/html")
    assert response.text == "<p>café</p>"
    assert response.encoding == "utf-8"


def test_utf16_bom_without_any_header() -> None:
    body = "\ufeff<p>hi ☃</p>".encode("utf-16-le")
    response = make(body, None)
    assert response.text == "<p>hi ☃</p>"
    assert response.encoding.startswith("utf-16")


@pytest.mark.parametrize(
    "meta",
    [
        '<meta charset="windows-1251">',
        "<meta charset=windows-1251>",
        '<meta http-equiv="Content-Type" content="text/html; charset=windows-1251">',
    ],
)
def test_meta_charset_is_sniffed_when_http_says_nothing(meta: str) -> None:
    body = f"<html><head>{meta}</head><body>привет</body></html>".encode("cp1251")
    response = make(body, "text/html")
    assert "привет" in response.text
    assert response.encoding == "cp1251"


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b"\xff\xfe garbage", "text/html; charset=utf-8"),
        (b"caf\xe9 \xff\xfe\xfd", "text/html; charset=utf-8"),
        (b"caf\xe9", "text/html; charset=no-such-charset"),
        (b"\x00\x01\xff", "text/html; charset=utf-16"),
        (b"\x80\x81\x82<p>x", None),
        (b"", None),
    ],
)
def test_undecodable_bytes_never_raise(body: bytes, content_type: str | None) -> None:
    response = make(body, content_type)
    assert isinstance(response.text, str)
    assert isinstance(response.encoding, str)
    response.css("p")  # parsing the decoded text does not raise either


def test_invalid_utf8_is_replaced_not_dropped() -> None:
    response = make(b"<p>caf\xe9 ok</p>", "text/html; charset=utf-8")
    assert response.text == "<p>caf\ufffd ok</p>"


def test_text_is_decoded_once() -> None:
    response = make(b"<p>x</p>", "text/html; charset=utf-8")
    assert response.text is response.text
    assert response.encoding == "utf-8"


# -- JSON and CSS -----------------------------------------------------------------------------


def test_json_body() -> None:
    response = make(b'{"a": [1, 2.5, null], "b": "\xc3\xa9"}', "application/json")
    assert response.json() == {"a": [1, 2.5, None], "b": "é"}


def test_json_with_a_bom_or_a_declared_charset() -> None:
    assert make(b'\xef\xbb\xbf{"a": 1}', "application/json").json() == {"a": 1}
    latin1 = '{"name": "café"}'.encode("latin-1")
    assert make(latin1, "application/json; charset=iso-8859-1").json() == {"name": "café"}


def test_json_error_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        make(b"<html>not json</html>").json()


def test_css_and_css_first() -> None:
    response = make(
        b"<ul><li class=x>one</li><li class=x>two</li><li>three</li></ul><title> T </title>"
    )
    assert [node.text() for node in response.css("li.x")] == ["one", "two"]
    assert response.css_first("title").text(strip=True) == "T"
    assert response.css_first("table") is None
    assert response.css_first("table", default="nothing") == "nothing"
    assert response.css("table") == []


def test_broken_html_still_parses() -> None:
    body = b"<html><body><div><p>one<p>two<b>bold<a href='/next'>next</div></table><<>>"
    response = make(body)
    assert [p.text(deep=False) for p in response.css("p")] == ["one", "two"]
    # the HTML5 tree builder may clone the unclosed <a> (as browsers do): one URL either way
    assert {r.url for r in response.follow_all()} == {"http://a.test/next"}


def test_selector_is_parsed_once() -> None:
    response = make(b"<p>x</p>")
    assert response.selector is response.selector


def test_meta_is_the_requests_meta() -> None:
    request = Request(PAGE_URL, meta={"k": 1})
    response = Response(PAGE_URL, 200, headers(), b"", request)
    assert response.meta is request.meta
    assert repr(response) == f"<Response 200 {PAGE_URL}>"


# -- links ------------------------------------------------------------------------------------


def test_urljoin_is_relative_to_the_page() -> None:
    response = make(b"<p>no base</p>")
    assert response.urljoin("other.html") == "http://a.test/dir/other.html"
    assert response.urljoin("../up") == "http://a.test/up"
    assert response.urljoin("/root?q=1") == "http://a.test/root?q=1"
    assert response.urljoin("//b.test/x") == "http://b.test/x"
    assert response.urljoin("  spaced  ") == "http://a.test/dir/spaced"


@pytest.mark.parametrize(
    ("base", "expected"),
    [
        ('<base href="http://b.test/base/">', "http://b.test/base/x"),
        ('<base href="/other/">', "http://a.test/other/x"),
        ('<BASE HREF="/upper/">', "http://a.test/upper/x"),
        ('<base target="_blank"><base href="/second/">', "http://a.test/second/x"),
        ('<base href="http://[::1">', "http://a.test/dir/x"),  # malformed base: ignored
    ],
)
def test_urljoin_honours_base_href(base: str, expected: str) -> None:
    response = make(f"<html><head>{base}</head><body><a href='x'>x</a></body></html>".encode())
    assert response.urljoin("x") == expected
    assert response.follow("x").url == expected
    assert [r.url for r in response.follow_all()] == [expected]


def test_base_href_after_a_long_head() -> None:
    head = "<script>" + "var x = 1;\n" * 1000 + "</script>"
    body = f'<html><head>{head}<base href="/far/"></head><body><a href="x">x</a></body></html>'
    assert make(body.encode()).urljoin("x") == "http://a.test/far/x"


def test_base_text_in_the_body_is_not_a_base_element() -> None:
    body = b"<html><head></head><body><p>use &lt;base href&gt;</p><basefont><a href='x'>x</a>"
    assert make(body).urljoin("x") == "http://a.test/dir/x"


def test_follow_a_string_and_a_node() -> None:
    response = make(b'<a id=one href="one.html">1</a><a id=none>no href</a>')
    by_string = response.follow("two.html", priority=3, meta={"k": 1}, dont_filter=True)
    assert (by_string.url, by_string.priority, by_string.meta, by_string.dont_filter) == (
        "http://a.test/dir/two.html",
        3,
        {"k": 1},
        True,
    )
    by_node = response.follow(response.css_first("#one"))
    assert by_node.url == "http://a.test/dir/one.html"
    with pytest.raises(InvalidRequest, match=r"no href attribute on http://a.test/dir/page.html"):
        response.follow(response.css_first("#none"))


@pytest.mark.parametrize(
    "href", ["http://[::1", "http://a:99999/", "mailto:x@a.test", "http://a.test:0/"]
)
def test_follow_refuses_uncrawlable_links(href: str) -> None:
    with pytest.raises(InvalidRequest, match=href.replace("[", r"\[")):
        make(b"").follow(href)
    with pytest.raises(InvalidRequest, match=href.replace("[", r"\[")):
        make(b"").follow(href, callback=print)


def test_follow_of_a_plain_link_builds_the_same_request_as_the_constructor() -> None:
    """follow(href, callback=...) takes the Request._link fast path: nothing differs."""

    from yarl import URL

    def parse(response: object) -> None:
        return None

    response = make(b"")
    hrefs = [" ../x/./y.html?b=2&a=1#frag ", "//B.test:80/z", "http://u:p@a.test/q"]
    hrefs += ["https://C.test:443/a/../b#x", " http://d.test ", "HTTP://e.test/%7e?q= 1"]
    for href in hrefs:
        for kwargs in (
            {},
            {"callback": parse},
            {"callback": None},
            {"meta": {"a": 1}},
            {"callback": parse, "errback": parse, "meta": {"b": 2}, "priority": 3},
            {"dont_filter": True, "priority": -1},
            {"meta": None},  # not a dict, a bool priority: Request() takes them as they are
            {"priority": True},
        ):
            fast = response.follow(href, **kwargs)
            slow = Request(response.base_url.join(URL(href.strip())), **kwargs)  # type: ignore[arg-type]
            assert request_state(fast) == request_state(slow), (href, kwargs)
    with pytest.raises(InvalidRequest, match="not callable"):
        response.follow("a.html", callback="parse")


def test_follow_all_skips_what_cannot_be_crawled() -> None:
    body = b"""
    <a href="a.html">a</a>
    <a href="mailto:me@a.test">mail</a>
    <a href="javascript:void(0)">js</a>
    <a href="JavaScript:alert(1)">js upper</a>
    <a href="tel:+123">tel</a>
    <a href="data:text/plain,hi">data</a>
    <a href="ftp://a.test/f">ftp</a>
    <a href="http://[::1">bad ipv6</a>
    <a href="http://a:99999/">bad port</a>
    <a href="#top">fragment only</a>
    <a href="">empty</a>
    <a>no href</a>
    <a href="  /spaced  ">spaced</a>
    <a href="//b.test/proto">protocol relative</a>
    <a href="https://c.test/abs#frag">absolute</a>
    <a href="?q=1">query</a>
    """
    got = [r.url for r in make(body).follow_all()]
    assert got == [
        "http://a.test/dir/a.html",
        "http://a.test/spaced",
        "http://b.test/proto",
        "https://c.test/abs#frag",
        "http://a.test/dir/page.html?q=1",
    ]


def test_follow_all_with_css_nodes_and_kwargs() -> None:
    body = b'<nav><a href="/n1">1</a><a href="/n2">2</a></nav><a href="/other">o</a>'
    response = make(body)

    def callback(response: Response) -> None:
        return None

    from_css = response.follow_all(css="nav a", callback=callback, priority=7)
    assert [(r.url, r.callback, r.priority) for r in from_css] == [
        ("http://a.test/n1", callback, 7),
        ("http://a.test/n2", callback, 7),
    ]
    nodes = response.css("a")
    assert [r.url for r in response.follow_all(nodes[1:])] == [
        "http://a.test/n2",
        "http://a.test/other",
    ]
    assert [r.url for r in response.follow_all(["x", "mailto:y", "/z"])] == [
        "http://a.test/dir/x",
        "http://a.test/z",
    ]


def test_follow_all_with_link_arguments_builds_what_the_constructor_builds() -> None:
    def parse(response: object) -> None:
        return None

    response = make(b"")
    hrefs = ["x.html", "../y?b=1#f", "/z", "http://b.test/w", "//c.test/v", "p%20q"]
    for kwargs in (
        {"callback": parse, "errback": parse, "meta": {"k": 1}, "priority": 2},
        {"dont_filter": True},
        {"meta": None},
    ):
        expected = [Request(response.base_url.join(URL(h)), **kwargs) for h in hrefs]  # type: ignore[arg-type]
        got = response.follow_all(hrefs, **kwargs)
        assert [request_state(r) for r in got] == [request_state(r) for r in expected], kwargs


def test_redirect_urls_lists_every_hop() -> None:
    hops = (
        RedirectHop("http://a.test/old", 301, headers(Location="/mid")),
        RedirectHop("http://a.test/mid", 302, headers(Location="http://b.test/new")),
    )
    response = Response(
        "http://b.test/new", 200, headers(), b"", Request("http://a.test/old"), history=hops
    )
    assert response.redirect_urls == [
        "http://a.test/old",
        "http://a.test/mid",
        "http://b.test/new",
    ]
    assert make(b"").redirect_urls == [PAGE_URL]
    # links on a redirected page resolve against the final URL
    assert response.urljoin("x") == "http://b.test/x"


def test_join_link_matches_yarl_join_on_random_links() -> None:
    """The absolute-link shortcut of crawler/follow.py resolves exactly as ``base.join``."""
    import random

    from yarl import URL

    from crawler.follow import join_link

    base = URL("http://host1.test:8080/s3/p17.html?q=1#f")
    chars = "ab/.:?#%&=éü ~;@[]-_+!$'()*,09AZ"
    hosts = ["a.test", "B.Test:80", "x.y:443", "[::1]", "bücher.de", "a.test:", "a.test:99999", ""]
    rng = random.Random(7)

    def resolved(how: object) -> object:
        try:
            url = how()  # type: ignore[operator]
            return (str(url), url.raw_host, url.scheme, url, url.port)
        except Exception as exc:  # yarl raises ValueError, sometimes IndexError
            return type(exc)

    for _ in range(3000):
        tail = "".join(rng.choice(chars) for _ in range(rng.randint(0, 12)))
        for prefix in ("http://", "https://", "http://u:p@", "HTTP://", "//", "/", "../", ""):
            href = prefix + rng.choice(hosts) + tail
            fast = resolved(lambda href=href: join_link(base, href))
            assert fast == resolved(lambda href=href: base.join(URL(href))), href
