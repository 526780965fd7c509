"""SOCKS proxies (aiohttp-socks, the ``socks`` extra): one connector per proxy URL.

aiohttp's ``proxy=`` speaks only HTTP. A SOCKS proxy is a way of opening the TCP
connection itself, so it lives in a connector: every connection a
:class:`SocksConnector` opens goes through its one proxy. :class:`SocksConnectors`
keeps one per proxy URL, opened on first use; it is owned by the downloader and
closed with the crawl, after the sessions. ``sessions.py`` opens one session per
(domain, SOCKS proxy) on these, sharing the domain's cookie jar and headers.

Who resolves the target's name decides what the private-network guard can check:

* ``socks5://``, ``socks4://``: we do, through the crawl's resolver (RESOLVE,
  DNS_NAMESERVERS and the guard's resolver wrapper), and the proxy is asked for
  the address. Every check of a direct connection applies, IP literals included.
* ``socks5h://``, ``socks4a://``: the proxy does; it is asked for the name. As for
  HTTP proxies, the downloader refuses IP literals and ``localhost`` names before
  the proxy is asked; what a name resolves to at the proxy cannot be seen here,
  so restrict the proxy itself if it can reach an internal network.

A SOCKS proxy's own address is not trusted as a target (an HTTP proxy's is: aiohttp
dials it through the guarded connector). TLS to the target runs inside the tunnel,
with the URL's host name as server name, so it is verified as for a direct request.
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import socket
import ssl
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.client_proto import ResponseHandler
from yarl import URL

from .connector import ConnectorOptions
from .guard import AddressGuard

__all__ = ["SocksConnector", "SocksConnectors", "SocksError", "SocksProxy"]

DEFAULT_PORT = 1080
_PROXY_TYPES = {"socks5": "SOCKS5", "socks5h": "SOCKS5", "socks4": "SOCKS4", "socks4a": "SOCKS4"}
_REMOTE_DNS = frozenset(("socks5h", "socks4a"))


@dataclass(frozen=True, slots=True)
class SocksProxy:
    """A SOCKS proxy URL taken apart (a repr never shows the credentials)."""

    scheme: str
    host: str
    port: int
    username: str | None = field(default=None, repr=False)
    password: str | None = field(default=None, repr=False)

    @classmethod
    def parse(cls, url: str) -> SocksProxy:
        """The parts of ``url``, a URL ``proxies.check_proxy_url`` accepts."""
        parsed = URL(url)
        return cls(
            parsed.scheme,
            parsed.host or "",
            parsed.explicit_port or DEFAULT_PORT,
            parsed.user,
            parsed.password,
        )

    @property
    def remote_dns(self) -> bool:
        """True if the proxy resolves target names (socks5h, socks4a)."""
        return self.scheme in _REMOTE_DNS


class SocksError(aiohttp.ClientConnectionError):
    """The SOCKS proxy could not be reached, refused the credentials or could not
    reach the target. The message never holds credentials."""

    def __init__(self, message: str, *, reached: bool, auth: bool = False) -> None:
        super().__init__(message)
        self.reached = reached  # False: the proxy itself could not be reached
        self.auth = auth  # True: the proxy refused (or asked for) credentials


class _Unresolved(AbstractResolver):
    """Hands the name on unresolved: the proxy resolves it (socks5h, socks4a)."""

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        """``host`` itself, as if it were an address."""
        return [
            {"hostname": host, "host": host, "port": port, "family": family, "proto": 0, "flags": 0}
        ]

    async def close(self) -> None:
        """Nothing to close."""


class _Handler(ResponseHandler):
    """aiohttp's protocol, holding the tunnel's stream writer: a collected writer
    closes its transport (Python >= 3.11.5)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, writer: asyncio.StreamWriter) -> None:
        super().__init__(loop)
        self.writer = writer


