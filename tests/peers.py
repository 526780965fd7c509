"""Real local peers for the client tests: TLS servers, a proxy process, a DNS server, a Unix socket.

Everything listens on loopback (127.0.0.1) or in the test's tmp_path and is
closed by the ``async with`` that started it. Nothing here waits by sleeping:
readiness is a line the peer prints or a socket that is already bound.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import shutil
import signal
import socket
import ssl
import sys
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager, suppress
from dataclasses import dataclass, field
from functools import cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import trustme
from aiohttp import web

from crawler import Crawler, CrawlResult, Settings, Spider
from crawler.testing import SiteServer

# Only trips when a test hangs (a bug); no test waits for it to pass.
HANG_GUARD_S = 20.0

# What these tests do not exercise stays out of the way: no progress lines, no robots.txt
# requests in the servers' logs, no retries (a failure is the one the test provoked).
QUIET: dict[str, Any] = {"PROGRESS_INTERVAL": 0, "ROBOTSTXT_OBEY": False, "RETRY_TIMES": 0}

TLS_HOSTS = ("secure.test", "other.test", "127.0.0.1", "localhost")


# -- running a crawl ---------------------------------------------------------------------------


class Collect:
    """Keeps every item in a list, in order."""

    def __init__(self) -> None:
        self.items: list[Any] = []

    async def process_item(self, item: Any, spider: Spider) -> Any:
        self.items.append(item)
        return item


@dataclass
class Run:
    """What a finished crawl left behind."""

    crawler: Crawler
    result: CrawlResult
    items: list[Any]

    @property
    def stats(self) -> dict[str, Any]:
        return self.result.stats


def make_crawler(spider: Spider, **settings: Any) -> tuple[Crawler, Collect]:
    """A Crawler for ``spider`` with the test's settings over the spider's (no progress lines)."""
    collect = Collect()
    values: dict[str, Any] = {
        name: value for name, value in QUIET.items() if name in Settings.names()
    }
    values.update(settings)
    built = Settings.build(("spider settings", spider.settings), ("test", values))
    return Crawler(spider, built, pipelines=[collect]), collect


async def crawl(spider: Spider, **settings: Any) -> Run:
    """Crawl ``spider`` to the end with ``settings``; return the crawler, result and items."""
    crawler, collect = make_crawler(spider, **settings)
    async with asyncio.timeout(HANG_GUARD_S):
        result = await crawler.run()
    return Run(crawler, result, collect.items)


def free_port(kind: socket.SocketKind = socket.SOCK_STREAM) -> int:
    """A loopback port nobody listens on right now (for peers that cannot take port 0)."""
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# -- TLS: a trustme CA, server and client certificates, an HTTPS site -------------------------


@cache
def _authority() -> tuple[trustme.CA, trustme.LeafCert, trustme.LeafCert]:
    ca = trustme.CA()
    return ca, ca.issue_cert(*TLS_HOSTS), ca.issue_cert("crawler-client@example.test")


@dataclass(frozen=True)
class TlsFiles:
    """A test CA and what it issued, as PEM files in a test's tmp_path."""

    ca: trustme.CA
    server: trustme.LeafCert
    ca_pem: str
    client_pem: str  # client certificate and key in one file
    client_cert_pem: str  # the certificate alone
    client_key_pem: str  # the key alone

    def server_context(self, require_client_cert: bool = False) -> ssl.SSLContext:
        """An SSLContext for an HTTPS server; optionally requiring a client cert from the CA."""
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.server.configure_cert(context)
        if require_client_cert:
            context.verify_mode = ssl.CERT_REQUIRED
            self.ca.configure_trust(context)
        return context

    def client_context(self, with_client_cert: bool = False) -> ssl.SSLContext:
        """A client SSLContext trusting the test CA."""
        context = ssl.create_default_context(cafile=self.ca_pem)
        if with_client_cert:
            context.load_cert_chain(self.client_pem)
        return context


def tls_files(directory: Path) -> TlsFiles:
    """Write the test CA, and a client certificate it issued, to ``directory``."""
    ca, server, client = _authority()
    ca_pem = directory / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_pem))
    client_pem = directory / "client.pem"
    client.private_key_and_cert_chain_pem.write_to_path(str(client_pem))
    cert_pem = directory / "client-cert.pem"
    for i, blob in enumerate(client.cert_chain_pems):
        blob.write_to_path(str(cert_pem), append=i > 0)
    key_pem = directory / "client-key.pem"
    client.private_key_pem.write_to_path(str(key_pem))
    return TlsFiles(ca, server, str(ca_pem), str(client_pem), str(cert_pem), str(key_pem))


