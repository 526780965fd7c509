"""`crawl new spider` and `crawl new project`: the files, their checks, and a project end to end."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from crawler.cli import main
from crawler.cli.loader import load_spider_class
from crawler.cli.new import parse_domain, spider_folder
from crawler.cli.project import ProjectConfig
from crawler.cli.templates import project_files, spider_file
from crawler.testing import Page, SiteServer, html_page

CRAWL = [sys.executable, "-m", "crawler"]
RUFF = Path(sys.executable).with_name("ruff")
STRICT_RULES = "E,F,W,I,B,UP,ASYNC,RUF"  # this repository's selection, stricter than ruff's default


def child_env(tmp_path: Path) -> dict[str, str]:
    """An environment that cannot reach the user's config: own HOME, no user site, no proxies."""
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "XDG_CACHE_HOME": str(home / ".cache"),
        "PYTHONNOUSERSITE": "1",
        "PYTHONUNBUFFERED": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
        "LC_ALL": "C.UTF-8",
    }


async def run(*args: str, cwd: Path, env: dict[str, str]) -> tuple[int, str, str]:
    """Run a command; (exit code, stdout, stderr)."""
    proc = await asyncio.create_subprocess_exec(
        *args,
        cwd=cwd,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def new_project(tmp_path: Path, *args: str) -> tuple[Path, dict[str, str]]:
    env = child_env(tmp_path)
    code, out, err = await run(*CRAWL, "new", "project", *args, cwd=tmp_path, env=env)
    assert code == 0, err
    assert "created" in out
    return tmp_path / args[0], env


def invoke(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *args: str):  # type: ignore[no-untyped-def]
    """The `crawl` CLI in-process, in ``tmp_path`` (for quick checks of messages)."""
    monkeypatch.chdir(tmp_path)
    return CliRunner().invoke(main, list(args))


# --- a project end to end ---------------------------------------------------------------


async def test_new_project_files_and_its_own_tests_pass(tmp_path):
    root, env = await new_project(tmp_path, "shop", "shop.test")
    files = sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())
    assert files == [
        ".gitignore",
        "README.md",
        "pyproject.toml",
        "shop/__init__.py",
        "shop/spiders/__init__.py",
        "shop/spiders/shop.py",
        "tests/test_shop.py",
    ]
    readme = (root / "README.md").read_text()
    assert "crawl run shop --cache" in readme and "python -m pytest" in readme
    code, out, err = await run(
        sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", cwd=root, env=env
    )
    assert code == 0, out + err
    assert "2 passed" in out


async def test_new_project_lists_its_spider_and_its_jobs_validate(tmp_path):
    root, env = await new_project(tmp_path, "shop", "https://shop.test/catalog/")
    code, out, err = await run(*CRAWL, "list", cwd=root, env=env)
    assert code == 0, err
    assert any(line.split("\t")[0] == "shop" for line in out.splitlines()), out
    code, out, err = await run(*CRAWL, "jobs", "list", cwd=root, env=env)
    assert code == 0, err
    assert "shop" in out and "cron 0 6 * * *" in out
    # The commented-out job keys are real keys with valid values: uncommented, they validate.
    pyproject = root / "pyproject.toml"
    lines = pyproject.read_text().splitlines()
    start = lines.index("[tool.crawler.jobs.shop]")
    end = lines.index("[tool.pytest.ini_options]")
    uncommented = [line.removeprefix("# ") for line in lines[start:end]]
    assert uncommented != lines[start:end]
    pyproject.write_text("\n".join([*lines[:start], *uncommented, *lines[end:]]) + "\n")
    code, out, err = await run(*CRAWL, "jobs", "list", cwd=root, env=env)
    assert code == 0, err
    assert "cron 0 6 * * * (UTC)" in out


