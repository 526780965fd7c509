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


def check_proxy_url(value: str, where: str = "PROXY") -> str:
    """Validate a proxy URL (http or https scheme, a host, credentials optional)."""
    try:
        url = URL(value)
    except ValueError as exc:
        raise SettingsError(f"bad value {where}={redact(value)!r}: {exc}") from None
    if url.scheme not in ("http", "https") or not url.host:
        raise SettingsError(
            f"bad value {where}={redact(value)!r}: expected http://[user:pass@]host:port"
        )
    return value
