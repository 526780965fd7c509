"""The shared connection resource: one TCPConnector (pools, DNS, TLS) for every session."""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Mapping

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult

__all__ = ["MappedResolver", "build_connector"]


class MappedResolver(AbstractResolver):
    """Answers from a static host -> IP map first (like curl ``--resolve``), then real DNS.

    Tests use it to point many test host names at one loopback server.
    """

    def __init__(self, mapping: Mapping[str, str], fallback: AbstractResolver | None = None):
        self._mapping = {host.lower().rstrip("."): ip for host, ip in mapping.items()}
        for host, ip in self._mapping.items():
            try:
                ipaddress.ip_address(ip)
            except ValueError:
                from ..errors import SettingsError

                raise SettingsError(
                    f"bad value RESOLVE {host}={ip!r}: expected an IP address such as 127.0.0.1"
                ) from None
        self._fallback = fallback or aiohttp.ThreadedResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        """Resolve ``host``: the static map wins, anything else goes to the fallback."""
        ip = self._mapping.get(host.lower().rstrip("."))
        if ip is None:
            return await self._fallback.resolve(host, port, family)
        ip_family = socket.AF_INET6 if ":" in ip else socket.AF_INET
        return [
            {
                "hostname": host,
                "host": ip,
                "port": port,
                "family": ip_family,
                "proto": 0,
                "flags": socket.AI_NUMERICHOST,
            }
        ]

    async def close(self) -> None:
        """Close the fallback resolver."""
        await self._fallback.close()


def build_connector(
    limit: int, limit_per_host: int, resolve: Mapping[str, str]
) -> aiohttp.TCPConnector:
    """The one connector all per-domain sessions share (``connector_owner=False``)."""
    resolver = MappedResolver(resolve) if resolve else None
    return aiohttp.TCPConnector(
        limit=limit,
        limit_per_host=limit_per_host,
        resolver=resolver,
        enable_cleanup_closed=False,
    )
