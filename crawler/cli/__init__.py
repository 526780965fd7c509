"""The ``crawl`` command.

Exit codes (stable; schedulers and scripts depend on them):

====  =====================================================================
code  meaning
====  =====================================================================
0     the crawl finished (the frontier ran dry, or a stop condition such as
      MAX_PAGES, MAX_ITEMS, MAX_DURATION or MAX_ERRORS was reached)
1     an unexpected internal error (a bug: please report it)
2     usage or configuration error (bad option, unknown or bad setting)
3     the spider TARGET cannot be found, imported or created
4     a job's health check failed (``crawl jobs run``)
5     a job's crawl errors were over its ``max_error_rate``
6     the job is already running (its lock is held): not started
7     an output failed (disk full, a pipeline's flush or close raised): the crawl
      stopped, no request was marked done after its items' last checkpoint; the
      last stderr line names the output and the error. With ``--state``, free
      the space and run the same command again: it resumes and loses nothing
8     the crawl state could not be saved (3 checkpoints in a row failed): the
      crawl stopped; ``--state`` holds its last good checkpoint, resumable
9     nothing was fetched. ``crawl run``: the crawl ended without one response
      (no start requests, every start request invalid, every request failed or
      was forbidden by robots.txt); the last stderr line says which.
      ``crawl fetch``/``shell``/``parse``: the page could not be fetched (network
      error, timeout, robots.txt disallows it...); stderr says which URL and why.
      An HTTP error status is a response, not a failure: it is shown, exit 0
10    ``crawl parse``: the spider's callback raised (its traceback is on stderr);
      ``crawl shell -c``: the expression raised
11    the shared crawl's state was lost (``--frontier``: Redis restarted without its
      data, was flushed, or failed over to an empty replica): every worker stopped,
      none took it for the end. Restore Redis from its persistence files and run the
      same command again, or crawl anew under a new job name. A worker started later
      exits 11 at once, and ``crawl status`` exits 11 too
12    the shared frontier (Redis) stayed unreachable longer than
      ``REDIS_UNAVAILABLE_TIMEOUT``: the crawl stopped; the job's state stays in
      Redis: once it is back, run the same command again to continue
130   interrupted (SIGINT/SIGTERM): pipelines were flushed, stats printed
====  =====================================================================
"""

from __future__ import annotations

from collections.abc import Iterator, MutableMapping
from importlib import import_module
from typing import Any

import click

__all__ = [
    "EXIT_CONFIG",
    "EXIT_INTERNAL",
    "EXIT_INTERRUPTED",
    "EXIT_NOTHING_FETCHED",
    "EXIT_OK",
    "EXIT_OUTPUT",
    "EXIT_SPIDER",
    "EXIT_STATE",
    "EXIT_STATE_LOST",
    "EXIT_UNAVAILABLE",
    "EXIT_USER_CODE",
    "main",
]

EXIT_OK = 0
EXIT_INTERNAL = 1
EXIT_CONFIG = 2
EXIT_SPIDER = 3
EXIT_OUTPUT = 7
EXIT_STATE = 8
EXIT_NOTHING_FETCHED = 9
EXIT_USER_CODE = 10
EXIT_STATE_LOST = 11
EXIT_UNAVAILABLE = 12
EXIT_INTERRUPTED = 130


# Each command: (module, attribute, the first paragraph of its help). A command's module is
# imported only when that command runs (or its own --help is asked for): `crawl --help` lists
# them all from the help stored here, without importing aiohttp, the engine or the jobs.
# tests/test_startup.py checks this help is the command's own.
COMMANDS: dict[str, tuple[str, str, str]] = {
    "run": (
        ".run",
        "run_command",
        "Run the spider TARGET: a spider name, a module:Class, or a path to a .py file.",
    ),
    "list": (
        ".listing",
        "list_command",
        "List spider names, their classes and the files they come from.",
    ),
    "jobs": (
        ".jobs",
        "jobs_group",
        "Declared crawl jobs: list them, run one now, show its run history.",
    ),
    "scheduler": (
        ".jobs",
        "scheduler_command",
        "Run jobs when they are due until SIGTERM (only NAMES if given).",
    ),
    "status": (
        ".status",
        "status_command",
        "Show a shared crawl's progress: queued, in flight, done, failed, workers, pages/s.",
    ),
    "fetch": (
        ".fetch",
        "fetch_command",
        "Fetch URL with the project's settings and print the body (bytes as they came).",
    ),
    "shell": (
        ".shell",
        "shell_command",
        "Open an interactive shell on URL (fetched as the crawl would) or a local .html FILE.",
    ),
    "parse": (
        ".parse",
        "parse_command",
        "Run a spider's callback on URL and print the items and requests it produced.",
    ),
    "bench": (
        ".bench",
        "bench_command",
        "Benchmark the crawler on this machine against a generated local site.",
    ),
    "new": (".new", "new_group", "Create a spider or a whole project from a template."),
}


class _Pending(click.Command):
    """Stands for a command whose module is not imported yet (its help is for listings)."""


class LazyCommands(MutableMapping[str, click.Command]):
    """``main.commands``: every command's name at once, a command's module on first access.

    ``commands[name]``, ``.get()``, ``.items()``, ``.values()`` import the command;
    ``name in commands``, iterating the names and :meth:`listed` import nothing.
    """

    def __init__(self) -> None:
        self._commands: dict[str, click.Command] = {
            name: _Pending(name, help=help) for name, (_, _, help) in COMMANDS.items()
        }

    def listed(self, name: str) -> click.Command:
        """The command as it is now: enough for its line in ``crawl --help``."""
        return self._commands[name]

    def __getitem__(self, name: str) -> click.Command:
        command = self._commands[name]
        if isinstance(command, _Pending):
            module, attribute, _ = COMMANDS[name]
            command = getattr(import_module(module, __name__), attribute)
            self._commands[name] = command
        return command

    def __setitem__(self, name: str, command: click.Command) -> None:
        self._commands[name] = command

    def __delitem__(self, name: str) -> None:
        del self._commands[name]

    def __contains__(self, name: object) -> bool:
        return name in self._commands

    def __iter__(self) -> Iterator[str]:
        return iter(self._commands)

    def __len__(self) -> int:
        return len(self._commands)


class LazyGroup(click.Group):
    """A group whose commands are imported on first use (``COMMANDS``)."""

    commands: LazyCommands

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.commands = LazyCommands()

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # As click's, but each line from the command as it is: listing imports nothing.
        commands = [(name, self.commands.listed(name)) for name in self.list_commands(ctx)]
        commands = [(name, command) for name, command in commands if not command.hidden]
        if commands:
            limit = formatter.width - 6 - max(len(name) for name, _ in commands)
            rows = [(name, command.get_short_help_str(limit)) for name, command in commands]
            with formatter.section("Commands"):
                formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="crawler")
def main() -> None:
    """crawler: run spiders and crawl jobs.

    \b
    Examples:
      crawl new project books books.toscrape.com   # a project that crawls and tests green
      crawl fetch https://books.toscrape.com/      # one page, as the crawl would fetch it
      crawl shell https://books.toscrape.com/      # try selectors interactively
      crawl run books --cache -o books.jsonl       # crawl; reruns come from the cache
    """
