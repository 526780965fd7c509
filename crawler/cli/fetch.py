"""``crawl fetch URL``: fetch one page the way the crawl would and print it."""

from __future__ import annotations

import re
import sys

import click

from ..response import Response
from .oneshot import Fetched, OneShot
from .oneshot_setup import (
    SECRET_HEADERS,
    exit_with,
    fetch_failure,
    load_setup,
    oneshot_options,
    run_crawl,
    to_request,
)

__all__ = ["fetch_command", "format_headers"]


@click.command("fetch")
@click.argument("url")
@click.option(
    "--headers",
    "show_headers",
    is_flag=True,
    help="Print the request and response headers of every hop of the redirect chain"
    " instead of the body (credentials such as Authorization, Cookie, X-Api-Key are masked).",
)
@oneshot_options()
def fetch_command(
    url: str,
    show_headers: bool,
    spider_target: str | None,
    set_settings: tuple[str, ...],
    no_robots: bool,
    log_level: str,
) -> None:
    """Fetch URL with the project's settings and print the body (bytes as they came).

    Everything a crawl does applies: robots.txt, retries, redirects, proxies,
    cookies, headers, the private-network guard. Any HTTP status is printed (a
    404 too); a page that cannot be fetched prints one error line and exits 9.

    \b
    Examples:
      crawl fetch https://books.toscrape.com/ > page.html
      crawl fetch https://shop.test/p/1 --spider shop --headers
      crawl fetch http://localhost:8000/ --no-robots -s RETRY_TIMES=0
    """
    setup = load_setup(spider_target, set_settings, no_robots, log_level)
    request = to_request(url)
    fetched = run_crawl(OneShot(setup.settings, setup.spider).fetch(request), setup.settings.LOOP)
    response = fetched.response
    if response is None:
        exit_with("EXIT_NOTHING_FETCHED", fetch_failure(fetched))
    if show_headers:
        click.echo(format_headers(fetched, response), nl=False)
    else:
        sys.stdout.flush()
        sys.stdout.buffer.write(response.body)
        sys.stdout.buffer.flush()


def format_headers(fetched: Fetched, response: Response) -> str:
    """Each hop as ``> request line/headers`` then ``< status/headers`` (curl -v style)."""
    lines: list[str] = []
    hops = [(hop.url, hop.status, hop.headers) for hop in response.history]
    hops.append((response.url, response.status, response.headers))
    for url, status, headers in hops:
        sent = fetched.sent_for(url)
        if sent is not None:
            lines.append(f"> {sent.method} {url}")
            lines.extend(
                f"> {name}: {_masked(name, value)}" for name, value in sent.headers.items()
            )
        else:  # answered without a request (e.g. from a cache)
            lines.append(f"> {fetched.request.method} {url}")
        lines.append(f"< {status}")
        lines.extend(f"< {name}: {_masked(name, value)}" for name, value in headers.items())
        lines.append("")
    if response.history:
        lines.append("redirects: " + " -> ".join(response.redirect_urls))
    return "\n".join(lines) + "\n"


def _masked(name: str, value: str) -> str:
    """A header value fit for a terminal: a credential's is masked, and control characters
    (a server's escape sequences) are shown escaped, never sent to the terminal."""
    if SECRET_HEADERS.search(name):
        return "<masked>"
    return _CONTROL.sub(lambda m: repr(m.group())[1:-1], value)


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
