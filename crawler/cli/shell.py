"""``crawl shell [URL|FILE]``: try selectors on a page interactively.

The shell is synchronous (IPython, ptpython or the standard REPL), the crawl is
not: fetches run on an event loop in a background thread (:class:`LoopThread`),
so ``fetch()`` works the same from every REPL, IPython's own loop included.
"""

from __future__ import annotations

import asyncio
import code
import os
import re
import tempfile
import threading
import webbrowser
from collections.abc import Callable, Coroutine
from concurrent.futures import Future
from pathlib import Path
from typing import Any, TypeVar

import click

from ..errors import ConfigError
from ..loops import loop_factory
from ..request import Request
from ..response import Response
from ..settings import Settings
from ..spider import Spider
from ..testing.callbacks import make_response
from .oneshot import OneShot
from .oneshot_setup import (
    exit_with,
    fetch_failure,
    load_setup,
    oneshot_options,
    to_request,
    user_traceback,
)

__all__ = ["LoopThread", "ShellSession", "shell_command"]

_T = TypeVar("_T")

# Set (to anything) to make view() print the file's path instead of opening a browser.
NO_BROWSER_ENV = "CRAWLER_NO_BROWSER"

_HEAD = re.compile(rb"<head[^>]*>", re.IGNORECASE)


class LoopThread:
    """An asyncio event loop in a daemon thread; :meth:`run` blocks for one coroutine."""

    def __init__(self, loop: str = "auto") -> None:
        self._loop = loop_factory(loop)[0]()  # the LOOP setting: auto, asyncio or uvloop
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, _T]) -> _T:
        """Run ``coro`` on the loop and wait for its result (its exception is raised here)."""
        future: Future[_T] = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            return future.result()
        except BaseException:  # Ctrl-C in the REPL: stop that crawl too, not only the wait
            future.cancel()
            raise

    def close(self) -> None:
        """Stop the loop, wait for the thread, close the loop."""
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.run_until_complete(self._loop.shutdown_asyncgens())
        self._loop.run_until_complete(self._loop.shutdown_default_executor())  # to_thread()s
        self._loop.close()


class ShellSession:
    """The shell's state: the current ``response``/``request`` and how to fetch another.

    ``namespace`` is the dict the REPL runs in; :meth:`fetch` rebinds its
    ``response`` and ``request``. ``opener`` opens a file URL (``webbrowser.open``).
    """

    def __init__(
        self,
        settings: Settings,
        spider: Spider | None,
        loop: LoopThread,
        opener: Callable[[str], Any] = webbrowser.open,
    ) -> None:
        self.oneshot = OneShot(settings, spider)
        self.loop = loop
        self.opener = opener
        self.namespace: dict[str, Any] = {
            "response": None,
            "request": None,
            "spider": spider,
            "settings": settings,
            "fetch": self.fetch,
            "view": self.view,
            "Request": Request,
            "shelp": self.help,
        }

    def fetch(self, url_or_request: str | Request) -> Response | None:
        """Fetch a URL (relative to the current page, too) or a Request; rebind ``response``."""
        if isinstance(url_or_request, Request):
            request = url_or_request
        else:
            current = self.namespace.get("response")
            url = url_or_request
            if current is not None and "://" not in url:
                url = current.urljoin(url)
            request = Request(url)
        fetched = self.loop.run(self.oneshot.fetch(request))
        if fetched.response is None:
            click.echo(f"error: {fetch_failure(fetched)}", err=True)
            return None
        self.show(fetched.response)
        return fetched.response

    def show(self, response: Response) -> None:
        """Make ``response`` (and its request) the current page."""
        self.namespace["response"] = response
        self.namespace["request"] = response.request

    def view(self, response: Response | None = None) -> str:
        """Open the response (default: the current one) in a browser; returns the file's path.

        A ``<base href>`` is added so the page's relative links and images resolve.
        """
        response = response if response is not None else self.namespace["response"]
        if response is None:
            raise ValueError("no response to view: fetch(url) first")
        body = response.body
        if b"<base" not in body[:4096].lower():
            base = f'<base href="{response.url}">'.encode()
            head = _HEAD.search(body)
            body = body[: head.end()] + base + body[head.end() :] if head else base + body
        with tempfile.NamedTemporaryFile(
            "wb", prefix="crawl-view-", suffix=".html", delete=False
        ) as file:
            file.write(body)
        path = file.name
        if os.environ.get(NO_BROWSER_ENV):
            click.echo(path)
        else:
            self.opener(Path(path).as_uri())
        return path

    def help(self) -> None:
        """Print what the shell offers."""
        click.echo(BANNER)


