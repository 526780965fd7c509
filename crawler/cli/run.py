"""``crawl run TARGET``: run one spider with outputs, arguments and settings."""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path
from typing import Any

import click
import orjson

from ..engine import Crawler, CrawlResult
from ..errors import ConfigError, OutputError, SettingsError, SpiderLoadError
from ..frontier.base import FrontierFailed
from ..loglines import get_logger
from ..loops import run as run_loop
from ..progress import LiveProgress, LogProgress, ProgressView
from ..settings import Settings
from ..spider import Spider
from ..summary import counter_parts, render_plain, render_rich, summary_rows
from ..supervisor import CHECKPOINT_FAILED, FRONTIER_UNAVAILABLE, OUTPUT_FAILED, STATE_LOST, Failure
from .loader import load_spider_class
from .logs import setup_logging, stderr_console
from .project import load_project

__all__ = ["run_command"]

logger = get_logger("crawler.cli")


def _pairs(values: tuple[str, ...], option: str) -> dict[str, str]:
    result = {}
    for value in values:
        name, sep, item = value.partition("=")
        if not sep or not name.strip():
            raise click.UsageError(f"{option} expects NAME=VALUE, got {value!r}")
        result[name.strip()] = item
    return result


@click.command("run")
@click.argument("target")
@click.option(
    "-o",
    "--output",
    "outputs",
    multiple=True,
    metavar="FILE",
    help="Append items to FILE (.jsonl/.jl, .csv, .json, .db/.sqlite; - = stdout).",
)
@click.option(
    "-O",
    "--overwrite-output",
    "overwrites",
    multiple=True,
    metavar="FILE",
    help="Write items to FILE, replacing it.",
)
@click.option(
    "-a",
    "arguments",
    multiple=True,
    metavar="NAME=VALUE",
    help="Spider argument (becomes a spider attribute).",
)
@click.option("-s", "set_settings", multiple=True, metavar="NAME=VALUE", help="Override a setting.")
@click.option("-L", "--log-level", default=None, help="DEBUG, INFO, WARNING, ERROR.")
@click.option(
    "--stats",
    "stats_file",
    type=click.Path(dir_okay=False),
    default=None,
    help="Write the final stats as JSON to this file.",
)
@click.option(
    "--state",
    "state_dir",
    type=click.Path(file_okay=False),
    default=None,
    help="Keep the crawl's state in this folder; run again to resume (= -s STATE_DIR).",
)
@click.option("--restart", is_flag=True, help="With --state: forget the saved state, start over.")
@click.option(
    "--frontier",
    "frontier_url",
    default=None,
    metavar="URL",
    help="Share the frontier with other processes: redis://host:6379/0 (= FRONTIER_URL).",
)
@click.option("--job", default=None, help="Name of the shared crawl in --frontier (= JOB).")
@click.option(
    "--cache",
    "cache_dir",
    is_flag=False,
    flag_value="",
    default=None,
    metavar="[DIR]",
    help="Answer repeated requests from an HTTP cache in DIR (default .crawler/httpcache):"
    " rerunning an edited spider costs no network (= HTTPCACHE_ENABLED, HTTPCACHE_DIR).",
)
@click.option(
    "-q",
    "--quiet",
    is_flag=True,
    help="No progress display or progress lines (warnings still show).",
)
def run_command(
    target: str,
    outputs: tuple[str, ...],
    overwrites: tuple[str, ...],
    arguments: tuple[str, ...],
    set_settings: tuple[str, ...],
    log_level: str | None,
    stats_file: str | None,
    state_dir: str | None,
    restart: bool,
    frontier_url: str | None,
    job: str | None,
    cache_dir: str | None,
    quiet: bool,
) -> None:
    """Run the spider TARGET: a spider name, a module:Class, or a path to a .py file.

    \b
    Examples:
      crawl run examples/bookstore.py -O books.jsonl
      crawl run books -a category=poetry -s CONCURRENCY=32 -o books.csv
      crawl run books --state .crawl/books      # resumable: run again to continue
      crawl run books --cache                   # develop against cached pages
    """
    from . import (
        EXIT_CONFIG,
        EXIT_INTERNAL,
        EXIT_INTERRUPTED,
        EXIT_NOTHING_FETCHED,
        EXIT_OK,
        EXIT_OUTPUT,
        EXIT_SPIDER,
        EXIT_STATE,
        EXIT_STATE_LOST,
        EXIT_UNAVAILABLE,
    )

    failure_codes = {
        OUTPUT_FAILED: EXIT_OUTPUT,
        CHECKPOINT_FAILED: EXIT_STATE,
        STATE_LOST: EXIT_STATE_LOST,
        FRONTIER_UNAVAILABLE: EXIT_UNAVAILABLE,
    }

    cli_settings = _pairs(set_settings, "-s")
    if log_level:
        cli_settings["LOG_LEVEL"] = log_level
    for name, value in (("STATE_DIR", state_dir), ("FRONTIER_URL", frontier_url), ("JOB", job)):
        if value:
            cli_settings[name] = value
    if cache_dir is not None:
        cli_settings["HTTPCACHE_ENABLED"] = "true"
        if cache_dir:
            cli_settings["HTTPCACHE_DIR"] = cache_dir
    if restart and not cli_settings.get("STATE_DIR"):
        raise click.UsageError("--restart needs --state DIR")
    spider_args = _pairs(arguments, "-a")
    setup_logging("INFO")  # until the settings (and their LOG_LEVEL) are validated
    try:
        project = load_project()
        spider_cls = load_spider_class(target, project.spider_modules, project.root)
        settings = Settings.build(
            (project.source, project.settings),
            (f"{spider_cls.__name__}.settings", dict(spider_cls.settings)),
            ("-s", cli_settings),
        )
        setup_logging(settings.LOG_LEVEL)
        try:
            spider = spider_cls(**spider_args)
        except Exception as exc:
            raise SpiderLoadError(f"cannot create spider {spider_cls.__name__}: {exc}") from exc
        exporters = _exporters(outputs, overwrites)
    except SpiderLoadError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_SPIDER)
    except (ConfigError, SettingsError) as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_CONFIG)

    try:
        progress = progress_view(settings, quiet)
        result = run_loop(_crawl(spider, settings, exporters, restart, progress), settings.LOOP)
    except ConfigError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_CONFIG)
    except OutputError as exc:  # e.g. an output that cannot even be created
        click.echo(f"error: {Failure(OUTPUT_FAILED, exc).line}", err=True)
        sys.exit(EXIT_OUTPUT)
    except FrontierFailed as exc:  # e.g. a shared crawl whose state was lost: refused at once
        click.echo(f"error: {Failure(exc.reason, exc).line}", err=True)
        sys.exit(failure_codes.get(exc.reason, EXIT_INTERNAL))
    except Exception:
        logger.exception("crawl aborted by an internal error")
        sys.exit(EXIT_INTERNAL)
    print_summary(result.stats)
    if stats_file:
        Path(stats_file).write_bytes(orjson.dumps(result.stats, option=orjson.OPT_INDENT_2))
    if result.failed:
        # The last line says what failed, in one line (the log above has the details).
        click.echo(f"error: {result.stats.get('error', result.finish_reason)}", err=True)
        sys.exit(failure_codes.get(result.finish_reason, EXIT_INTERNAL))
    if result.interrupted:
        sys.exit(EXIT_INTERRUPTED)
    empty = nothing_crawled(result)
    if empty is not None:
        click.echo(f"error: nothing was crawled: {empty}", err=True)
        sys.exit(EXIT_NOTHING_FETCHED)
    sys.exit(EXIT_OK)


