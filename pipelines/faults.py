"""How an output's write failures are told apart, retried and reported.

A *transient* failure (EINTR, EAGAIN; SQLite busy or locked) is retried with a
fresh writer, ``WriteRetry.attempts`` tries in all, with short back-offs
between them. Any other failure, or a transient one that outlasts the
retries, becomes an :class:`~crawler.errors.OutputError` whose one-line
message names the output, the OS or database error and what to do, with the
original exception as ``__cause__``. Messages never hold item data.
"""

from __future__ import annotations

import asyncio
import errno
import os
import sqlite3
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from crawler import OutputError
from crawler.loglines import get_logger

__all__ = ["DEFAULT_RETRY", "WriteRetry", "is_transient", "output_failure", "with_retries"]

logger = get_logger("crawler.pipelines.faults")

_T = TypeVar("_T")


async def _sleep(delay_s: float) -> None:
    await asyncio.sleep(delay_s)


@dataclass(frozen=True, slots=True)
class WriteRetry:
    """How a transient write failure is retried.

    ``attempts`` tries in all; before try ``n + 1`` the writer waits
    ``delays_s[n - 1]`` (the last delay repeats) with ``sleep``, which tests
    replace to drive retries without waiting.
    """

    attempts: int = 6
    delays_s: tuple[float, ...] = (0.05, 0.1, 0.2, 0.5, 1.0)
    sleep: Callable[[float], Awaitable[None]] = _sleep

    def delay_s(self, failures: int) -> float:
        """The wait after the ``failures``-th failed try."""
        if not self.delays_s:
            return 0.0
        return self.delays_s[min(failures, len(self.delays_s)) - 1]


DEFAULT_RETRY = WriteRetry()

_TRANSIENT_ERRNOS = frozenset({errno.EINTR, errno.EAGAIN, errno.EWOULDBLOCK})
_TRANSIENT_SQLITE = frozenset({sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED})


def _sqlite_code(exc: BaseException) -> int | None:
    code = getattr(exc, "sqlite_errorcode", None)
    return code & 0xFF if isinstance(code, int) else None


def is_transient(exc: BaseException) -> bool:
    """True for failures worth retrying: EINTR/EAGAIN, SQLite busy/locked."""
    if isinstance(exc, sqlite3.Error):
        return _sqlite_code(exc) in _TRANSIENT_SQLITE
    return isinstance(exc, OSError) and exc.errno in _TRANSIENT_ERRNOS


_ERRNO_HINTS = {
    errno.ENOSPC: "free space",
    errno.EDQUOT: "free space (the disk quota is full)",
    errno.EFBIG: "raise the file size limit (ulimit -f) or write to a file system that allows it",
    errno.EACCES: "make the output writable",
    errno.EPERM: "make the output writable",
    errno.EROFS: "remount the file system read-write",
    errno.EIO: "check the disk (dmesg shows I/O errors)",
    errno.EBADF: "do not close or replace the output file while the crawl runs",
    errno.EAGAIN: "make sure the output accepts data (is its reader stalled?)",
}
_SQLITE_HINTS = {
    sqlite3.SQLITE_BUSY: "stop the program that keeps the database locked",
    sqlite3.SQLITE_LOCKED: "stop the program that keeps the database locked",
    sqlite3.SQLITE_FULL: "free space",
    sqlite3.SQLITE_READONLY: "make the database writable",
    sqlite3.SQLITE_PERM: "make the database writable",
    sqlite3.SQLITE_CANTOPEN: "make the database and its folder writable",
    # SQLite does not say which OS error it got: a full disk or ulimit -f may show as IOERR.
    sqlite3.SQLITE_IOERR: "check free space, the file size limit (ulimit -f) and the disk (dmesg)",
    sqlite3.SQLITE_CORRUPT: "restore the database or write to another one",
    sqlite3.SQLITE_NOTADB: "restore the database or write to another one",
    sqlite3.SQLITE_ERROR: "restore the table the crawl writes to (was it changed or dropped?)",
}


def _reason(exc: BaseException) -> str:
    """The error in one line, without anything that could come from an item."""
    if isinstance(exc, sqlite3.Error):
        text = " ".join(str(exc).split()) or type(exc).__name__
        name = getattr(exc, "sqlite_errorname", None)
        return f"{text} ({name})" if name else text
    if isinstance(exc, OSError) and exc.errno is not None:
        return f"[Errno {exc.errno}] {exc.strerror or os.strerror(exc.errno)}"
    return type(exc).__name__


def _hint(exc: BaseException) -> str:
    if isinstance(exc, sqlite3.Error):
        code = _sqlite_code(exc)
        hint = _SQLITE_HINTS.get(code) if code is not None else None
    elif isinstance(exc, OSError) and exc.errno is not None:
        hint = _ERRNO_HINTS.get(exc.errno)
    else:
        hint = None
    return hint or "fix the cause"


def output_failure(
    output: str,
    exc: BaseException,
    *,
    action: str = "write",
    attempts: int = 1,
    state: bool | None = None,
) -> OutputError:
    """The OutputError for ``exc``, ``__cause__`` set, ready to raise.

    ``attempts`` > 1 says a transient error outlasted the retries. ``state``
    says whether the crawl keeps a state folder (True: tell the user to resume
    with it; None: unknown).
    """
    reason = _reason(exc)
    if attempts > 1:
        reason += f", still failing after {attempts} attempts"
    if state is None:
        again = "run the same command again (with the same --state, if any) to resume"
    elif state:
        again = "run the same command again (with the same --state) to resume"
    else:
        again = "run the crawl again"
    error = OutputError(f"cannot {action} {output}: {reason} — {_hint(exc)} and {again}", output)
    error.__cause__ = exc
    return error


async def with_retries(
    attempt: Callable[[], Awaitable[_T]],
    retry: WriteRetry,
    *,
    output: str,
    state: bool | None = None,
) -> _T:
    """``await attempt()``, again after each transient failure; OutputError when it fails for good.

    ``attempt`` starts with a fresh writer itself (e.g. cuts a file back to its
    last whole batch, or rolls a database back) when the try before it failed.
    """
    failures = 0
    while True:
        try:
            return await attempt()
        except Exception as exc:
            failures += 1
            transient = is_transient(exc)
            if not transient or failures >= retry.attempts:
                raise output_failure(
                    output, exc, attempts=failures if transient else 1, state=state
                ) from exc
            logger.warning(
                "%s: %s; trying again (attempt %d of %d)",
                output,
                _reason(exc),
                failures + 1,
                retry.attempts,
            )
        await retry.sleep(retry.delay_s(failures))
