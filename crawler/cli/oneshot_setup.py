"""What ``crawl fetch``, ``shell`` and ``parse`` share: options, settings, spider, errors.

The settings are built as ``crawl run`` builds them (defaults < ``[tool.crawler]`` <
the spider's ``settings`` < ``-s``), with no progress lines and a quiet log, and
every bad input ends the command with a one-line error and its exit code.
"""

from __future__ import annotations

import asyncio
import re
import sys
import traceback
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click

from ..errors import ConfigError, InvalidRequest, SettingsError, SpiderLoadError
from ..loops import run as run_loop
from ..request import Request
from ..settings import Settings
from ..spider import Spider
from .loader import load_spider_class
from .logs import setup_logging
from .oneshot import Fetched
from .project import load_project

__all__ = [
    "Setup",
    "exit_with",
    "fetch_failure",
    "load_setup",
    "oneshot_options",
    "run_crawl",
    "to_request",
    "user_traceback",
]

_F = TypeVar("_F", bound=Callable[..., Any])
_T = TypeVar("_T")

# Not printed by --headers: header names that carry credentials (Authorization, Cookie,
# X-Api-Key, X-Auth-Token, X-CSRF-Token, Set-Cookie, X-Session-Id, X-Signature...).
SECRET_HEADERS = re.compile(r"auth|cookie|token|key|secret|session|signature|csrf|pass", re.I)


def oneshot_options(spider_required: bool = False) -> Callable[[_F], _F]:
    """The options every one-page command has: --spider, -s, --no-robots, -L."""

    def decorate(command: _F) -> _F:
        for option in reversed(
            [
                click.option(
                    "--spider",
                    "spider_target",
                    required=spider_required,
                    metavar="TARGET",
                    help="Use this spider's settings, headers and cookies: a spider name,"
                    " module:Class or path/to/file.py (as for `crawl run`).",
                ),
                click.option(
                    "-s",
                    "set_settings",
                    multiple=True,
                    metavar="NAME=VALUE",
                    help="Override a setting.",
                ),
                click.option("--no-robots", is_flag=True, help="Do not fetch or obey robots.txt."),
                click.option(
                    "-L",
                    "--log-level",
                    default="CRITICAL",
                    show_default=True,
                    help="Show the crawl's log at this level on stderr (e.g. INFO).",
                ),
            ]
        ):
            command = option(command)
        return command

    return decorate


@dataclass(frozen=True, slots=True)
class Setup:
    """The settings and (optional) spider instance a one-page command runs with."""

    settings: Settings
    spider: Spider | None


def exit_with(code_name: str, message: str) -> NoReturn:
    """Print ``error: message`` on stderr and exit with the named code of ``crawler.cli``."""
    import crawler.cli  # here: crawler.cli imports this module while it loads

    click.echo(f"error: {message}", err=True)
    sys.exit(getattr(crawler.cli, code_name))


def pairs(values: tuple[str, ...], option: str) -> dict[str, str]:
    """``NAME=VALUE`` strings as a dict; anything else is a usage error (exit 2)."""
    result = {}
    for value in values:
        name, sep, item = value.partition("=")
        if not sep or not name.strip():
            exit_with("EXIT_CONFIG", f"{option} expects NAME=VALUE, got {value!r}")
        result[name.strip()] = item
    return result


def load_setup(
    spider_target: str | None,
    set_settings: tuple[str, ...],
    no_robots: bool,
    log_level: str,
    arguments: tuple[str, ...] = (),
) -> Setup:
    """Settings and spider for a one-page command (exit 2 or 3 with a one-line error)."""
    cli_settings: dict[str, Any] = pairs(set_settings, "-s")
    if no_robots:
        cli_settings["ROBOTSTXT_OBEY"] = "false"
    spider_args = pairs(arguments, "-a")
    quiet = {"PROGRESS_INTERVAL": 0, "LOG_LEVEL": log_level.upper()}
    try:
        setup_logging(Settings().merged({"LOG_LEVEL": log_level.upper()}, "-L").LOG_LEVEL)
        project = load_project()
        layers: list[tuple[str, Any]] = [(project.source, project.settings)]
        spider_cls: type[Spider] | None = None
        if spider_target:
            spider_cls = load_spider_class(spider_target, project.spider_modules, project.root)
            layers.append((f"{spider_cls.__name__}.settings", dict(spider_cls.settings)))
        settings = Settings.build(*layers, ("this command", quiet), ("-s", cli_settings))
        spider = None
        if spider_cls is not None:
            try:
                spider = spider_cls(**spider_args)
            except Exception as exc:
                raise SpiderLoadError(f"cannot create spider {spider_cls.__name__}: {exc}") from exc
    except SpiderLoadError as exc:
        exit_with("EXIT_SPIDER", str(exc))
    except (ConfigError, SettingsError) as exc:
        exit_with("EXIT_CONFIG", str(exc))
    return Setup(settings, spider)


def run_crawl(coro: Coroutine[Any, Any, _T], loop: str = "auto") -> _T:
    """``asyncio.run(coro)`` on the ``LOOP`` event loop; a configuration the crawl refuses exits
    2 with its reason, and an exception from the spider's own code (its ``open()``...) exits
    10 with its traceback."""
    try:
        return run_loop(coro, loop)
    except ConfigError as exc:
        exit_with("EXIT_CONFIG", str(exc))
    except Exception as exc:
        shown = user_traceback(exc)
        if not shown:
            raise  # our own bug: the full traceback, exit 1
        # The spider's own code (open(), close(), start requests...) raised: its frames only.
        click.echo(shown, err=True)
        exit_with("EXIT_USER_CODE", f"the spider raised {type(exc).__name__}: {exc}")


def to_request(url: str, **kwargs: Any) -> Request:
    """A Request for a URL typed on the command line (exit 2 with the reason if bad)."""
    if "://" not in url and not url.startswith("//"):
        url = "http://" + url  # `crawl fetch example.com` means what curl means
    try:
        return Request(url, **kwargs)
    except InvalidRequest as exc:
        exit_with("EXIT_CONFIG", f"{exc}; give an absolute http(s) URL")


def fetch_failure(fetched: Fetched) -> str:
    """One line naming the URL and why it has no response."""
    url = fetched.request.url
    if fetched.error is not None:
        return f"cannot fetch {url}: {fetched.error}"
    return f"cannot fetch {url}: {fetched.not_fetched}"


_OURS = (str(Path(__file__).resolve().parent.parent), str(Path(asyncio.__file__).parent))


def user_traceback(exc: BaseException) -> str:
    """The traceback of ``exc`` with our own and asyncio's frames left out: the user's code."""
    tb = traceback.TracebackException.from_exception(exc)
    frames = [f for f in tb.stack if not f.filename.startswith(_OURS)]
    if not frames:
        return ""
    lines = ["Traceback (most recent call last):\n"]
    lines.extend(traceback.StackSummary.from_list(frames).format())
    return "".join(lines).rstrip()