async def test_new_project_spider_crawls_a_local_site(tmp_path):
    root, env = await new_project(tmp_path, "shop", "shop.test")
    pages: dict[str, dict[str, Page]] = {
        "shop.test": {
            "/": html_page("Home", ["/a", "/b", "http://other.test/"]),
            "/a": html_page("A", ["/b"]),
            "/b": html_page("B", ["/"]),
        },
        "other.test": {"/": html_page("Elsewhere")},
    }
    async with SiteServer(pages) as server:
        code, out, err = await run(
            *CRAWL,
            "run",
            "shop",
            "-a",
            f"start_urls={server.url('shop.test')}",
            "-s",
            "RESOLVE=shop.test:127.0.0.1,other.test:127.0.0.1",
            "-s",
            "DOWNLOAD_DELAY=0",
            "-s",
            "PROGRESS_INTERVAL=0",
            "-o",
            "-",
            cwd=root,
            env=env,
        )
    assert code == 0, err
    items = [json.loads(line) for line in out.splitlines()]
    assert sorted(item["title"] for item in items) == ["A", "B", "Home"]
    assert server.paths_seen("other.test") == []  # allowed_domains keeps it on the site


async def test_new_spider_goes_into_the_project_spider_package(tmp_path):
    root, env = await new_project(tmp_path, "shop", "shop.test")
    new = (*CRAWL, "new", "spider", "other", "other.test")
    code, out, err = await run(*new, cwd=root, env=env)
    assert code == 0, err
    path = root / "shop" / "spiders" / "other.py"
    assert "crawl run other" in out and path.is_file()
    code, out, err = await run(*CRAWL, "list", cwd=root, env=env)
    assert code == 0, err
    assert {"other", "shop"} <= {line.split("\t")[0] for line in out.splitlines()}
    path.write_text("# edited\n")
    code, out, err = await run(*new, cwd=root / "tests", env=env)  # anywhere in the project
    assert code == 2
    line = err.strip()
    assert "\n" not in line and line.startswith("error: ")
    assert line.endswith("shop/spiders/other.py exists already: add --force to overwrite it")
    assert path.read_text() == "# edited\n"
    code, out, err = await run(*new, "--force", cwd=root, env=env)
    assert code == 0, err
    assert "class OtherSpider(Spider)" in path.read_text()


# --- `crawl new spider` outside a project -------------------------------------------------


def test_new_spider_without_a_project_writes_a_loadable_file(tmp_path, monkeypatch):
    result = invoke(tmp_path, monkeypatch, "new", "spider", "books", "https://Books.test/catalog/")
    assert result.exit_code == 0, result.output
    path = tmp_path / "books.py"
    assert "crawl run books.py" in result.output
    cls = load_spider_class(str(path))
    assert cls.name == "books" and cls.__name__ == "BooksSpider"
    assert list(cls.start_urls) == ["https://books.test/catalog/"]
    assert list(cls.allowed_domains) == ["books.test"]


@pytest.mark.parametrize(
    ("entry", "folder"),
    [
        ("spiders/", "spiders"),
        ("spiders", "spiders"),
        ("acme.spiders", "acme/spiders"),
        ("acme.crawlers", "src/acme/crawlers"),
    ],
)
def test_spider_folder_follows_spider_modules(tmp_path, entry, folder):
    (tmp_path / folder).mkdir(parents=True)
    project = ProjectConfig(root=tmp_path, spider_modules=("one_spider.py", entry))
    assert spider_folder(project) == tmp_path / folder


def test_spider_folder_is_none_without_an_existing_folder(tmp_path):
    assert spider_folder(ProjectConfig(root=tmp_path)) is None
    assert spider_folder(ProjectConfig(root=tmp_path, spider_modules=("gone.spiders",))) is None


@pytest.mark.parametrize(
    ("domain", "start_url", "allowed"),
    [
        ("books.test", "https://books.test/", "books.test"),
        (
            "http://Books.Test:8080/a/b?page=1#top",
            "http://books.test:8080/a/b?page=1",
            "books.test",
        ),
        ("bücher.test", "https://xn--bcher-kva.test/", "xn--bcher-kva.test"),
        ("127.0.0.1:8000", "https://127.0.0.1:8000/", "127.0.0.1"),
    ],
)
def test_domain_gives_start_url_and_allowed_domain(domain, start_url, allowed):
    template = parse_domain(domain, "books")
    assert (template.start_url, template.domain) == (start_url, allowed)


