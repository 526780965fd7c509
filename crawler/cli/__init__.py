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

import click

from .bench import bench_command
from .fetch import fetch_command
from .jobs import jobs_group, scheduler_command
from .listing import list_command
from .new import new_group
from .parse import parse_command
from .run import run_command
from .shell import shell_command
from .status import status_command

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


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
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


main.add_command(run_command)
main.add_command(list_command)
main.add_command(jobs_group)
main.add_command(scheduler_command)
main.add_command(status_command)
main.add_command(fetch_command)
main.add_command(shell_command)
main.add_command(parse_command)
main.add_command(bench_command)
main.add_command(new_group)