@dataclass
class TlsSiteServer(SiteServer):
    """A :class:`SiteServer` speaking HTTPS with ``ssl_context``."""

    ssl_context: ssl.SSLContext | None = None

    async def __aenter__(self) -> TlsSiteServer:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, 0, ssl_context=self.ssl_context)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    def url(self, host: str, path: str = "/") -> str:
        return f"https://{host}:{self.port}{path}"


class _HelloHandler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"<p>hello over mutual TLS</p>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _BlockingTlsServer(ThreadingHTTPServer):
    """The handshake runs in the handler thread on a blocking socket, so a rejected
    client certificate is answered with a TLS alert as any production server does
    (an asyncio server drops the connection without flushing the alert)."""

    daemon_threads = True

    def __init__(self, context: ssl.SSLContext) -> None:
        super().__init__(("127.0.0.1", 0), _HelloHandler)
        self.context = context
        self.handshake_errors: list[str] = []

    def finish_request(self, request: Any, client_address: Any) -> None:
        try:
            tls = self.context.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError) as exc:
            self.handshake_errors.append(str(exc))
            return
        with tls:
            self.RequestHandlerClass(tls, client_address, self)

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass


@asynccontextmanager
async def blocking_tls_server(context: ssl.SSLContext) -> AsyncIterator[_BlockingTlsServer]:
    """An HTTPS server on its own thread (``https://secure.test:<server.server_port>/``)."""
    server = _BlockingTlsServer(context)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield server
    finally:
        await asyncio.to_thread(server.shutdown)
        thread.join()
        server.server_close()


@dataclass
class UnixSiteServer(SiteServer):
    """A :class:`SiteServer` listening on a Unix socket at ``path`` instead of TCP."""

    path: str = ""

    async def __aenter__(self) -> UnixSiteServer:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        await web.UnixSite(self._runner, self.path).start()
        return self

    def url(self, host: str, path: str = "/") -> str:
        return f"http://{host}{path}"


# -- real proxies: tinyproxy and proxy.py, each a child process in the foreground -------------

TINYPROXY = shutil.which("tinyproxy") or (
    "/usr/bin/tinyproxy" if os.path.exists("/usr/bin/tinyproxy") else None
)


def _require(present: bool, what: str, install: str) -> None:
    """Skip when ``what`` is absent, except in CI (the CI env var is set) where it must be there."""
    if present:
        return
    if os.environ.get("CI"):
        pytest.fail(f"{what} is not installed but CI is set: {install}")
    pytest.skip(f"{what} is not installed ({install}); with CI=1 this test fails instead")


def require_module(*names: str, install: str) -> None:
    """Skip unless one of the modules ``names`` is importable (in CI: fail instead)."""
    present = any(importlib.util.find_spec(name) is not None for name in names)
    _require(present, " or ".join(names), install)


@dataclass
class ProxyPeer:
    """A running proxy process; ``lines`` is its log so far (both log each request)."""

    name: str
    process: asyncio.subprocess.Process
    port: int = 0
    lines: list[str] = field(default_factory=list)
    _changed: asyncio.Condition = field(default_factory=asyncio.Condition)
    _eof: bool = False

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url_with(self, user: str, password: str) -> str:
        return f"http://{user}:{password}@127.0.0.1:{self.port}"

    async def wait_for_log(self, text: str) -> str:
        """The first log line containing ``text``, waiting for the proxy to write it."""
        async with asyncio.timeout(HANG_GUARD_S), self._changed:
            while True:
                for line in self.lines:
                    if text in line:
                        return line
                if self._eof:
                    raise AssertionError(
                        f"{self.name} never logged {text!r}:\n" + "".join(self.lines)
                    )
                await self._changed.wait()

    async def _read_until(self, marker: bytes) -> bytes:
        assert self.process.stdout is not None
        while True:
            line = await self.process.stdout.readline()
            if not line:
                raise AssertionError(f"{self.name} exited:\n" + "".join(self.lines))
            self.lines.append(line.decode(errors="replace"))
            if marker in line:
                return line

    async def _drain(self) -> None:
        assert self.process.stdout is not None
        while line := await self.process.stdout.readline():
            async with self._changed:
                self.lines.append(line.decode(errors="replace"))
                self._changed.notify_all()
        async with self._changed:
            self._eof = True
            self._changed.notify_all()


@asynccontextmanager
async def _run_proxy(
    name: str, argv: list[str], ready: bytes, port: int | None
) -> AsyncIterator[ProxyPeer]:
    process = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        start_new_session=True,  # its own process group: children are stopped with it
    )
    proxy = ProxyPeer(name, process, port or 0)
    drain: asyncio.Task[None] | None = None
    try:
        async with asyncio.timeout(HANG_GUARD_S):
            line = await proxy._read_until(ready)  # it says when it listens
        if port is None:  # "Listening on 127.0.0.1:<port>"
            proxy.port = int(line.decode().rsplit(":", 1)[1])
        drain = asyncio.create_task(proxy._drain())
        yield proxy
    finally:
        if process.returncode is None:
            os.killpg(process.pid, signal.SIGTERM)  # the group this function started
        if drain is not None:
            await drain  # ends at EOF, when the process (and its children) have gone
        await process.wait()