BANNER = """\
Available: response, request, spider, settings, Request
  fetch(url_or_request)  fetch another page (relative URLs too); rebinds response, request
  view(response)         open a response in your browser
  shelp()                this help
e.g. response.css_first("title").text(), response.follow_all()"""


def _page_from_file(path: Path, url: str | None) -> Response:
    """A response built from a local file (no network); links resolve against ``url``."""
    page_url = url or f"http://localhost/{path.name}"
    return make_response(to_request(page_url).url, path.read_bytes())


def _evaluate(source: str, namespace: dict[str, Any]) -> None:
    """Run ``-c``: print an expression's value (str as is, else repr), or run statements."""
    try:
        compiled = compile(source, "<-c>", "eval")
    except SyntaxError:
        exec(compile(source, "<-c>", "exec"), namespace)
        return
    value = eval(compiled, namespace)
    if value is not None:
        click.echo(value if isinstance(value, str) else repr(value))


def _interact(namespace: dict[str, Any], repl: str) -> None:
    """Start IPython, ptpython or the standard REPL on ``namespace``."""
    if repl in ("auto", "ipython"):
        try:
            from IPython import start_ipython
        except ImportError:
            if repl == "ipython":
                exit_with("EXIT_CONFIG", "IPython is not installed: pip install 'crawler[shell]'")
        else:
            click.echo(BANNER)
            start_ipython(argv=[], user_ns=namespace, display_banner=False)
            return
    if repl in ("auto", "ptpython"):
        try:
            from ptpython.repl import embed
        except ImportError:
            if repl == "ptpython":
                exit_with("EXIT_CONFIG", "ptpython is not installed: pip install ptpython")
        else:
            click.echo(BANNER)
            embed(globals=namespace, locals=namespace)
            return
    code.interact(banner=BANNER, local=namespace, exitmsg="")


@click.command("shell")
@click.argument("target", required=False, metavar="[URL|FILE]")
@click.option(
    "-c", "command", metavar="CODE", help="Run CODE, print its value (repr if not a str), exit."
)
@click.option(
    "--url",
    "page_url",
    metavar="URL",
    help="With a FILE: the URL its links resolve against (default http://localhost/FILE).",
)
@click.option(
    "--repl",
    type=click.Choice(["auto", "ipython", "ptpython", "python"]),
    default="auto",
    show_default=True,
    help="Which REPL: auto picks IPython, then ptpython, then Python's own.",
)
@oneshot_options()
def shell_command(
    target: str | None,
    command: str | None,
    page_url: str | None,
    repl: str,
    spider_target: str | None,
    set_settings: tuple[str, ...],
    no_robots: bool,
    log_level: str,
) -> None:
    """Open an interactive shell on URL (fetched as the crawl would) or a local .html FILE.

    In the shell: response, request, spider, settings; fetch(url) loads another
    page, view(response) opens one in a browser (set CRAWLER_NO_BROWSER=1 to only
    print its file). IPython or ptpython is used when installed (pip install
    'crawler[shell]').

    \b
    Examples:
      crawl shell https://books.toscrape.com/
      crawl shell page.html --url https://shop.test/cat/
      crawl shell https://shop.test/ --spider shop -c 'response.css_first("title").text()'
    """
    from . import EXIT_NOTHING_FETCHED, EXIT_USER_CODE

    setup = load_setup(spider_target, set_settings, no_robots, log_level)
    try:
        loop = LoopThread(setup.settings.LOOP)
    except ConfigError as exc:
        exit_with("EXIT_CONFIG", str(exc))
    try:
        session = ShellSession(setup.settings, setup.spider, loop)
        if target is not None:
            path = Path(target)
            if "://" not in target and path.is_file():
                session.show(_page_from_file(path, page_url))
            elif path.suffix.lower() in (".html", ".htm") and "://" not in target:
                exit_with("EXIT_CONFIG", f"file {target!r} does not exist")
            else:
                try:
                    fetched = session.fetch(to_request(target))
                except ConfigError as exc:
                    exit_with("EXIT_CONFIG", str(exc))
                if fetched is None and command is not None:
                    raise SystemExit(EXIT_NOTHING_FETCHED)
        if command is None:
            _interact(session.namespace, repl)
            return
        try:
            _evaluate(command, session.namespace)
        except Exception as exc:
            click.echo(f"error: -c raised {type(exc).__name__}: {exc}", err=True)
            click.echo(user_traceback(exc), err=True)
            raise SystemExit(EXIT_USER_CODE) from None
    finally:
        loop.close()