class SocksConnector(aiohttp.TCPConnector):
    """A TCPConnector whose every connection is a tunnel through one SOCKS proxy.

    ``resolver`` resolves target names for socks5/socks4 (the crawl's, guarded:
    not closed here); ``proxy_resolver`` the proxy's own name. With ``guard``, an
    address we dial through the proxy is checked as the socket factory checks a
    direct one.
    """

    def __init__(
        self,
        proxy: SocksProxy,
        *,
        resolver: AbstractResolver,
        proxy_resolver: AbstractResolver,
        guard: AddressGuard | None,
        **kwargs: Any,
    ) -> None:
        super().__init__(resolver=_Unresolved() if proxy.remote_dns else resolver, **kwargs)
        self.proxy = proxy
        self._proxy_resolver = proxy_resolver
        self._guard = None if proxy.remote_dns else guard

    async def _wrap_create_connection(
        self,
        *args: Any,
        addr_infos: list[Any],
        req: aiohttp.ClientRequest,
        timeout: aiohttp.ClientTimeout,  # noqa: ASYNC109 - aiohttp's signature
        client_error: type[Exception] = aiohttp.ClientConnectorError,
        **kwargs: Any,
    ) -> tuple[asyncio.Transport, ResponseHandler]:
        """The tunnel to the first of ``addr_infos`` (aiohttp tries the next on a
        ClientConnectorError), TLS inside it for https."""
        host, port = addr_infos[0][4][:2]
        try:
            if self._guard is not None:  # IP literals never reach the guarded resolver
                self._guard.check(host, host)
            if self.proxy.scheme == "socks4" and ":" in host:
                raise OSError(errno.EAFNOSUPPORT, f"SOCKS4 cannot reach the IPv6 address {host}")
        except OSError as exc:
            raise client_error(req.connection_key, exc) from exc
        limit_s = timeout.sock_connect or timeout.connect or timeout.total
        stream = await self._open_tunnel(host, port, limit_s)
        try:
            context = kwargs.get("ssl")
            if isinstance(context, ssl.SSLContext):
                await stream.start_tls(kwargs.get("server_hostname") or host, context)
        except BaseException as exc:
            await stream.close()
            if isinstance(exc, ssl.SSLCertVerificationError):
                raise aiohttp.ClientConnectorCertificateError(req.connection_key, exc) from exc
            if isinstance(exc, ssl.SSLError):
                raise aiohttp.ClientConnectorSSLError(req.connection_key, exc) from exc
            if isinstance(exc, OSError) and not isinstance(exc, TimeoutError):
                raise client_error(req.connection_key, exc) from exc
            raise
        writer = stream.writer
        protocol = _Handler(asyncio.get_running_loop(), writer)
        writer.transport.set_protocol(protocol)
        protocol.connection_made(writer.transport)
        return writer.transport, protocol  # type: ignore[return-value]

    async def _open_tunnel(self, host: str, port: int, limit_s: float | None) -> Any:
        """A stream to ``host``:``port`` through the proxy (python-socks, aiohttp-socks' engine)."""
        from python_socks import ProxyConnectionError, ProxyError, ProxyTimeoutError, ProxyType
        from python_socks.async_.asyncio.v2 import Proxy

        proxy = self.proxy
        tunnel = Proxy(
            proxy_type=getattr(ProxyType, _PROXY_TYPES[proxy.scheme]),
            host=await self._proxy_address(),
            port=proxy.port,
            username=proxy.username,
            password=proxy.password,
            rdns=proxy.remote_dns,
        )
        try:
            return await tunnel.connect(dest_host=host, dest_port=port, timeout=limit_s)
        except ProxyTimeoutError:
            raise TimeoutError(f"connecting through the SOCKS proxy took over {limit_s}s") from None
        except ProxyConnectionError as exc:
            cause = exc.__cause__  # python-socks words it "Couldn't connect to proxy …[cause]"
            reason = cause.strerror if isinstance(cause, OSError) and cause.strerror else exc
            raise SocksError(str(reason), reached=False) from None
        except ProxyError as exc:
            text = str(exc) or type(exc).__name__
            # python-socks says "…authentication failure" / "No acceptable authentication
            # methods…" (credentials refused or missing); its ProxyError has no finer class
            raise SocksError(text, reached=True, auth="authentication" in text.lower()) from None

    async def _proxy_address(self) -> str:
        """The proxy's address: its own name goes through RESOLVE and DNS_NAMESERVERS too."""
        host = self.proxy.host.strip("[]")
        try:
            ipaddress.ip_address(host)
            return host
        except ValueError:
            pass
        try:
            answers = await self._proxy_resolver.resolve(host, self.proxy.port, socket.AF_UNSPEC)
        except OSError as exc:
            raise SocksError(f"cannot resolve its host name: {exc}", reached=False) from None
        if not answers:
            raise SocksError("cannot resolve its host name", reached=False)
        return answers[0]["host"]


