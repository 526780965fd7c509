"""``crawl status --frontier URL --job NAME``: the progress of a crawl shared through Redis."""

from __future__ import annotations

import asyncio
import dataclasses
import sys

import click
import orjson

from ..errors import ConfigError
from ..frontier.redis import ClusterStatus, read_status, safe_url, state_lost

__all__ = ["status_command"]


@click.command("status")
@click.option(
    "--frontier",
    "frontier_url",
    required=True,
    metavar="URL",
    help="The shared frontier the workers use: redis://host:6379/0 (FRONTIER_URL).",
)
@click.option("--job", required=True, help="Name of the shared crawl (JOB).")
@click.option(
    "--sample",
    default=1.0,
    show_default=True,
    type=click.FloatRange(min=0),
    help="Seconds to watch for the current pages/s (0: only the average).",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead.")
def status_command(frontier_url: str, job: str, sample: float, as_json: bool) -> None:
    """Show a shared crawl's progress: queued, in flight, done, failed, workers, pages/s.

    A job whose state Redis lost while its workers ran shows as "lost" (exit 11).

    \b
    Example:
      crawl status --frontier redis://127.0.0.1:6379/0 --job books --json
    """
    from . import EXIT_CONFIG, EXIT_STATE_LOST

    try:
        first, last = asyncio.run(_sample(frontier_url, job, sample))
    except ConfigError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_CONFIG)
    if last.state == "not started" and not (last.done or last.queued or last.workers_alive):
        click.echo(f"error: no crawl named {job!r} in {safe_url(frontier_url)}", err=True)
        sys.exit(EXIT_CONFIG)
    finished = last.done + last.failed
    elapsed = last.server_time - last.started_at if last.started_at else 0.0
    average = finished / elapsed if elapsed > 0 else 0.0
    now = None
    if last is not first and last.server_time > first.server_time:
        now = (finished - first.done - first.failed) / (last.server_time - first.server_time)
    if as_json:
        doc = dataclasses.asdict(last) | {"pages_per_s": now, "pages_per_s_average": average}
        click.echo(orjson.dumps(doc).decode())
    else:
        click.echo(_render(last, frontier_url, elapsed, average, now, sample))
    if last.state == "lost":  # the workers' verdict, and the same exit code
        where = f"job {job!r} in Redis {safe_url(frontier_url)}"
        click.echo(
            f"error: {state_lost(f'{where} lost its state while its workers ran')}", err=True
        )
        sys.exit(EXIT_STATE_LOST)


async def _sample(url: str, job: str, sample_s: float) -> tuple[ClusterStatus, ClusterStatus]:
    first = await read_status(url, job)
    if not sample_s or first.state != "running":
        return first, first
    await asyncio.sleep(sample_s)
    return first, await read_status(url, job)


def _render(
    status: ClusterStatus,
    url: str,
    elapsed: float,
    average: float,
    now: float | None,
    sample_s: float,
) -> str:
    stats = status.stats
    errors = sum(v for k, v in stats.items() if k.startswith("failures/"))
    errors += stats.get("callback_errors", 0) + stats.get("internal_errors", 0)
    started = f", started {_duration(elapsed)} ago" if status.started_at else ""
    rate = f"{average:.1f} average"
    if now is not None:
        rate = f"{now:.1f} now (over {sample_s:g} s), " + rate
    lines = [
        ("job", f"{status.job}  ({safe_url(url)})"),
        ("state", status.state + started),
        ("queued", f"{status.queued}  ({status.delayed} of them retries waiting)"),
        ("in flight", f"{status.in_flight}  (+{status.unflushed} handled, not yet flushed)"),
        ("done", str(status.done)),
        ("failed", str(status.failed)),
        ("reclaimed", f"{status.reclaimed}  (leases of dead workers re-delivered)"),
        ("workers", f"{len(status.workers_alive)} alive, {len(status.workers_gone)} gone"),
        (
            "pages",
            f"{stats.get('pages', 0)}  items {stats.get('items', 0)}  errors {errors}",
        ),
        ("pages/s", rate),
    ]
    lines += [("", name) for name in status.workers_alive]
    return "\n".join(f"{label:<10} {value}" for label, value in lines)


def _duration(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s"
