"""Request validation at the edge, and request fingerprints (the de-duplication identity)."""

from __future__ import annotations

from typing import Any

import pytest
from request_state import request_state

from crawler import InvalidRequest, Request
from crawler.errors import CrawlerError
from crawler.fingerprint import canonical_url, fingerprint, url_fingerprint

# -- validation -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("ftp://a.test/file", "scheme must be http or https"),
        ("mailto:someone@a.test", "scheme must be http or https"),
        ("javascript:void(0)", "scheme must be http or https"),
        ("/relative/path", "response.follow()"),
        ("", "scheme must be http or https"),
        ("http:///no-host", "no host"),
        ("http://a.test:99999/", "out of range"),
        ("http://a.test:-1/", "out of range"),
        ("http://a.test:0/", "port 0"),
        ("http://a.test:port/", "port"),
        ("http://[::1", "IPv6"),
    ],
)
def test_bad_urls_are_refused_with_the_url_in_the_message(url: str, reason: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        Request(url)
    message = str(info.value)
    assert repr(url) in message
    assert reason in message


def test_url_must_be_a_string() -> None:
    with pytest.raises(InvalidRequest, match=r"must be a str, got int: 123"):
        Request(123)  # type: ignore[arg-type]


def test_invalid_request_is_a_crawler_error_and_a_value_error() -> None:
    with pytest.raises(CrawlerError):
        Request("gopher://a.test/")
    with pytest.raises(ValueError):
        Request("gopher://a.test/")


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        ({"data": b"x", "json": {"a": 1}}, r"both data= and json="),
        ({"method": "FETCH"}, r"unsupported HTTP method 'FETCH'"),
        ({"method": "G ET"}, r"unsupported HTTP method"),
        ({"method": None}, r"unsupported HTTP method None"),
        ({"callback": "parse"}, r"callback .* is not callable"),
        ({"errback": 42}, r"errback .* is not callable"),
    ],
)
def test_bad_arguments_are_refused_with_the_url(kwargs: dict[str, Any], pattern: str) -> None:
    with pytest.raises(InvalidRequest, match=pattern) as info:
        Request("http://a.test/page", **kwargs)
    assert "http://a.test/page" in str(info.value)


def test_valid_request_is_normalised_once() -> None:
    request = Request("  HTTP://Sub.A.Test:8080/p?q=1  ", method="post", data=b"x")
    assert request.url == "http://sub.a.test:8080/p?q=1"
    assert request.host == "sub.a.test"
    assert request.method == "POST"
    assert request.yarl_url.port == 8080
    assert request.depth == 0
    assert request.meta == {}


def test_meta_is_not_shared_between_requests() -> None:
    one, two = Request("http://a.test/1"), Request("http://a.test/2")
    one.meta["k"] = 1
    assert two.meta == {}


def test_replace_copies_and_revalidates() -> None:
    def callback(response: Any) -> None:
        return None

    original = Request("http://a.test/1", callback=callback, meta={"k": 1}, priority=3)
    copy = original.replace(url="http://b.test/2")
    assert (copy.url, copy.host, copy.callback, copy.priority) == (
        "http://b.test/2",
        "b.test",
        callback,
        3,
    )
    copy.meta["k"] = 2
    assert original.meta == {"k": 1}
    with pytest.raises(InvalidRequest, match=r"ftp://b\.test/"):
        original.replace(url="ftp://b.test/")


# -- fingerprints -----------------------------------------------------------------------------


def fp(url: str, **kwargs: Any) -> bytes:
    return fingerprint(Request(url, **kwargs))


