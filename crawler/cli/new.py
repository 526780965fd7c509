"""``crawl new spider NAME DOMAIN`` and ``crawl new project NAME [DOMAIN]``: start from a template.

Names and domains are checked first; a bad one is a one-line error (exit 2)
naming it. Nothing existing is overwritten unless ``--force`` says so (and a
project folder never is).
"""

from __future__ import annotations

import importlib.util
import ipaddress
import keyword
import re
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import IO, Any

import click
from yarl import URL

from ..errors import ConfigError
from .project import ProjectConfig, load_project
from .templates import SpiderTemplate, project_files, spider_file

__all__ = ["new_group"]

_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,63}")  # also a valid job name
_LABEL = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)")
# What may appear in a URL pasted into a Python or TOML string: no quotes, backslashes, spaces.
_URL_CHARS = re.compile(r"[A-Za-z0-9._~:/?#\[\]@!$&'()*+,;=%-]+")


class _BadInput(click.ClickException):
    """A bad name, domain or target path: one line on stderr, exit code 2."""

    exit_code = 2

    def show(self, file: IO[Any] | None = None) -> None:
        click.echo(f"error: {self.message}", err=True)


def _check_name(name: str, what: str) -> str:
    """``name`` if it can be a spider (or package) name: a Python identifier, not a keyword."""
    if not _NAME.fullmatch(name) or keyword.iskeyword(name):
        hint = re.sub(r"\W", "_", name).strip("_").lower()
        if hint and not hint[0].isalpha():
            hint = f"x_{hint}"
        if keyword.iskeyword(hint):
            hint = f"{hint}_spider"
        suggestion = f" (e.g. {hint})" if hint and _NAME.fullmatch(hint) else ""
        rule = (
            "it is a Python keyword"
            if keyword.iskeyword(name)
            else "use letters, digits and '_', starting with a letter, at most 64 characters"
        )
        raise _BadInput(f"bad {what} name {name!r}: {rule}{suggestion}")
    return name


def _shadowed(name: str) -> bool:
    """True if a top-level module ``name`` exists already (stdlib or installed)."""
    if name in sys.stdlib_module_names or name in sys.builtin_module_names:
        return True
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return True
    # A namespace package (no origin) never shadows: a regular package of that name wins.
    return spec is not None and spec.origin is not None


_IMPORTED = frozenset(("Spider", "Request", "Response"))


def _class_name(name: str) -> str:
    """``book_store`` -> ``BookStoreSpider``."""
    base = "".join(part[:1].upper() + part[1:] for part in name.split("_") if part)
    if base.endswith("Spider") and base not in _IMPORTED:
        return base
    return f"{base}Spider"  # never Spider itself (or Request...): the template imports them


def _check_host(host: str, domain: str) -> str:
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        pass
    labels = host.rstrip(".").split(".")
    if len(host) > 253 or not all(_LABEL.fullmatch(label) for label in labels):
        raise _BadInput(
            f"bad DOMAIN {domain!r}: {host!r} is not a host name"
            " (give a host name like books.example or a URL like https://books.example/catalog/)"
        )
    return host.rstrip(".")


def parse_domain(domain: str, name: str) -> SpiderTemplate:
    """A spider template for ``name`` from DOMAIN: a host name or an http(s) URL."""
    text = domain.strip()
    raw = text if "://" in text else f"https://{text}"
    try:
        url = URL(raw)
        host = url.raw_host or ""  # IDNA-encoded: what the crawl will see
    except (ValueError, TypeError):
        url, host = URL(), ""
    if url.scheme not in ("http", "https"):
        raise _BadInput(f"bad DOMAIN {domain!r}: only http and https URLs can be crawled")
    if not host:
        raise _BadInput(f"bad DOMAIN {domain!r}: no host name in it (e.g. books.example)")
    if url.user is not None or url.password is not None:
        raise _BadInput(f"bad DOMAIN {domain!r}: leave credentials out of the start URL")
    host = _check_host(host.lower(), domain)
    start = url.with_fragment(None)
    if start.raw_path == "/":  # str(URL("https://x.test")) has no "/": a start URL should
        start = start.with_path("/").with_query(start.query)
    start_url = str(start)
    if not _URL_CHARS.fullmatch(start_url):
        raise _BadInput(f"bad DOMAIN {domain!r}: the URL has characters that need escaping")
    return SpiderTemplate(name, _class_name(name), start_url, host)


