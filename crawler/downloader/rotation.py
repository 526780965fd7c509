"""Proxy rotation with ban detection.

A pool of proxies, chosen per request round-robin, at random, or sticky per
domain (a domain keeps its proxy until it is banned there). A ban (status 403 /
429, a body pattern such as a captcha marker, or a connection failure) benches
the proxy *for that domain* with exponential back-off; after ``max_bans`` bans a
proxy is retired everywhere. When every proxy is cooling down for a domain, the
caller is told how long to wait instead of failing.
"""

from __future__ import annotations

import os
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..clock import Clock
from ..errors import SettingsError
from ..settings import Settings
from .proxies import check_proxy_url, redact

__all__ = ["BanRules", "ProxyPool", "load_proxy_list"]

STRATEGIES = ("round_robin", "random", "sticky")


def load_proxy_list(values: Sequence[str], file: str = "", env_var: str = "PROXIES") -> list[str]:
    """Proxy URLs from the setting, else a file (one per line, # comments), else the env."""
    proxies = [v.strip() for v in values if v.strip()]
    if not proxies and file:
        try:
            text = Path(file).read_text(encoding="utf-8")
        except OSError as exc:
            raise SettingsError(f"bad value PROXY_FILE={file!r}: {exc.strerror}") from None
        proxies = [line.split("#", 1)[0].strip() for line in text.splitlines()]
        proxies = [p for p in proxies if p]
    if not proxies and os.environ.get(env_var):
        proxies = [p.strip() for p in re.split(r"[,\s]+", os.environ[env_var]) if p.strip()]
    for proxy in proxies:
        check_proxy_url(proxy, "PROXIES entry")
    return proxies


@dataclass(frozen=True, slots=True)
class BanRules:
    """What counts as a ban: statuses, body patterns, connection failures."""

    statuses: frozenset[int] = frozenset((403, 429))
    body_patterns: tuple[re.Pattern[bytes], ...] = ()
    network_errors: bool = True

    @classmethod
    def build(cls, statuses: Sequence[int], patterns: Sequence[str], network: bool) -> BanRules:
        """Rules from settings values (patterns are regexes matched against the body bytes)."""
        compiled = []
        for pattern in patterns:
            try:
                compiled.append(re.compile(pattern.encode()))
            except re.error as exc:
                raise SettingsError(
                    f"bad value BAN_BODY_PATTERNS entry {pattern!r}: {exc}"
                ) from None
        return cls(frozenset(int(s) for s in statuses), tuple(compiled), network)

    def is_ban(self, status: int, body: bytes) -> bool:
        """True if a response with this status and body means "this proxy is banned here"."""
        if status in self.statuses:
            return True
        return any(p.search(body) for p in self.body_patterns)


@dataclass(slots=True)
class _Proxy:
    url: str
    label: str
    index: int
    requests: int = 0
    successes: int = 0
    bans: int = 0
    retired: bool = False
    cooling_until: dict[str, float] = field(default_factory=dict)  # domain -> clock time
    domain_bans: dict[str, int] = field(default_factory=dict)


