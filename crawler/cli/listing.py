"""``crawl list``: the spiders this project can run, and where they come from."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from ..errors import ConfigError
from .loader import discover_spiders
from .project import load_project

__all__ = ["list_command"]


@click.command("list")
def list_command() -> None:
    """List spider names, their classes and the files they come from.

    \b
    Example:
      crawl list      # built-in spiders and those in [tool.crawler] spider_modules
    """
    from . import EXIT_CONFIG, EXIT_SPIDER

    try:
        project = load_project()
        refs = discover_spiders(project.spider_modules, project.root)
    except ConfigError as exc:
        click.echo(f"error: {exc}", err=True)
        code = EXIT_SPIDER if type(exc).__name__ == "SpiderLoadError" else EXIT_CONFIG
        sys.exit(code)
    cwd = Path.cwd()
    for ref in sorted(refs, key=lambda r: r.name):
        where = _shown_path(ref.path, cwd)
        kind = "built-in" if ref.origin.startswith("built-in") else "project"
        click.echo(f"{ref.name}\t{ref.cls.__qualname__}\t{where}\t{kind}")


def _shown_path(path: str, cwd: Path) -> str:
    """A path relative to the working folder when it is inside it (the user's own files)."""
    try:
        return str(Path(path).resolve().relative_to(cwd.resolve()))
    except ValueError:
        return path
