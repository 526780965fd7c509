"""crawler/linkjoin.py: plain links resolved as strings, exactly as yarl resolves them."""

from __future__ import annotations

import random

import pytest
from request_state import request_state
from yarl import URL

from crawler import InvalidRequest, Request
from crawler.linkjoin import LinkBase, plain_absolute

BASES = [
    "http://host1.test:8080/s3/p17.html",
    "http://host1.test:8080/s3/p17.html?q=1#f",
    "https://a.test/",
    "https://a.test/dir/sub/",
    "http://a.test/a//b/c.html?x=%41",
    "http://a.test",
    "http://xn--bcher-kva.test/x/y",
    "http://a.test/%7Euser/page",
    "http://a.test/a%20b/c",
    "http://[::1]:8080/x/y",
]
# Characters a plain link may hold, and some it may not (each must fall back to yarl).
CHARS = "ab/.:?#&=~;@-_+!$'()*,09AZ" + "%é [].\t"
HOSTS = [
    "a.test",
    "a.test:8080",
    "B.test",
    "a.test:80",
    "a.test:443",
    "x.y:0443",
    "a.test:99999",
    "a.test:0",
    "1.2.3.4",
    "xn--bcher-kva.test",
    "a..b",
    ".a",
    "a.",
    "a_b-c.test",
    "[::1]",
    "u:p@a.test",
    "",
]
PREFIXES = ["http://", "https://", "HTTP://", "//", "/", "../", "../../", "./", "", "?", "#"]


def _yarl(base: URL, href: str) -> tuple[str, str, str] | type[Exception]:
    try:
        url = base.join(URL(href))
        return str(url), url.host or "", url.raw_path
    except Exception as exc:  # what yarl refuses, the string path must not accept
        return type(exc)


def _check(base_text: str, href: str) -> bool:
    """True when ``href`` took the string path (and matched yarl)."""
    base = URL(base_text)
    plain = LinkBase(base).resolve(href)
    if plain is None:
        return False
    url, host, path = plain
    expected = _yarl(base, href)
    assert not isinstance(expected, type), (base_text, href, expected)
    assert (url, host) == expected[:2], (base_text, href)
    assert path == URL(url).raw_path, (base_text, href)
    # The Request parses its URL lazily from the string, as already encoded: the same URL.
    lazy, parsed = URL(url, encoded=True), URL(url)
    assert lazy == parsed and lazy.host == parsed.host and lazy.port == parsed.port
    assert (lazy.raw_path, lazy.raw_query_string) == (parsed.raw_path, parsed.raw_query_string)
    return True


def test_random_links_resolve_as_yarl_joins_them() -> None:
    rng = random.Random(11)
    taken = 0
    tried = 0
    for _ in range(6000):
        tail = "".join(rng.choice(CHARS) for _ in range(rng.randint(0, 14)))
        for prefix in PREFIXES:
            host = rng.choice(HOSTS) if prefix.endswith("//") else ""
            for base in BASES:
                tried += 1
                taken += _check(base, prefix + host + tail)
    assert taken > tried // 10  # the string path is taken often, not in a rare corner


@pytest.mark.parametrize(
    "href",
    [
        "p7.html",
        "../s9/p2.html",
        "../../../../x",
        "./p.html",
        "/s1/p.html",
        "/a/./b/../c/.",
        "/a/b/..",
        "?page=2",
        "?page=2#top",
        "#top",
        "p.html?a=1&&b=2#x?y",
        "http://b.test/x",
        "https://b.test:8443/a/../b?c=d#e",
        "http://b.test/",
        "http://b.test:65535/x",
        "a/b:c",
    ],
)
@pytest.mark.parametrize("base", BASES[:5])
def test_common_links_take_the_string_path(base: str, href: str) -> None:
    assert _check(base, href)


@pytest.mark.parametrize(
    "href",
    [
        "",
        "mailto:a@b.test",
        "javascript:void(0)",
        "a:b",
        "//b.test/x",
        "http://B.test/x",
        "http://b.test:80/x",
        "https://b.test:443/x",
        "http://b.test:65536/x",
        "http://b.test",
        "http://u:p@b.test/x",
        "http://xn--bcher-kva.test/x",
        "p%20q.html",
        "p q.html",
        "?",
        "p.html#",
        "tel:123",
    ],
)
def test_links_that_are_not_plain_fall_back_to_yarl(href: str) -> None:
    assert LinkBase(URL("http://a.test/d/p.html")).resolve(href) is None


def test_a_base_that_is_not_plain_resolves_nothing() -> None:
    for base in ("http://xn--bcher-kva.test/x/y", "http://a.test/a%20b/page", "http://[::1]/"):
        assert LinkBase(URL(base)).resolve("p.html") is None


def test_a_request_of_a_plain_url_string_is_the_request_of_its_parsed_url() -> None:
    """``Request(str)`` keeps a plain URL's string and parses it when asked: the same request."""
    rng = random.Random(5)
    taken = 0
    for _ in range(3000):
        tail = "".join(rng.choice(CHARS) for _ in range(rng.randint(0, 14)))
        text = rng.choice(("http://", "https://")) + rng.choice(HOSTS) + "/" + tail
        try:
            expected = request_state(Request(URL(text.strip())))  # a str is stripped
        except (InvalidRequest, ValueError):
            with pytest.raises(InvalidRequest):
                Request(text)
            continue
        taken += plain_absolute(text) is not None
        assert request_state(Request(text)) == expected, text
    assert taken > 200  # the string path was taken, not only the parse
