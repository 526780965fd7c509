"""Proxy URLs: validation and credential redaction (credentials never reach logs or stats).

HTTP proxies (``http://``, ``https://``) are aiohttp's own ``proxy=``; SOCKS proxies
(``socks5://``, ``socks5h://``, ``socks4://``, ``socks4a://``) go through aiohttp-socks,
an optional extra (see ``socks.py``).
"""

from __future__ import annotations

from yarl import URL

from ..errors import SettingsError
from ..loglines import scrub

__all__ = ["INSTALL_SOCKS", "SOCKS_SCHEMES", "check_proxy_url", "is_socks", "redact"]

# socks5/socks4: we resolve the target's name (through the guarded resolver);
# socks5h/socks4a: the proxy does (as curl names them).
SOCKS_SCHEMES = frozenset(("socks5", "socks5h", "socks4", "socks4a"))
INSTALL_SOCKS = "pip install 'crawler[socks]'"


def redact(text: str | None) -> str:
    """``text`` with any ``user:password@`` in URLs replaced by ``***@``."""
    if not text:
        return ""
    return scrub(text)


def is_socks(url: str | None) -> bool:
    """True if ``url`` names a SOCKS proxy (its scheme starts with ``socks``); cheap."""
    return url is not None and url[:5].lower() == "socks"


def _masked(value: str) -> str:
    """A proxy setting as an error may show it: everything before the last ``@`` hidden.

    A malformed value may hold a raw ``#``, ``?`` or ``/`` in its password, which
    no URL parser (nor :func:`redact`) would take for userinfo.
    """
    scheme, sep, rest = value.partition("://")
    if "@" not in rest:
        return value
    return f"{scheme}{sep}***@{rest.rpartition('@')[2]}"


def check_proxy_url(value: str, where: str = "PROXY") -> str:
    """Validate a proxy URL: http, https or a SOCKS scheme, a host, credentials optional.

    A SOCKS URL also needs aiohttp-socks installed (the ``socks`` extra).
    """
    try:
        url = URL(value)
    except ValueError as exc:
        raise SettingsError(f"bad value {where}={_masked(value)!r}: {redact(str(exc))}") from None
    if url.scheme in SOCKS_SCHEMES and url.host and "#" not in value:
        _check_socks(url, value, where)
        return value
    if url.scheme not in ("http", "https") or not url.host or "#" in value:
        raise SettingsError(
            f"bad value {where}={_masked(value)!r}: expected http://[user:pass@]host:port"
            " or socks5://, socks5h://, socks4://, socks4a://"
            " (percent-encode @ # ? / in the password)"
        )
    return value


def _check_socks(url: URL, value: str, where: str) -> None:
    if url.scheme.startswith("socks4") and url.password is not None:
        raise SettingsError(
            f"bad value {where}={_masked(value)!r}: SOCKS4 has a user id but no password;"
            " use socks5://user:pass@host:port"
        )
    if url.path not in ("", "/") or url.query_string:
        raise SettingsError(
            f"bad value {where}={_masked(value)!r}: expected {url.scheme}://[user:pass@]host:port"
            " (percent-encode @ # ? / in the password)"
        )
    try:
        import aiohttp_socks  # noqa: F401 - only asked whether it is there
    except ImportError:
        raise SettingsError(
            f"{where}={_masked(value)!r} is a SOCKS proxy, which needs aiohttp-socks:"
            f" {INSTALL_SOCKS}"
        ) from None
