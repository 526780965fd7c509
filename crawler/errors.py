"""The one exception tree of the framework.

Every class name says how the engine reacts to it::

    CrawlerError                      root: catch this to catch everything we raise
    ├── ConfigError                   fatal before the crawl starts (exit code 2)
    │   ├── SettingsError             unknown setting name or bad value
    │   └── SpiderLoadError           a TARGET that cannot be found or imported (exit code 3)
    ├── InvalidRequest                a Request that can never be sent (bad URL, bad arguments)
    ├── FetchError                    a request that produced no usable response
    │   ├── RetryableFetchError       transient: worth trying again
    │   │   ├── NetworkError          connection refused/reset, DNS failure, broken transfer
    │   │   │   └── ProxyError            the proxy is unreachable or refused the request
    │   │   └── RequestTimeout        no complete response within REQUEST_TIMEOUT
    │   ├── TlsError                  certificate verification or TLS handshake failed
    │   ├── BadResponse               the server's answer is not valid HTTP
    │   ├── ResponseTooLarge          body over MAX_RESPONSE_SIZE (decoded bytes)
    │   ├── BlockedAddress            the host resolves to a private address (not allowed)
    │   ├── HttpError                 a non-2xx response the spider did not ask to handle
    │   └── TooManyRedirects          a redirect loop or a chain over MAX_REDIRECTS
    ├── OutputError                   an output cannot write (disk full): the crawl stops (exit 7)
    ├── LeaseError                    a lease given back twice (a bug in the caller)
    └── DropItem                      raised by a pipeline to drop an item (not a failure)

A spider callback or errback that raises is not wrapped in a class of ours:
``crawler/outputs.py`` logs it with the URL, counts ``callback_errors`` and
``callback_errors/<ExceptionName>``, and the crawl goes on.
The names a user catches are re-exported from ``crawler`` (all but
``RetryableFetchError`` and ``LeaseError``).

Retry and stats code reads these with ``isinstance``, never by message text.
Messages say what was wrong, with which value, and what to do; they never
contain credentials.
"""

from __future__ import annotations

__all__ = [
    "BadResponse",
    "BlockedAddress",
    "ConfigError",
    "CrawlerError",
    "DropItem",
    "FetchError",
    "HttpError",
    "InvalidRequest",
    "LeaseError",
    "NetworkError",
    "OutputError",
    "ProxyError",
    "RequestTimeout",
    "ResponseTooLarge",
    "RetryableFetchError",
    "SettingsError",
    "SpiderLoadError",
    "TlsError",
    "TooManyRedirects",
]


class CrawlerError(Exception):
    """Root of every exception the framework raises on purpose."""


class ConfigError(CrawlerError):
    """The configuration cannot work; nothing was crawled."""


class SettingsError(ConfigError):
    """An unknown setting name or a value of the wrong type or range."""


class SpiderLoadError(ConfigError):
    """The spider TARGET cannot be found, imported or instantiated."""


class InvalidRequest(CrawlerError, ValueError):
    """A request that can never be sent, e.g. a URL without a host."""


class FetchError(CrawlerError):
    """A request produced no usable response.

    ``kind`` is the short failure name used in stats (``failures/<kind>``).
    """

    kind = "fetch_error"

    def __init__(self, message: str, url: str = "") -> None:
        super().__init__(message)
        self.url = url


class RetryableFetchError(FetchError):
    """A transient failure: trying the same request later may succeed."""

    kind = "retryable"


class NetworkError(RetryableFetchError):
    """Connection refused or reset, DNS failure, TLS failure, broken transfer."""

    kind = "network"


class ProxyError(NetworkError):
    """The proxy could not be reached or refused the request (e.g. 407 bad credentials)."""

    kind = "proxy"


class RequestTimeout(RetryableFetchError):
    """No complete response within the request timeout."""

    kind = "timeout"


class TlsError(FetchError):
    """Certificate verification or the TLS handshake failed (not retried: it will fail again)."""

    kind = "tls"


class BadResponse(FetchError):
    """The server sent something that is not valid HTTP (bad status line, bad headers)."""

    kind = "bad_response"


class ResponseTooLarge(FetchError):
    """The response body is larger than MAX_RESPONSE_SIZE."""

    kind = "too_large"


class BlockedAddress(FetchError):
    """The host resolves to a loopback, private or link-local address the crawl may not reach.

    Not retried. ``ALLOWED_NETWORKS`` or ``BLOCK_PRIVATE_NETWORKS=false`` allow it.
    """

    kind = "blocked_address"


class HttpError(FetchError):
    """A non-2xx response the spider did not opt in to (``handle_httpstatus_list``).

    ``response`` holds the full response for errbacks that want it.
    """

    kind = "http_status"

    def __init__(self, message: str, url: str = "", response: object = None) -> None:
        super().__init__(message, url)
        self.response = response


class TooManyRedirects(FetchError):
    """A redirect loop or a redirect chain longer than MAX_REDIRECTS."""

    kind = "too_many_redirects"


class OutputError(CrawlerError):
    """An output (file exporter, database) cannot make items durable.

    Fatal to the crawl: requests in flight are not acked, the state stays
    resumable, and ``crawl run`` exits with code 7. ``output`` names the output
    (e.g. ``items.jsonl``); ``__cause__`` is the OS or database error, if any.
    """

    def __init__(self, message: str, output: str = "") -> None:
        super().__init__(message)
        self.output = output


class LeaseError(CrawlerError):
    """A frontier lease was acked, failed or retried a second time (a bug in the caller)."""


class DropItem(CrawlerError):
    """Raised by a pipeline's ``process_item`` to drop the item (counted, not a failure)."""
