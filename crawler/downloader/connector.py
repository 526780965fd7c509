"""The shared connection resource: one TCPConnector (pools, DNS, TLS) for every session."""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult

from ..errors import SettingsError
from .guard import AddressGuard, GuardedResolver

__all__ = ["Connector", "ConnectorOptions", "MappedResolver", "build_connector"]


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


@dataclass(frozen=True, slots=True)
class ConnectorOptions:
    """The shared connector's knobs (see the CONCURRENCY, DNS_* and RESOLVE settings)."""

    limit: int = 100
    limit_per_host: int = 0
    resolve: Mapping[str, str] = field(default_factory=dict)
    dns_cache: bool = True
    dns_cache_ttl_s: float = 10.0
    nameservers: tuple[str, ...] = ()


def _nameserver_resolver(nameservers: tuple[str, ...]) -> AbstractResolver:
    try:
        import aiodns  # noqa: F401 - AsyncResolver needs it
    except ImportError:
        raise SettingsError(
            "DNS_NAMESERVERS needs the aiodns package: pip install aiodns"
        ) from None
    for server in nameservers:
        host, _, port = server.rpartition(":") if server.count(":") == 1 else (server, "", "")
        try:
            ipaddress.ip_address(host or server)
            if port:
                int(port)
        except ValueError:
            raise SettingsError(
                f"bad value DNS_NAMESERVERS entry {server!r}: expected 'ip' or 'ip:port'"
            ) from None
    return aiohttp.AsyncResolver(nameservers=list(nameservers))


class Connector(aiohttp.TCPConnector):
    """A TCPConnector that also closes the resolver built for it.

    aiohttp closes only a resolver it created itself; ours (RESOLVE, DNS_NAMESERVERS)
    would otherwise keep its aiodns channel open after the crawl.
    """

    def __init__(self, *, resolver: AbstractResolver | None, **kwargs: Any) -> None:
        super().__init__(resolver=resolver, **kwargs)
        self.owned_resolver = resolver

    async def close(self, *, abort_ssl: bool = False) -> None:
        try:
            await super().close(abort_ssl=abort_ssl)
        finally:
            resolver, self.owned_resolver = self.owned_resolver, None
            if resolver is not None:
                await resolver.close()


def build_connector(options: ConnectorOptions, guard: AddressGuard | None = None) -> Connector:
    """The one connector all per-domain sessions share (``connector_owner=False``).

    With an enabled ``guard``, every resolved and every dialled address is
    checked (see ``guard.py``). Closing the connector also closes the resolver
    built here.
    """
    resolver: AbstractResolver | None = None
    if options.nameservers:
        resolver = _nameserver_resolver(options.nameservers)
    if options.resolve:
        resolver = MappedResolver(options.resolve, resolver)
    extra: dict[str, Any] = {}
    if guard is not None and guard.enabled:
        resolver = GuardedResolver(resolver or aiohttp.DefaultResolver(), guard)
        extra["socket_factory"] = guard.socket_factory
    return Connector(
        limit=options.limit,
        limit_per_host=options.limit_per_host,
        resolver=resolver,
        **extra,
        use_dns_cache=options.dns_cache,
        # typed int, but aiohttp's DNS cache table keeps (and compares) a float
        ttl_dns_cache=options.dns_cache_ttl_s,  # type: ignore[arg-type]
    )