@asynccontextmanager
async def tinyproxy(
    directory: Path, basic_auth: tuple[str, str] | None = None
) -> AsyncIterator[ProxyPeer]:
    """tinyproxy on 127.0.0.1:<free port>, CONNECT allowed to any port; it adds a Via header.

    With ``basic_auth`` it answers a request without credentials with 407 but one
    with wrong credentials with 401 (a tinyproxy quirk).
    """
    _require(TINYPROXY is not None, "tinyproxy", "apt-get install tinyproxy")
    assert TINYPROXY is not None
    port = free_port()
    conf = directory / "tinyproxy.conf"
    lines = [f"Port {port}", "Listen 127.0.0.1", "Allow 127.0.0.1", "LogLevel Info"]
    lines += ["MaxClients 20", "Timeout 30"]  # no ConnectPort line: CONNECT to any port
    if basic_auth is not None:
        lines.append(f"BasicAuth {basic_auth[0]} {basic_auth[1]}")
    conf.write_text("\n".join(lines) + "\n")
    argv = [TINYPROXY, "-d", "-c", str(conf)]  # -d: foreground, log to stdout
    async with _run_proxy("tinyproxy", argv, b"Accepting connections", port) as proxy:
        yield proxy


@asynccontextmanager
async def proxy_py(basic_auth: tuple[str, str] | None = None) -> AsyncIterator[ProxyPeer]:
    """proxy.py on 127.0.0.1:<port it picked>; answers wrong credentials with 407."""
    require_module("proxy", install="pip install proxy.py")
    argv = [sys.executable, "-m", "proxy", "--hostname", "127.0.0.1", "--port", "0"]
    argv += ["--num-acceptors", "1", "--log-level", "DEBUG"]
    if basic_auth is not None:
        argv += ["--basic-auth", f"{basic_auth[0]}:{basic_auth[1]}"]
    async with _run_proxy("proxy.py", argv, b"Listening on", None) as proxy:
        yield proxy


# -- DNS: a dnslib server on a free UDP loopback port ------------------------------------------


def _dns_server(answers: dict[str, str]) -> Any:
    from dnslib import QTYPE, RCODE, RR, A
    from dnslib.server import BaseResolver, DNSLogger, DNSServer

    class Resolver(BaseResolver):  # type: ignore[misc]
        """Answers A records for ``*.test`` (and ``answers``); everything else is NXDOMAIN."""

        def __init__(self) -> None:
            self.queries: list[tuple[str, str]] = []

        def resolve(self, request: Any, handler: Any) -> Any:
            reply = request.reply()
            qname = request.q.qname
            name = str(qname).rstrip(".").lower()
            qtype = QTYPE[request.q.qtype]
            self.queries.append((name, qtype))
            ip = answers.get(name, "127.0.0.1" if name.endswith(".test") else None)
            if ip is None:
                reply.header.rcode = RCODE.NXDOMAIN
            elif qtype == "A":
                reply.add_answer(RR(qname, QTYPE.A, rdata=A(ip), ttl=60))
            return reply  # AAAA for a known name: no records, no error

    quiet = DNSLogger("-request,-reply,-truncated,-error", logf=lambda *args: None)
    return DNSServer(Resolver(), address="127.0.0.1", port=0, logger=quiet)