def spider_folder(project: ProjectConfig) -> Path | None:
    """The first folder ``[tool.crawler] spider_modules`` names that exists, if any.

    An entry is a folder (``"spiders/"``), a file (skipped) or a dotted package name,
    looked up under the project root and ``src/`` (without importing anything).
    """
    for entry in project.spider_modules:
        if entry.endswith(".py"):
            continue
        path = Path(entry)
        candidates = [path if path.is_absolute() else project.root / path]
        if "/" not in entry and "\\" not in entry:
            parts = entry.split(".")
            candidates += [project.root.joinpath(*parts), project.root.joinpath("src", *parts)]
        for candidate in candidates:
            if candidate.is_dir():
                return candidate
    return None


def _shown(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _load_project() -> ProjectConfig:
    try:
        return load_project()
    except ConfigError as exc:
        raise _BadInput(str(exc)) from None


@click.group("new")
def new_group() -> None:
    """Create a spider or a whole project from a template.

    \b
    Examples:
      crawl new project books books.toscrape.com
      crawl new spider authors https://quotes.toscrape.com/
    """


@new_group.command("spider")
@click.argument("name")
@click.argument("domain")
@click.option("--force", is_flag=True, help="Overwrite the file if it exists.")
def new_spider(name: str, domain: str, force: bool) -> None:
    """Write spider NAME that crawls DOMAIN (a host name or a URL).

    The file goes into the project's spider folder when [tool.crawler]
    spider_modules in pyproject.toml names one, else to ./NAME.py. The spider
    starts at DOMAIN, stays on its host, and yields each page's URL and title.

    \b
    Examples:
      crawl new spider books books.toscrape.com
      crawl new spider shop https://shop.example/catalog/ --force
    """
    template = parse_domain(domain, _check_name(name, "spider"))
    folder = spider_folder(_load_project())
    if folder is None:
        path = Path.cwd() / f"{name}.py"
        if _shadowed(name) and not path.exists():
            # ./json.py or ./crawler.py would shadow that module for Python run here.
            raise _BadInput(f"bad spider name {name!r}: ./{name}.py would shadow the module {name}")
        run_target = f"{name}.py"
    else:
        path = folder / f"{name}.py"
        run_target = name
    source = spider_file(template, run_target)
    try:
        with path.open("w" if force else "x", encoding="utf-8") as file:
            file.write(source)
    except FileExistsError:
        raise _BadInput(f"{_shown(path)} exists already: add --force to overwrite it") from None
    except OSError as exc:
        raise _BadInput(f"cannot write {_shown(path)}: {exc.strerror or exc}") from None
    click.echo(f"created {_shown(path)}: spider {name!r} ({template.class_name}) for {domain}")
    click.echo(f"run it with: crawl run {run_target} -o {name}.jsonl")


@new_group.command("project")
@click.argument("name")
@click.argument("domain", required=False, default="example.com")
@click.option(
    "--spider",
    "spider_name",
    default=None,
    metavar="NAME",
    help="Name of the project's first spider (default: the project NAME).",
)
def new_project(name: str, domain: str, spider_name: str | None) -> None:
    """Write a project skeleton in ./NAME whose spider crawls DOMAIN.

    It holds pyproject.toml ([project], [tool.crawler] settings and spider_modules,
    a scheduled job under [tool.crawler.jobs]), a spider package with one spider,
    an offline test of its callback (pytest), a README and a .gitignore.
    DOMAIN defaults to example.com.

    \b
    Examples:
      crawl new project books books.toscrape.com
      cd books && python -m pytest && crawl run books --cache -o books.jsonl
    """
    _check_name(name, "project")
    if _shadowed(name):
        raise _BadInput(
            f"bad project name {name!r}: a module named {name} exists already,"
            " and the project's package would clash with it; choose another name"
        )
    template = parse_domain(domain, _check_name(spider_name or name, "spider"))
    root = Path.cwd() / name
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise _BadInput(f"{_shown(root)} exists already: choose another name or remove it")
    try:
        crawler_version = version("crawler")
    except PackageNotFoundError:
        crawler_version = "0.1"
    files = project_files(name, template, crawler_version)
    try:
        for relative, text in files.items():
            path = root / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise _BadInput(f"cannot write {_shown(root)}: {exc.strerror or exc}") from None
    click.echo(f"created {_shown(root)}/ with spider {template.name!r} for {template.start_url}")
    click.echo(
        "next:\n"
        f"  cd {_shown(root)}\n"
        "  python -m pytest        # the spider's offline tests\n"
        f"  crawl run {template.name} --cache -o {template.name}.jsonl"
        "   # crawl it; pages are cached in .crawler/"
    )