# --- bad input: one line, exit 2, nothing written -----------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["spider", "my-spider", "x.test"], "bad spider name 'my-spider'"),
        (["spider", "2fast", "x.test"], "bad spider name '2fast'"),
        (["spider", "_private", "x.test"], "bad spider name '_private'"),
        (["spider", "class", "x.test"], "bad spider name 'class'"),
        (["spider", "json", "x.test"], "would shadow the module json"),
        (["spider", "books", "ftp://x.test"], "bad DOMAIN 'ftp://x.test'"),
        (["spider", "books", "x..test"], "bad DOMAIN 'x..test'"),
        (["spider", "books", "https://me:secret@x.test/"], "leave credentials out"),
        (["spider", "books", "not a host"], "bad DOMAIN 'not a host'"),
        (["project", "my-shop"], "bad project name 'my-shop'"),
        (["project", "crawler"], "bad project name 'crawler'"),
        (["project", "shop", "http://"], "bad DOMAIN 'http://'"),
        (["project", "shop", "--spider", "a.b"], "bad spider name 'a.b'"),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(tmp_path, monkeypatch, args, message):
    result = invoke(tmp_path, monkeypatch, "new", *args)
    assert result.exit_code == 2
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.output
    assert list(tmp_path.iterdir()) == []


def test_new_project_refuses_an_existing_folder(tmp_path, monkeypatch):
    (tmp_path / "shop").mkdir()
    (tmp_path / "shop" / "keep.txt").write_text("mine")
    result = invoke(tmp_path, monkeypatch, "new", "project", "shop")
    assert result.exit_code == 2
    assert result.stderr.strip() == "error: shop exists already: choose another name or remove it"
    assert [p.name for p in (tmp_path / "shop").iterdir()] == ["keep.txt"]


def test_help_has_examples(tmp_path, monkeypatch):
    for command in (["new"], ["new", "spider"], ["new", "project"]):
        result = invoke(tmp_path, monkeypatch, *command, "--help")
        assert result.exit_code == 0
        assert "Examples:\n    crawl new" in result.output


# --- the templates pass ruff ----------------------------------------------------------------


def ruff(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(RUFF), *args], cwd=cwd, capture_output=True, text=True, timeout=60, check=False
    )


needs_ruff = pytest.mark.skipif(not RUFF.is_file(), reason="ruff is not installed in this venv")


@needs_ruff
@pytest.mark.parametrize(
    "domain",
    [
        "books.test",
        "https://shop.test:8443/catalog/?page=1",
        "bücher.test",
        "[::1]:8080",
        "https://" + "a" * 60 + ".example-of-a-rather-long-host-name.test/" + "p" * 40,
    ],
)
def test_spider_template_passes_ruff(tmp_path, domain):
    template = parse_domain(domain, "book_store")
    path = tmp_path / "book_store.py"
    path.write_text(spider_file(template, "book_store"))
    long_url = len(template.start_url) > 60
    rules = [] if long_url else ["--select", STRICT_RULES]  # E501 cannot wrap a long URL
    check = ruff("check", "--no-cache", "--isolated", *rules, str(path), cwd=tmp_path)
    assert check.returncode == 0, check.stdout + check.stderr
    form = ruff("format", "--no-cache", "--isolated", "--check", "--diff", str(path), cwd=tmp_path)
    assert form.returncode == 0, form.stdout + form.stderr


@needs_ruff
def test_project_python_files_pass_ruff_with_the_project_config(tmp_path):
    root = tmp_path / "shop"
    for relative, text in project_files("shop", parse_domain("shop.test", "shop"), "0.1").items():
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_text(text)
    select = ["--extend-select", "I,UP,B,RUF"]  # the project's own config, plus more rules
    check = ruff("check", "--no-cache", *select, ".", cwd=root)
    assert check.returncode == 0, check.stdout + check.stderr
    form = ruff("format", "--no-cache", "--check", "--diff", ".", cwd=root)
    assert form.returncode == 0, form.stdout + form.stderr


def test_a_spider_class_never_shadows_what_the_template_imports():
    from crawler.cli.new import _class_name

    assert _class_name("book_store") == "BookStoreSpider"
    assert _class_name("news_spider") == "NewsSpider"
    assert _class_name("spider") == "SpiderSpider"  # not `class Spider(Spider)`
    assert _class_name("request") == "RequestSpider"