@pytest.mark.parametrize(
    "variant",
    [
        "http://a.test/page?a=1&b=2",
        "http://a.test/page?b=2&a=1",  # query order
        "http://a.test/page?a=1&b=2#top",  # fragment
        "http://a.test/page?a=1&b=2#",  # empty fragment
        "http://A.TEST/page?a=1&b=2",  # host case
        "HTTP://a.test/page?a=1&b=2",  # scheme case
        "http://a.test:80/page?a=1&b=2",  # default port
        "http://a.test/page?a=1&&b=2&",  # empty query parts
        "http://a.test/./page?b=2&a=1",  # dot segment
    ],
)
def test_get_variants_of_one_url_share_a_fingerprint(variant: str) -> None:
    assert fp(variant) == fp("http://a.test/page?a=1&b=2")


@pytest.mark.parametrize(
    ("one", "other"),
    [
        ("http://a.test", "http://a.test/"),
        ("https://a.test:443/x", "https://a.test/x"),
        ("http://a.test/?", "http://a.test/"),
        ("http://a.test#frag", "http://a.test/"),
    ],
)
def test_equivalent_root_and_port_forms(one: str, other: str) -> None:
    assert fp(one) == fp(other)


@pytest.mark.parametrize(
    "other",
    [
        "https://a.test/page?a=1&b=2",  # scheme
        "http://a.test:8080/page?a=1&b=2",  # non-default port
        "http://b.test/page?a=1&b=2",  # host
        "http://a.test/Page?a=1&b=2",  # path case matters
        "http://a.test/page/?a=1&b=2",  # trailing slash is another resource
        "http://a.test/page?a=1&b=3",  # query value
        "http://a.test/page?a=1",  # missing parameter
    ],
)
def test_different_urls_have_different_fingerprints(other: str) -> None:
    assert fp(other) != fp("http://a.test/page?a=1&b=2")


def test_get_uses_the_url_fingerprint_and_head_does_not_block_get() -> None:
    url = "http://a.test/x"
    request = Request(url)
    assert fingerprint(request) == url_fingerprint(request.yarl_url)
    assert fp(url, method="HEAD") != fp(url)


def test_post_body_and_method_count() -> None:
    url = "http://a.test/search"
    assert fp(url, method="POST", data=b"q=1") == fp(url, method="POST", data=b"q=1")
    assert fp(url, method="POST", data=b"q=1") != fp(url, method="POST", data=b"q=2")
    assert fp(url, method="POST", data=b"q=1") != fp(url)
    assert fp(url, method="POST", data=b"q=1") != fp(url, method="PUT", data=b"q=1")
    assert fp(url, method="POST") != fp(url)  # a POST never collides with the GET
    assert fp(url, method="POST", data="q=1") == fp(url, method="POST", data=b"q=1")
    # JSON bodies compare by value: key order does not matter.
    assert fp(url, method="POST", json={"a": 1, "b": [1, 2]}) == fp(
        url, method="POST", json={"b": [1, 2], "a": 1}
    )
    assert fp(url, method="POST", json={"a": 1}) != fp(url, method="POST", json={"a": 2})
    assert fp(url, method="POST", data={"a": "1", "b": "2"}) == fp(
        url, method="POST", data={"b": "2", "a": "1"}
    )


def test_a_get_with_a_body_is_not_the_plain_get() -> None:
    url = "http://a.test/api"
    assert fp(url, json={"q": 1}) != fp(url)
    assert fp(url, json={"q": 1}) != fp(url, json={"q": 2})


def test_fingerprint_is_16_bytes_and_canonical_url_is_readable() -> None:
    request = Request("http://A.test:80/p?b=2&a=1#x")
    assert len(fingerprint(request)) == 16
    assert canonical_url(request.yarl_url) == "http://a.test/p?a=1&b=2"


def test_link_fast_path_builds_the_same_request_as_the_constructor() -> None:
    from yarl import URL

    def parse(response: object) -> None:
        return None

    url = URL("http://A.test:80/x/../y?b=2&a=1#frag")
    fast = Request._link(url, parse)
    slow = Request(url, callback=parse)
    assert request_state(fast) == request_state(slow)
    assert fingerprint(fast) == fingerprint(slow)