class ProxyPool:
    """Chooses a proxy per request and tracks bans per (proxy, domain)."""

    @classmethod
    def from_settings(cls, settings: Settings, clock: Clock) -> ProxyPool | None:
        """The pool PROXIES / PROXY_FILE / $PROXIES name, or None if they name no proxy."""
        urls = load_proxy_list(settings.PROXIES, settings.PROXY_FILE)
        if not urls:
            return None
        return cls(
            urls,
            clock,
            strategy=settings.PROXY_ROTATION,
            cooldown_s=settings.PROXY_BAN_COOLDOWN,
            max_bans=settings.PROXY_MAX_BANS,
        )

    def __init__(
        self,
        urls: Sequence[str],
        clock: Clock,
        strategy: str = "round_robin",
        cooldown_s: float = 60.0,
        max_cooldown_s: float = 3600.0,
        max_bans: int = 5,
        rng: random.Random | None = None,
    ) -> None:
        if strategy not in STRATEGIES:
            raise SettingsError(
                f"bad value PROXY_ROTATION={strategy!r}: must be one of {', '.join(STRATEGIES)}"
            )
        self._proxies = [_Proxy(url, label, n) for n, (url, label) in enumerate(_labels(urls))]
        self._by_url = {p.url: p for p in self._proxies}
        self._clock = clock
        self._strategy = strategy
        self._cooldown_s = cooldown_s
        self._max_cooldown_s = max_cooldown_s
        self._max_bans = max_bans
        self._rng = rng or random.Random()
        self._next = 0
        self._sticky: dict[str, _Proxy] = {}

    def __len__(self) -> int:
        return len(self._proxies)

    def choose(self, domain: str) -> tuple[str | None, float]:
        """``(proxy_url, 0)`` to use now, or ``(None, seconds)`` to wait when all are cooling.

        ``(None, -1)`` means every proxy is retired.
        """
        now = self._clock.now()
        usable = [p for p in self._proxies if not p.retired]
        if not usable:
            return None, -1.0
        ready = [p for p in usable if p.cooling_until.get(domain, 0.0) <= now]
        if not ready:
            return None, min(p.cooling_until[domain] for p in usable) - now
        if self._strategy == "sticky":
            chosen = self._sticky.get(domain)
            if chosen is None or chosen not in ready:
                chosen = self._sticky[domain] = ready[self._rng.randrange(len(ready))]
        elif self._strategy == "random":
            chosen = ready[self._rng.randrange(len(ready))]
        else:
            count = len(self._proxies)
            chosen = min(ready, key=lambda p: (p.index - self._next) % count)
            self._next = (chosen.index + 1) % count
        chosen.requests += 1
        return chosen.url, 0.0

    def success(self, url: str, domain: str) -> None:
        """A request through ``url`` to ``domain`` worked."""
        proxy = self._by_url.get(url)
        if proxy is not None:
            proxy.successes += 1
            proxy.domain_bans.pop(domain, None)

    def ban(self, url: str, domain: str) -> bool:
        """Bench ``url`` for ``domain``; True if the domain must change identity (sticky).

        Responses to requests that were already in flight when the proxy was benched
        for ``domain`` are the same ban, not new ones: they neither extend the cooldown
        nor count towards retirement.
        """
        proxy = self._by_url.get(url)
        if proxy is None:
            return False
        if proxy.cooling_until.get(domain, 0.0) > self._clock.now():
            return False
        proxy.bans += 1
        count = proxy.domain_bans[domain] = proxy.domain_bans.get(domain, 0) + 1
        cooldown = min(self._cooldown_s * 2 ** (count - 1), self._max_cooldown_s)
        proxy.cooling_until[domain] = self._clock.now() + cooldown
        if proxy.bans >= self._max_bans:
            proxy.retired = True
        if self._sticky.get(domain) is proxy:
            del self._sticky[domain]
            return True
        return False

    def snapshot(self) -> dict[str, dict[str, object]]:
        """Per proxy (credentials redacted): requests, successes, bans, state."""
        now = self._clock.now()
        result: dict[str, dict[str, object]] = {}
        for proxy in self._proxies:
            cooling = sorted(d for d, t in proxy.cooling_until.items() if t > now)
            state = "retired" if proxy.retired else ("cooling" if cooling else "active")
            result[proxy.label] = {
                "requests": proxy.requests,
                "successes": proxy.successes,
                "bans": proxy.bans,
                "state": state,
                "cooling_for": cooling,
            }
        return result


def _labels(urls: Sequence[str]) -> list[tuple[str, str]]:
    """Each URL with its redacted label, made unique: proxies that differ only by their
    credentials (one gateway, several sessions) must not share a line in the snapshot."""
    seen: dict[str, int] = {}
    result = []
    for url in urls:
        label = redact(url)
        count = seen[label] = seen.get(label, 0) + 1
        result.append((url, label if count == 1 else f"{label}#{count}"))
    return result
