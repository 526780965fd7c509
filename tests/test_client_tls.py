"""TLS against an HTTPS server whose certificate a trustme test CA issued."""

from __future__ import annotations

import logging
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from peers import TlsFiles, TlsSiteServer, blocking_tls_server, crawl, tls_files

from crawler import Request, Response, SettingsError, Spider
from crawler.errors import FetchError, TlsError

PAGES = {"/": "<p>secret</p>", "/2": "<p>two</p>"}


@pytest.fixture
def tls(tmp_path: Path) -> TlsFiles:
    return tls_files(tmp_path)


@pytest.fixture
async def https(tls: TlsFiles) -> AsyncIterator[TlsSiteServer]:
    pages = {"secure.test": PAGES, "other.test": PAGES, "127.0.0.1": PAGES}
    async with TlsSiteServer(pages, ssl_context=tls.server_context()) as server:
        yield server


@pytest.fixture
async def mutual_tls(tls: TlsFiles) -> AsyncIterator[TlsSiteServer]:
    """An HTTPS server that requires a client certificate issued by the test CA."""
    context = tls.server_context(require_client_cert=True)
    async with TlsSiteServer({"secure.test": PAGES}, ssl_context=context) as server:
        yield server


class Fetch(Spider):
    name = "tls"

    def __init__(self, requests: list[Request], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.requests = requests
        self.responses: list[Response] = []
        self.failures: list[Exception] = []

    async def start(self) -> AsyncIterator[Request]:
        for request in self.requests:
            request.callback = self.parse
            request.errback = self.failures.append
            yield request

    def parse(self, response: Response) -> None:
        self.responses.append(response)


def ok_hosts(spider: Fetch) -> list[str]:
    return sorted(f"{r.request.host}{r.request.yarl_url.path}" for r in spider.responses)


def failed_hosts(spider: Fetch) -> list[str]:
    return sorted(Request(f.url).host for f in spider.failures)  # type: ignore[attr-defined]


async def test_default_verification_rejects_an_unknown_ca(https: TlsSiteServer) -> None:
    url = https.url("secure.test")
    spider = Fetch([Request(url)])
    run = await crawl(spider, RESOLVE=https.resolve_map())
    assert spider.responses == []
    [failure] = spider.failures
    assert isinstance(failure, TlsError)
    assert url in str(failure)
    assert "certificate" in str(failure).lower()
    assert run.stats["failures/tls"] == 1


async def test_ssl_ca_bundle_trusts_the_test_ca(https: TlsSiteServer, tls: TlsFiles) -> None:
    spider = Fetch([Request(https.url("secure.test")), Request(https.url("127.0.0.1", "/2"))])
    run = await crawl(spider, RESOLVE=https.resolve_map(), SSL_CA_BUNDLE=tls.ca_pem)
    assert spider.failures == []
    assert ok_hosts(spider) == ["127.0.0.1/2", "secure.test/"]
    assert run.stats["pages"] == 2


def test_a_missing_ca_bundle_fails_before_the_crawl(tmp_path: Path) -> None:
    from crawler.downloader import Downloader, DownloaderOptions
    from crawler.settings import Settings

    missing = str(tmp_path / "nope.pem")
    options = DownloaderOptions.from_settings(Settings.build(("t", {"SSL_CA_BUNDLE": missing})))
    with pytest.raises(SettingsError, match=r"SSL_CA_BUNDLE=.*nope\.pem.*no such file"):
        Downloader(options)


async def test_ssl_verify_false_works_and_warns_once_per_domain(
    https: TlsSiteServer, caplog: pytest.LogCaptureFixture
) -> None:
    spider = Fetch(
        [
            Request(https.url("secure.test")),
            Request(https.url("secure.test", "/2")),
            Request(https.url("other.test")),
        ]
    )
    with caplog.at_level(logging.WARNING, logger="crawler"):
        run = await crawl(spider, RESOLVE=https.resolve_map(), SSL_VERIFY=False)
    assert spider.failures == []
    assert run.stats["pages"] == 3
    warnings = [r.getMessage() for r in caplog.records if "verification is OFF" in r.getMessage()]
    assert sorted(warnings) == [
        "TLS certificate verification is OFF for other.test",
        "TLS certificate verification is OFF for secure.test",
    ]


async def test_request_ssl_false_is_per_request(https: TlsSiteServer) -> None:
    spider = Fetch([Request(https.url("secure.test"), ssl=False), Request(https.url("other.test"))])
    run = await crawl(spider, RESOLVE=https.resolve_map())
    assert ok_hosts(spider) == ["secure.test/"]
    assert failed_hosts(spider) == ["other.test"]
    assert run.stats["failures/tls"] == 1


async def test_domain_ssl_trusts_a_ca_for_one_domain(https: TlsSiteServer, tls: TlsFiles) -> None:
    spider = Fetch([Request(https.url("secure.test")), Request(https.url("other.test"))])
    run = await crawl(spider, RESOLVE=https.resolve_map(), DOMAIN_SSL={"secure.test": tls.ca_pem})
    assert ok_hosts(spider) == ["secure.test/"]
    assert failed_hosts(spider) == ["other.test"]
    assert run.stats["failures/tls"] == 1


async def test_domain_ssl_false_turns_verification_off_for_one_domain(
    https: TlsSiteServer, caplog: pytest.LogCaptureFixture
) -> None:
    spider = Fetch([Request(https.url("secure.test")), Request(https.url("other.test"))])
    with caplog.at_level(logging.WARNING, logger="crawler"):
        await crawl(spider, RESOLVE=https.resolve_map(), DOMAIN_SSL={"other.test": "false"})
    assert ok_hosts(spider) == ["other.test/"]
    assert failed_hosts(spider) == ["secure.test"]
    assert "TLS certificate verification is OFF for other.test" in caplog.text


async def test_request_ssl_context(https: TlsSiteServer, tls: TlsFiles) -> None:
    spider = Fetch([Request(https.url("secure.test"), ssl=tls.client_context())])
    await crawl(spider, RESOLVE=https.resolve_map())
    assert ok_hosts(spider) == ["secure.test/"]


@pytest.mark.parametrize("separate_key", [False, True], ids=["cert+key", "cert,key"])
async def test_client_certificate_is_presented(
    mutual_tls: TlsSiteServer, tls: TlsFiles, separate_key: bool
) -> None:
    files = (
        {"SSL_CLIENT_CERT": tls.client_cert_pem, "SSL_CLIENT_KEY": tls.client_key_pem}
        if separate_key
        else {"SSL_CLIENT_CERT": tls.client_pem}
    )
    spider = Fetch([Request(mutual_tls.url("secure.test"))])
    await crawl(spider, RESOLVE=mutual_tls.resolve_map(), SSL_CA_BUNDLE=tls.ca_pem, **files)
    assert spider.failures == []
    assert ok_hosts(spider) == ["secure.test/"]


async def test_without_a_client_certificate_the_crawl_fails_cleanly(
    mutual_tls: TlsSiteServer, tls: TlsFiles
) -> None:
    url = mutual_tls.url("secure.test")
    spider = Fetch([Request(url)])
    run = await crawl(spider, RESOLVE=mutual_tls.resolve_map(), SSL_CA_BUNDLE=tls.ca_pem)
    assert spider.responses == []
    [failure] = spider.failures
    # Under TLS 1.3 the client finishes its handshake before the server checks the
    # certificate, and an asyncio server drops the connection without sending its alert:
    # the client can only see a disconnect.
    assert isinstance(failure, FetchError)
    assert url in str(failure)
    assert run.stats["failures/" + failure.kind] == 1
    assert run.stats.get("pages", 0) == 0


@pytest.mark.parametrize("with_cert", [True, False])
async def test_a_rejected_client_certificate_is_a_tls_error(tls: TlsFiles, with_cert: bool) -> None:
    context = tls.server_context(require_client_cert=True)
    context.maximum_version = ssl.TLSVersion.TLSv1_2  # the check happens in the handshake
    async with blocking_tls_server(context) as server:
        url = f"https://secure.test:{server.server_port}/"
        spider = Fetch([Request(url)])
        files = {"SSL_CLIENT_CERT": tls.client_pem} if with_cert else {}
        run = await crawl(
            spider, RESOLVE={"secure.test": "127.0.0.1"}, SSL_CA_BUNDLE=tls.ca_pem, **files
        )
    # Read after the server thread has stopped: it records the error after the alert
    # it sent may already have failed the request.
    errors = list(server.handshake_errors)
    if with_cert:
        assert [r.text for r in spider.responses] == ["<p>hello over mutual TLS</p>"]
        assert errors == []
        return
    [failure] = spider.failures
    assert isinstance(failure, TlsError)
    assert url in str(failure)
    assert run.stats["failures/tls"] == 1
    assert any("did not return a certificate" in e for e in errors)
