"""The public suffix list, loaded once: registered domains and public suffixes.

Sessions are per registered domain and cookie jars refuse cookies for public
suffixes; both ask here, so the list (~2 MB, ~180 ms to load) exists once.
"""

from __future__ import annotations

import ipaddress
from functools import lru_cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from publicsuffixlist import PublicSuffixList

__all__ = ["is_ip", "is_public_suffix", "registered_domain"]


@lru_cache(maxsize=1)
def _psl() -> PublicSuffixList:
    """The list, loaded on the first question (not at import: ``crawl --help`` never asks)."""
    from publicsuffixlist import PublicSuffixList

    return PublicSuffixList()


@lru_cache(maxsize=65536)
def registered_domain(host: str) -> str:
    """The registrable domain of ``host`` (``a.example.co.uk`` -> ``example.co.uk``).

    IP addresses, single-label hosts and public suffixes are their own domain.
    """
    host = host.lower().rstrip(".")
    if is_ip(host):
        return host
    return _psl().privatesuffix(host) or host


def is_ip(host: str) -> bool:
    """True if ``host`` is an IP address (IPv6 with or without brackets)."""
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


@lru_cache(maxsize=4096)
def is_public_suffix(domain: str) -> bool:
    """True if ``domain`` is a public suffix (``com``, ``co.uk``, ``github.io``)."""
    return bool(_psl().is_public(domain))
