"""The user's project configuration: ``[tool.crawler]`` in the nearest pyproject.toml."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..settings import Settings

__all__ = ["ProjectConfig", "load_project"]

_PROJECT_KEYS = {"spider_modules", "jobs"}


@dataclass(frozen=True, slots=True)
class ProjectConfig:
    """What ``[tool.crawler]`` says: settings, where spiders live, jobs."""

    root: Path
    settings: dict[str, Any] = field(default_factory=dict)
    spider_modules: tuple[str, ...] = ()
    jobs: dict[str, Any] = field(default_factory=dict)
    source: str = "defaults"


def find_pyproject(start: Path) -> Path | None:
    """The nearest pyproject.toml at or above ``start``."""
    for folder in (start, *start.parents):
        candidate = folder / "pyproject.toml"
        if candidate.is_file():
            return candidate
    return None


def load_project(start: Path | None = None) -> ProjectConfig:
    """Read ``[tool.crawler]``; settings are validated here, before any crawl."""
    start = (start or Path.cwd()).resolve()
    path = find_pyproject(start)
    if path is None:
        return ProjectConfig(root=start)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from None
    section = data.get("tool", {}).get("crawler", {})
    if not isinstance(section, dict):
        raise ConfigError(f"[tool.crawler] in {path} must be a table")
    settings = {k: v for k, v in section.items() if k not in _PROJECT_KEYS}
    source = f"[tool.crawler] in {path}"
    Settings().merged(settings, source=source)  # fail early with the file named
    modules = section.get("spider_modules", [])
    if isinstance(modules, str):
        modules = [modules]
    if not isinstance(modules, list) or not all(isinstance(m, str) for m in modules):
        raise ConfigError(f"spider_modules in {path} must be a list of module names or paths")
    jobs = section.get("jobs", {})
    return ProjectConfig(
        root=path.parent,
        settings=settings,
        spider_modules=tuple(modules),
        jobs=jobs if isinstance(jobs, dict) else {},
        source=source,
    )