@dataclass
class DnsPeer:
    """A running DNS server: ``nameserver`` is its ``ip:port``, ``queries`` what it was asked."""

    server: Any

    @property
    def port(self) -> int:
        return int(self.server.server.server_address[1])

    @property
    def nameserver(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def queries(self) -> list[tuple[str, str]]:
        return list(self.server.server.resolver.queries)


@contextmanager
def dns_server(answers: dict[str, str] | None = None) -> Iterator[DnsPeer]:
    """A UDP DNS server on 127.0.0.1:<free port> (bound before this yields, so it is ready)."""
    server = _dns_server(dict(answers or {}))
    thread = threading.Thread(
        target=server.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    try:
        yield DnsPeer(server)
    finally:
        server.server.shutdown()
        thread.join()
        server.server.server_close()


# -- SOCKS proxies: microsocks (SOCKS5) as a child process, a SOCKS4/4a server in-process ------

MICROSOCKS = shutil.which("microsocks")


@dataclass
class SocksPeer(ProxyPeer):
    """A running SOCKS proxy; ``lines`` is its log (microsocks logs each target it connects to)."""

    scheme: str = "socks5"

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    def url_with(self, user: str, password: str, scheme: str | None = None) -> str:
        return f"{scheme or self.scheme}://{user}:{password}@127.0.0.1:{self.port}"

    def with_scheme(self, scheme: str) -> str:
        return f"{scheme}://127.0.0.1:{self.port}"


async def _wait_listening(port: int, process: asyncio.subprocess.Process) -> None:
    """Until ``port`` accepts a connection: microsocks prints nothing when it is ready."""
    while True:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            if process.returncode is not None:
                raise AssertionError(f"microsocks exited with {process.returncode}") from None
            await asyncio.sleep(0.01)
            continue
        writer.close()
        await writer.wait_closed()
        return


@asynccontextmanager
async def microsocks(
    auth: tuple[str, str] | None = None, bind: str | None = None
) -> AsyncIterator[SocksPeer]:
    """microsocks (SOCKS5) on 127.0.0.1:<free port>, optionally requiring ``auth``.

    ``bind``: the loopback address its outgoing connections come from, so a test
    server can tell which proxy carried a request (``request.remote``).
    """
    _require(MICROSOCKS is not None, "microsocks", "apt-get install microsocks")
    assert MICROSOCKS is not None
    port = free_port()
    argv = [MICROSOCKS, "-i", "127.0.0.1", "-p", str(port)]
    if auth is not None:
        argv += ["-u", auth[0], "-P", auth[1]]
    if bind is not None:
        argv += ["-b", bind]
    stdbuf = shutil.which("stdbuf")  # its log is stdio: line-buffer it, or it comes at exit
    process = await asyncio.create_subprocess_exec(
        *([stdbuf, "-oL"] if stdbuf else []),
        *argv,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        start_new_session=True,
    )
    peer = SocksPeer("microsocks", process, port)
    drain = asyncio.create_task(peer._drain())
    try:
        async with asyncio.timeout(HANG_GUARD_S):
            await _wait_listening(port, process)
        yield peer
    finally:
        if process.returncode is None:
            os.killpg(process.pid, signal.SIGTERM)  # the group this function started
        await drain
        await process.wait()


@dataclass
class Socks4Peer:
    """A SOCKS4 / SOCKS4a server in this process on 127.0.0.1:``port``.

    ``asked`` holds (user id, host, port) of each CONNECT: ``host`` is an IP for
    SOCKS4, the name for SOCKS4a (``names`` maps names to addresses first).
    """

    names: dict[str, str] = field(default_factory=dict)
    port: int = 0
    asked: list[tuple[str, str, int]] = field(default_factory=list)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    def url(self, scheme: str = "socks4", user: str = "") -> str:
        return f"{scheme}://{user + '@' if user else ''}127.0.0.1:{self.port}"

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)  # cancelled and awaited when the server stops
        upstream: asyncio.StreamWriter | None = None
        try:
            head = await reader.readexactly(8)
            port, ip = int.from_bytes(head[2:4], "big"), socket.inet_ntoa(head[4:8])
            user = (await reader.readuntil(b"\0"))[:-1].decode()
            host = ip
            if head[4:7] == b"\0\0\0" and head[7]:  # SOCKS4a: 0.0.0.x, then the name
                host = (await reader.readuntil(b"\0"))[:-1].decode()
            self.asked.append((user, host, port))
            try:
                up_reader, upstream = await asyncio.open_connection(
                    self.names.get(host, host), port
                )
            except OSError:
                writer.write(b"\x00\x5b" + bytes(6))  # request rejected or failed
                await writer.drain()
                return
            writer.write(b"\x00\x5a" + bytes(6))  # granted
            await writer.drain()
            await asyncio.gather(_pipe(reader, upstream), _pipe(up_reader, writer))
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            for end in (upstream, writer):
                if end is not None:
                    end.close()
                    with suppress(OSError):
                        await end.wait_closed()
            self._tasks.discard(task)


async def _pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
    try:
        while data := await source.read(65536):
            sink.write(data)
            await sink.drain()
    except OSError:
        pass
    finally:
        if sink.can_write_eof() and not sink.is_closing():
            with suppress(OSError):
                sink.write_eof()


@asynccontextmanager
async def socks4_server(names: dict[str, str] | None = None) -> AsyncIterator[Socks4Peer]:
    """A :class:`Socks4Peer` listening until the block ends (its connections are closed)."""
    peer = Socks4Peer(dict(names or {}))
    server = await asyncio.start_server(peer.serve, "127.0.0.1", 0)
    peer.port = server.sockets[0].getsockname()[1]
    try:
        yield peer
    finally:
        server.close()
        for task in list(peer._tasks):
            task.cancel()
        await asyncio.gather(*peer._tasks, return_exceptions=True)
        await server.wait_closed()
