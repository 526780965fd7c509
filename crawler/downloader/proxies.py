"""Proxy URLs: validation and credential redaction (credentials never reach logs or stats)."""

from __future__ import annotations

from yarl import URL

from ..errors import SettingsError
from ..loglines import scrub

__all__ = ["check_proxy_url", "redact"]


def redact(text: str | None) -> str:
    """``text`` with any ``user:password@`` in URLs replaced by ``***@``."""
    if not text:
        return ""
    return scrub(text)


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
    """Validate a proxy URL (http or https scheme, a host, credentials optional)."""
    try:
        url = URL(value)
    except ValueError as exc:
        raise SettingsError(f"bad value {where}={_masked(value)!r}: {redact(str(exc))}") from None
    if url.scheme not in ("http", "https") or not url.host or "#" in value:
        raise SettingsError(
            f"bad value {where}={_masked(value)!r}: expected http://[user:pass@]host:port"
            " (percent-encode @ # ? / in the password)"
        )
    return value