class _Slot:
    __slots__ = ("connector", "users")

    def __init__(self, connector: SocksConnector) -> None:
        self.connector = connector
        self.users = 0


class SocksConnectors:
    """The crawl's SOCKS connectors, one per proxy URL, shared by every session through it.

    A connector is in use while a session is open on it (:meth:`acquire` /
    :meth:`release`); beyond ``max_idle`` unused ones the least recently used is
    closed. :meth:`close` closes them all: call it after the sessions are closed.
    ``resolver`` (may be None: a default one is made and owned here) is not closed.
    """

    def __init__(
        self,
        options: ConnectorOptions,
        resolver: AbstractResolver | None,
        proxy_resolver: AbstractResolver | None,
        guard: AddressGuard | None,
        max_idle: int = 8,
    ) -> None:
        self._options = options
        self._resolver = resolver
        self._proxy_resolver = proxy_resolver or resolver
        self._owned_resolver: AbstractResolver | None = None
        self._guard = guard if guard is not None and guard.enabled else None
        self._max_idle = max_idle
        self._slots: OrderedDict[str, _Slot] = OrderedDict()
        self._closing: list[SocksConnector] = []

    def acquire(self, url: str) -> aiohttp.BaseConnector:
        """The connector for proxy ``url`` (opened if needed); pair with :meth:`release`."""
        slot = self._slots.get(url)
        if slot is None:
            slot = self._slots[url] = _Slot(self._open(SocksProxy.parse(url)))
        else:
            self._slots.move_to_end(url)
        slot.users += 1
        return slot.connector

    def release(self, url: str) -> None:
        """A session on ``url``'s connector was closed; idle connectors over the bound go."""
        slot = self._slots.get(url)
        if slot is None:
            return
        slot.users -= 1
        idle = [key for key, held in self._slots.items() if held.users <= 0]
        for key in idle[: max(0, len(idle) - self._max_idle)]:
            self._closing.append(self._slots.pop(key).connector)

    @property
    def open_count(self) -> int:
        """How many SOCKS connectors are open now."""
        return len(self._slots) + len(self._closing)

    def _open(self, proxy: SocksProxy) -> SocksConnector:
        if self._resolver is None:  # no RESOLVE, no nameservers, no guard: the default
            self._resolver = self._owned_resolver = aiohttp.DefaultResolver()
            self._proxy_resolver = self._proxy_resolver or self._resolver
        options = self._options
        return SocksConnector(
            proxy,
            resolver=self._resolver,
            proxy_resolver=self._proxy_resolver or self._resolver,
            guard=self._guard,
            limit=options.limit,
            limit_per_host=options.limit_per_host,
            use_dns_cache=options.dns_cache,
            ttl_dns_cache=options.dns_cache_ttl_s,  # type: ignore[arg-type]
        )

    async def close_idle(self) -> None:
        """Close the connectors :meth:`release` let go."""
        closing, self._closing = self._closing, []
        for connector in closing:
            await connector.close()

    async def close(self) -> None:
        """Close every connector (and the resolver made here)."""
        await self.close_idle()
        while self._slots:
            _, slot = self._slots.popitem()
            await slot.connector.close()
        resolver, self._owned_resolver = self._owned_resolver, None
        if resolver is not None:
            await resolver.close()
