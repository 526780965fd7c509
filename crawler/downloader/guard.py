"""The private-network guard: which addresses the crawl may open connections to.

A page on the open web can link or redirect to ``http://169.254.169.254/`` (a
cloud metadata service), ``http://10.0.0.1/admin`` or a name that resolves to
one; a crawler that follows it is a request forgery tool. The guard refuses
every address that is not globally routable (loopback, RFC 1918, 100.64.0.0/10,
link-local, unique-local, unspecified, multicast, reserved) unless

* the crawl's start requests resolve to it (crawling your own localhost or
  intranet host needs no setting), or a configured proxy does;
* it lies in ``ALLOWED_NETWORKS``; or
* ``BLOCK_PRIVATE_NETWORKS`` is false.

The check runs on the *resolved* address at connect time, in two places: a
resolver wrapper (DNS names, including non-canonical IP spellings such as
``2130706433`` that only the system resolver understands) and the connector's
socket factory (IP literals, which aiohttp never sends to a resolver). So
redirects, links, DNS rebinding and odd IP spellings all meet the same check.

Through a proxy that resolves names itself (HTTP, socks5h, socks4a) the
connector sees only the proxy's address: the downloader refuses IP literals and
``localhost`` names in the URL (:meth:`AddressGuard.check_unresolved`); what
another name resolves to at the proxy is the proxy's business. Through socks5 and
socks4 we resolve the target ourselves, with this resolver wrapper, and the SOCKS
connector checks the address it asks the proxy for (see ``socks.py``).
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import socket
from collections.abc import Iterable
from typing import Any

from aiohttp.abc import AbstractResolver, ResolveResult
from yarl import URL

from ..loglines import get_logger

__all__ = ["AddressGuard", "BlockedAddressError", "GuardedResolver"]

logger = get_logger("crawler.downloader.guard")

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
_MAX_REMEMBERED = 10_000  # hosts logged once each; a hostile page may name millions
_RESOLVE_AT_ONCE = 64


class BlockedAddressError(OSError):
    """A connection to ``address`` (for ``host``) was refused by the guard."""

    def __init__(self, host: str, address: str) -> None:
        what = address if host == address else f"{host} resolves to {address}, which"
        super().__init__(
            errno.EACCES,
            f"{what} is a private, loopback or link-local address;"
            f" allow it with ALLOWED_NETWORKS=['{_network_hint(address)}']"
            " or turn the guard off with BLOCK_PRIVATE_NETWORKS=false",
        )
        self.host = host
        self.address = address


def _network_hint(address: str) -> str:
    ip = ipaddress.ip_address(address)
    return f"{ip}/{ip.max_prefixlen}"


# Never public, whatever this Python's ipaddress tables say (they changed in 3.11.10/3.12.4).
_NOT_PUBLIC = tuple(
    ipaddress.ip_network(n)
    for n in (
        "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16",
        "172.16.0.0/12", "192.0.0.0/24", "192.168.0.0/16", "198.18.0.0/15", "224.0.0.0/3",
        "::/127", "fc00::/7", "fe80::/10", "ff00::/8", "100::/64", "2001:db8::/32",
    )
)  # fmt: skip
# IPv6 forms that carry an IPv4 address: judged by the IPv4 address inside.
_NAT64 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))
_V4_COMPATIBLE = ipaddress.ip_network("::/96")


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if ip.ipv4_mapped is not None:  # ::ffff:127.0.0.1
        return ip.ipv4_mapped
    if ip.sixtofour is not None:  # 2002:7f00:1::
        return ip.sixtofour
    if ip.teredo is not None:  # the client address a Teredo relay would reach
        return ip.teredo[1]
    if ip in _V4_COMPATIBLE or any(ip in net for net in _NAT64):  # ::7f00:1, 64:ff9b::a00:1
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def is_public(ip: IPAddress) -> bool:
    """True for a globally routable unicast address (IPv4 inside IPv6 judged as IPv4)."""
    if isinstance(ip, ipaddress.IPv6Address):
        inner = _embedded_ipv4(ip)
        if inner is not None:
            return is_public(inner)
    if any(ip in network for network in _NOT_PUBLIC if network.version == ip.version):
        return False
    return ip.is_global


class AddressGuard:
    """Decides which resolved addresses the crawl may connect to (see the module docstring)."""

    def __init__(self, enabled: bool = True, allowed_networks: Iterable[str] = ()) -> None:
        self.enabled = enabled
        self._networks = [ipaddress.ip_network(n, strict=False) for n in allowed_networks]
        self._addresses: set[IPAddress] = set()
        self._hosts: set[str] = set()
        self._pending: set[str] = set()  # trusted names whose addresses are not known yet
        self._logged: set[str] = set()
        self.refused = 0

    def allows(self, ip: IPAddress) -> bool:
        """True if the crawl may connect to ``ip``."""
        if not self.enabled or ip in self._addresses or is_public(ip):
            return True
        return any(ip in network for network in self._networks)

    def trust_host(self, host: str) -> bool:
        """Allow whatever ``host`` resolves to (a start request's host, a proxy's host).

        True if ``host`` is a name not trusted before (worth resolving now, so that
        its addresses are known before other hosts that share them are dialled).
        """
        host = host.lower().rstrip(".").strip("[]")
        try:
            self._addresses.add(ipaddress.ip_address(host))
        except ValueError:
            if host not in self._hosts:
                self._hosts.add(host)
                self._pending.add(host)
                return True
        return False

    @property
    def pending(self) -> bool:
        """True while some trusted name has not been resolved yet."""
        return bool(self._pending)

    def take_pending(self) -> list[str]:
        """The trusted names not resolved yet (each is handed out once)."""
        names, self._pending = list(self._pending), set()
        return names

    def trust_url(self, url: str) -> None:
        """Allow the host of ``url`` (a proxy URL, which may carry credentials)."""
        try:
            host = URL(url).host
        except (ValueError, TypeError):
            return
        if host:
            self.trust_host(host)

    def trusts_host(self, host: str) -> bool:
        """True if ``host`` was trusted with :meth:`trust_host`."""
        return host.lower().rstrip(".") in self._hosts

    def remember(self, addresses: Iterable[str], host: str | None = None) -> None:
        """Allow ``addresses``: what the trusted ``host`` (no longer pending) resolved to."""
        for address in addresses:
            self._addresses.add(_parse(address))
        if host is not None:
            self._pending.discard(host.lower().rstrip("."))

    def check(self, host: str, address: str) -> None:
        """Raise :class:`BlockedAddressError` if ``address`` (of ``host``) is refused."""
        if self.allows(_parse(address)):
            return
        self.refused += 1
        if host not in self._logged and len(self._logged) < _MAX_REMEMBERED:
            self._logged.add(host)
            logger.warning("refused to connect: %s", BlockedAddressError(host, address).strerror)
        raise BlockedAddressError(host, address)

    def check_unresolved(self, host: str) -> None:
        """Check ``host`` as a proxy will be asked for it, unresolved: an IP literal or a
        ``localhost`` name (loopback, RFC 6761) is judged here, any other name cannot be
        (a trusted start host passes). Raises :class:`BlockedAddressError`."""
        host = host.lower().rstrip(".").strip("[]")
        if host in self._hosts:
            return
        address = "127.0.0.1" if host == "localhost" or host.endswith(".localhost") else host
        try:
            ipaddress.ip_address(address)
        except ValueError:
            return
        self.check(host, address)

    def socket_factory(self, addr_info: tuple[Any, ...]) -> socket.socket:
        """The connector's socket factory: the last check, on the exact address dialled."""
        family, type_, proto, _, sockaddr = addr_info
        address = str(sockaddr[0]).split("%", 1)[0]
        self.check(address, address)
        return socket.socket(family=family, type=type_, proto=proto)