def print_summary(snapshot: dict[str, Any]) -> None:
    """The final summary on stderr: a table on a terminal, aligned text otherwise."""
    rows = summary_rows(snapshot)
    if sys.stderr.isatty():
        stderr_console().print(render_rich(rows))
    else:
        click.echo(render_plain(rows), err=True)


def nothing_crawled(result: CrawlResult) -> str | None:
    """Why a crawl that ended got not one response (None if it got one, or had nothing to do)."""
    stats = result.stats
    if result.finish_reason == "already_finished" or stats["pages"] > 0:
        return None
    if stats.get("seeded_here") is False:
        return None  # another process (or an earlier run) queued the start requests
    skipped = stats["start_errors"]
    if not stats["requests"]:
        if skipped:
            return (
                f"{skipped} start request(s) could not be made (see the error above);"
                " fix the start URLs or start()"
            )
        return (
            "the spider made no start requests: give it start URLs"
            " (start_urls, or -a start_urls=https://...) or yield Requests from start()"
        )
    failures = counter_parts(stats, "failures")[1]
    reasons = f" (failures: {failures})" if failures else ""
    also = f"; {skipped} start request(s) could not be made" if skipped else ""
    return f"none of {stats['requests']} request(s) got a response{reasons}{also}"


def _exporters(outputs: tuple[str, ...], overwrites: tuple[str, ...]) -> list[Any]:
    if not outputs and not overwrites:
        return []
    from crawler.pipelines import exporter_for

    return [exporter_for(path, overwrite=False) for path in outputs] + [
        exporter_for(path, overwrite=True) for path in overwrites
    ]


def progress_view(settings: Settings, quiet: bool) -> ProgressView:
    """A live panel on a terminal (about once a second), log lines elsewhere, nothing if quiet."""
    if quiet:
        return LogProgress(0.0)
    if sys.stderr.isatty() and settings.PROGRESS_INTERVAL:
        return LiveProgress(1.0, stderr_console())
    return LogProgress(settings.PROGRESS_INTERVAL)


async def _crawl(
    spider: Spider,
    settings: Settings,
    exporters: list[Any],
    restart: bool = False,
    progress: ProgressView | None = None,
) -> CrawlResult:
    crawler = Crawler(spider, settings, pipelines=exporters, restart=restart, progress=progress)
    loop = asyncio.get_running_loop()

    def on_signal(signame: str) -> None:
        logger.warning("received %s: finishing requests in flight (again to stop at once)", signame)
        crawler.request_stop("interrupted")

    installed = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, on_signal, sig.name)
            installed.append(sig)
        except (NotImplementedError, RuntimeError):
            pass
    try:
        return await crawler.run()
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)
