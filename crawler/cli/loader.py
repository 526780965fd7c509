"""Find and load spider classes: by file path, ``module:Class``, or spider name.

User files are imported under a private module name (never as ``spiders.…``),
and their folders are appended to ``sys.path`` (never prepended); the built-in
spiders are ``crawler.spiders``, so a user's own ``spiders/`` folder cannot shadow
or be shadowed by them.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import pkgutil
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from ..errors import SpiderLoadError
from ..spider import Spider

__all__ = ["SpiderRef", "discover_spiders", "load_spider_class"]

BUILTIN_PACKAGE = "crawler.spiders"


@dataclass(frozen=True, slots=True)
class SpiderRef:
    """A spider class and where it was found."""

    name: str
    cls: type[Spider]
    origin: str  # "built-in (path)" or "<spider_modules entry> (path)"
    path: str = ""  # the file the class is defined in


def _append_path(folder: Path) -> None:
    text = str(folder)
    if text not in sys.path:
        sys.path.append(text)


def _import_error(what: str, exc: BaseException, path: Path | None = None) -> SpiderLoadError:
    """One line naming the file and line at fault: ``file.py:3: SyntaxError: ... in: <code>``."""
    last = traceback.format_exception_only(type(exc), exc)[-1].strip()
    if isinstance(exc, SyntaxError) and exc.lineno:
        where = f"{exc.filename or what}:{exc.lineno}"
        code = (exc.text or "").strip()
        shown = f" in: {code[:120]}" if code else ""
        return SpiderLoadError(f"cannot import {where}: {type(exc).__name__}: {exc.msg}{shown}")
    frames = traceback.extract_tb(exc.__traceback__)
    if path is not None:
        # The innermost line of the user's own file (not importlib's or a library's).
        own = [f for f in frames if Path(f.filename) == path]
        if own:
            frame = own[-1]
            code = (frame.line or "").strip()
            shown = f" in: {code[:120]}" if code else ""
            return SpiderLoadError(f"cannot import {path}:{frame.lineno}: {last}{shown}")
    return SpiderLoadError(f"cannot import {what}: {last}")


def import_file(path: Path) -> ModuleType:
    """Import a .py file under a private module name."""
    path = path.resolve()
    digest = hashlib.sha1(str(path).encode()).hexdigest()[:10]
    module_name = f"_crawler_user_{path.stem}_{digest}"
    if module_name in sys.modules:
        return sys.modules[module_name]
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise SpiderLoadError(f"cannot load {path}: not a Python file")
    module = importlib.util.module_from_spec(spec)
    _append_path(path.parent)  # let the file import its neighbours
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        del sys.modules[module_name]
        raise _import_error(str(path), exc, path) from exc
    return module


def import_module(name: str) -> ModuleType:
    """Import a dotted module name, with a clear error."""
    try:
        return importlib.import_module(name)
    except Exception as exc:
        raise _import_error(f"module {name!r}", exc) from exc


def spiders_in(module: ModuleType) -> list[type[Spider]]:
    """Spider subclasses defined (not merely imported) in ``module``."""
    return [
        obj
        for obj in vars(module).values()
        if inspect.isclass(obj)
        and issubclass(obj, Spider)
        and obj is not Spider
        and obj.__module__ == module.__name__
    ]


def builtin_modules() -> list[ModuleType]:
    """The built-in ``crawler.spiders`` package and its modules.

    It is installed inside ``crawler``, so a user's own ``spiders/`` package (in the
    working directory or anywhere on ``sys.path``) can neither shadow it nor be taken for it.
    """
    package = import_module(BUILTIN_PACKAGE)
    modules = [package]
    for info in pkgutil.iter_modules(package.__path__, package.__name__ + "."):
        modules.append(import_module(info.name))
    return modules


def _modules_of(entry: str, root: Path) -> list[ModuleType]:
    """Modules named by one ``spider_modules`` entry: a dotted name, a file or a folder."""
    candidate = (root / entry) if not Path(entry).is_absolute() else Path(entry)
    if entry.endswith(".py") or "/" in entry or candidate.is_dir():
        if candidate.is_file():
            return [import_file(candidate)]
        if candidate.is_dir():
            return [
                import_file(p) for p in sorted(candidate.glob("*.py")) if p.name != "__init__.py"
            ]
        raise SpiderLoadError(f"spider_modules entry {entry!r} not found under {root}")
    module = import_module(entry)
    modules = [module]
    if hasattr(module, "__path__"):  # a package: every submodule too
        for info in pkgutil.iter_modules(module.__path__, module.__name__ + "."):
            modules.append(import_module(info.name))
    return modules


def discover_spiders(
    spider_modules: tuple[str, ...] = (), root: Path | None = None
) -> list[SpiderRef]:
    """Every named spider in the built-in package and in ``spider_modules``."""
    root = root or Path.cwd()
    _append_path(root)
    refs: list[SpiderRef] = []
    sources: list[tuple[str, list[ModuleType]]] = [("built-in", builtin_modules())]
    for entry in spider_modules:
        sources.append((entry, _modules_of(entry, root)))
    for origin, modules in sources:
        for module in modules:
            for cls in spiders_in(module):
                if cls.name:
                    where = getattr(module, "__file__", None) or module.__name__
                    refs.append(SpiderRef(cls.name, cls, f"{origin} ({where})", where))
    return refs


def load_spider_class(
    target: str, spider_modules: tuple[str, ...] = (), root: Path | None = None
) -> type[Spider]:
    """Resolve TARGET: ``path/to/file.py[:Class]``, ``module:Class``, or a spider name."""
    root = root or Path.cwd()
    path_part, sep, class_part = target.partition(":")
    if path_part.endswith(".py") or Path(path_part).is_file():
        path = Path(path_part)
        if not path.is_file():
            raise SpiderLoadError(f"spider file {path_part!r} does not exist")
        return _pick(spiders_in(import_file(path)), class_part, str(path))
    if sep:
        _append_path(root)
        module = import_module(path_part)
        cls = getattr(module, class_part, None)
        if not (inspect.isclass(cls) and issubclass(cls, Spider)):
            raise SpiderLoadError(
                f"{target!r}: {path_part} has no Spider subclass named {class_part!r}"
            )
        return cls
    refs = discover_spiders(spider_modules, root)
    matches = [ref for ref in refs if ref.name == target]
    if not matches:
        known = ", ".join(sorted({ref.name for ref in refs})) or "none"
        raise SpiderLoadError(
            f"no spider named {target!r} (known: {known}); pass a path to a .py file,"
            " a module:Class, or list modules in [tool.crawler] spider_modules"
        )
    if len({ref.cls for ref in matches}) > 1:
        where = "; ".join(ref.origin for ref in matches)
        raise SpiderLoadError(f"spider name {target!r} is defined more than once: {where}")
    return matches[0].cls


def _pick(classes: list[type[Spider]], class_name: str, where: str) -> type[Spider]:
    if class_name:
        for cls in classes:
            if cls.__name__ == class_name or cls.name == class_name:
                return cls
        raise SpiderLoadError(f"{where} has no spider class or name {class_name!r}")
    if len(classes) == 1:
        return classes[0]
    if not classes:
        raise SpiderLoadError(f"{where} defines no Spider subclass")
    names = ", ".join(cls.__name__ for cls in classes)
    raise SpiderLoadError(
        f"{where} defines several spiders ({names}); choose one with {where}:ClassName"
    )