def _parse(address: str) -> IPAddress:
    return ipaddress.ip_address(address.split("%", 1)[0])


class GuardedResolver(AbstractResolver):
    """Resolves through ``inner`` and drops the answers the guard refuses.

    A name whose every answer is refused fails with :class:`BlockedAddressError`
    (aiohttp reports it as a connection error carrying it).
    """

    def __init__(self, inner: AbstractResolver, guard: AddressGuard) -> None:
        self.inner = inner
        self._guard = guard

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        """Resolve ``host`` and keep only the addresses the guard allows."""
        results = await self.inner.resolve(host, port, family)
        guard = self._guard
        if guard.trusts_host(host):
            guard.remember((r["host"] for r in results), host)
            return results
        allowed = [r for r in results if guard.allows(_parse(r["host"]))]
        if not allowed and results and guard.pending:
            await self.resolve_pending()  # a start host not fetched yet may share the address
            allowed = [r for r in results if guard.allows(_parse(r["host"]))]
        if not allowed and results:
            guard.check(host, results[0]["host"])  # counts, logs once, raises
        return allowed

    async def resolve_pending(self) -> None:
        """Resolve the trusted names not resolved yet, so their addresses are allowed.

        Done lazily, the first time a private address turns up, instead of for
        every start host before the crawl begins (a seed list may name 100k hosts).
        """
        names = self._guard.take_pending()
        for start in range(0, len(names), _RESOLVE_AT_ONCE):
            batch = names[start : start + _RESOLVE_AT_ONCE]
            answers = await asyncio.gather(
                *(self.inner.resolve(name, 0, socket.AF_UNSPEC) for name in batch),
                return_exceptions=True,
            )
            for answer in answers:
                if isinstance(answer, list):
                    self._guard.remember(r["host"] for r in answer)

    async def close(self) -> None:
        """Close the wrapped resolver."""
        await self.inner.close()
