"""TLS options: certificate verification, CA bundles, client certificates, per domain."""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from ..errors import SettingsError
from ..loglines import get_logger

__all__ = ["TlsOptions", "TlsPolicy"]

logger = get_logger("crawler.downloader.tls")

_FALSE_WORDS = {"false", "0", "no", "off"}


@dataclass(frozen=True, slots=True)
class TlsOptions:
    """Crawl-wide TLS settings plus per-domain overrides."""

    verify: bool = True
    ca_bundle: str = ""
    client_cert: str = ""
    client_key: str = ""
    per_domain: Mapping[str, Any] = field(default_factory=dict)


@lru_cache(maxsize=64)
def _context(ca_bundle: str, client_cert: str, client_key: str) -> ssl.SSLContext:
    for label, path in (
        ("SSL_CA_BUNDLE", ca_bundle),
        ("SSL_CLIENT_CERT", client_cert),
        ("SSL_CLIENT_KEY", client_key),
    ):
        if path and not Path(path).is_file():
            raise SettingsError(f"bad value {label}={path!r}: no such file")
    try:
        context = ssl.create_default_context(cafile=ca_bundle or None)
        if client_cert:
            context.load_cert_chain(client_cert, client_key or None)
    except (ssl.SSLError, OSError) as exc:
        raise SettingsError(f"cannot load TLS files ({ca_bundle or client_cert}): {exc}") from None
    return context


class TlsPolicy:
    """Decides the ``ssl=`` argument for each request: request > domain > crawl default."""

    def __init__(self, options: TlsOptions) -> None:
        self.options = options
        self._warned: set[str] = set()
        self.default: ssl.SSLContext | bool = self._build(
            options.verify, options.ca_bundle, "all domains"
        )
        self._domains: dict[str, ssl.SSLContext | bool] = {
            domain.lower(): self._from_value(value, domain)
            for domain, value in options.per_domain.items()
        }

    def _build(self, verify: bool, ca_bundle: str, where: str) -> ssl.SSLContext | bool:
        if not verify:
            return False
        if ca_bundle or self.options.client_cert:
            return _context(ca_bundle, self.options.client_cert, self.options.client_key)
        return True

    def _from_value(self, value: Any, domain: str) -> ssl.SSLContext | bool:
        if isinstance(value, ssl.SSLContext):
            return value
        if value is False or (isinstance(value, str) and value.strip().lower() in _FALSE_WORDS):
            return False
        if value is True or (isinstance(value, str) and value.strip().lower() == "true"):
            return self.default
        if isinstance(value, str):
            return self._build(True, value, domain)
        raise SettingsError(
            f"bad value DOMAIN_SSL[{domain!r}]={value!r}: expected false, true or a CA bundle path"
        )

    def for_request(self, request_ssl: Any, domain: str) -> ssl.SSLContext | bool | Any:
        """The ``ssl=`` value for a request to ``domain`` (None keeps the connector default)."""
        if request_ssl is not None:
            choice = (
                self._from_value(request_ssl, domain)
                if not _is_fingerprint(request_ssl)
                else request_ssl
            )
        else:
            choice = self._domains.get(domain, self.default)
        if choice is False and domain not in self._warned:
            self._warned.add(domain)
            logger.warning("TLS certificate verification is OFF for %s", domain)
        return choice


def _is_fingerprint(value: Any) -> bool:
    return type(value).__name__ == "Fingerprint"
