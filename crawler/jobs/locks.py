"""Job locks: who holds a job's lock, the stored lock row, and when a lock is abandoned.

A lock is a row in ``history.db``'s ``locks`` table, taken together with the new
``runs`` row in one transaction by :meth:`crawler.jobs.history.RunHistory.claim`.
It is stale, and may be taken over, when its heartbeat is older than ``stale_s``
or its pid is dead on this host.
"""

from __future__ import annotations

import os
import secrets
import socket
from dataclasses import dataclass, field

__all__ = ["Claim", "Holder", "LockInfo", "pid_alive", "stale_reason"]


def pid_alive(pid: int) -> bool:
    """True unless no process ``pid`` exists on this host."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: alive
    return True


@dataclass(frozen=True, slots=True)
class Holder:
    """Who holds (or wants) a lock: a unique token, the pid and the host name."""

    token: str = field(default_factory=lambda: secrets.token_hex(8))
    pid: int = field(default_factory=os.getpid)
    host: str = field(default_factory=socket.gethostname)


@dataclass(frozen=True, slots=True)
class LockInfo:
    """A lock row as stored."""

    job: str
    holder: str
    pid: int
    host: str
    run_id: str | None
    acquired_at: float
    heartbeat_at: float

    def describe(self) -> str:
        """``pid 123 on host-a, run 2024...``."""
        return f"pid {self.pid} on {self.host}" + (f", run {self.run_id}" if self.run_id else "")


@dataclass(frozen=True, slots=True)
class Claim:
    """The outcome of :meth:`RunHistory.claim`: a run id, or why the run may not start."""

    run_id: str | None
    reason: str = ""
    stolen_from: LockInfo | None = None


def stale_reason(lock: LockInfo, me: Holder, now_s: float, stale_s: float) -> str | None:
    """Why ``lock`` is abandoned, or None if its holder looks alive."""
    if now_s - lock.heartbeat_at > stale_s:
        return f"no heartbeat for {now_s - lock.heartbeat_at:.0f}s"
    if lock.host == me.host and lock.pid != me.pid and not pid_alive(lock.pid):
        return f"pid {lock.pid} is gone"
    return None
