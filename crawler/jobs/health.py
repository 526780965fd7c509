"""Health checks on a finished run: item count, error rate, required fields.

:class:`HealthProbe` is an item pipeline placed first in the job's chain, so it
sees every item the spider produced (before only_new/only_changed drop any);
:func:`evaluate` turns the probe and the crawl stats into check results. A
failing ``max_error_rate`` gives exit code 5 (crawl errors over the threshold),
any other failing check exit code 4.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from itemadapter import ItemAdapter

from .config import HealthChecks

__all__ = ["CheckResult", "HealthProbe", "error_counts", "evaluate"]

_EMPTY: tuple[Any, ...] = (None, "", [], {}, ())


@dataclass(frozen=True, slots=True)
class CheckResult:
    """One check's outcome, as stored in the run history."""

    name: str
    ok: bool
    detail: str

    def to_dict(self) -> dict[str, Any]:
        """For the history's JSON."""
        return {"check": self.name, "ok": self.ok, "detail": self.detail}


class HealthProbe:
    """Counts the items a run produced and, per required field, how many have it.

    A field is present when its value is not None, empty text or an empty container.
    """

    def __init__(self, fields: Mapping[str, float] | None = None) -> None:
        self.fields = tuple(fields or ())
        self.items = 0
        self.present = dict.fromkeys(self.fields, 0)

    async def process_item(self, item: Any, spider: Any) -> Any:
        """Count the item and its required fields; pass it on unchanged."""
        self.items += 1
        if self.fields:
            adapter = ItemAdapter(item)
            for name in self.fields:
                value = adapter.get(name)
                if not _is_empty(value):
                    self.present[name] += 1
        return item


def _is_empty(value: Any) -> bool:
    try:
        return value in _EMPTY
    except TypeError:  # e.g. an array type whose == is elementwise
        return False


def error_counts(stats: Mapping[str, Any]) -> tuple[int, int]:
    """``(errors, attempts)`` of a run.

    Errors: requests that finally failed (``failures/*``), callback, pipeline
    and internal errors. Attempts: responses received (``pages``) plus failures
    that got no response (an HTTP error status is already a page).
    """
    failures = sum(v for k, v in stats.items() if k.startswith("failures/") and _int(v))
    http_failures = int(stats.get("failures/http_status", 0) or 0)
    errors = failures + sum(
        int(stats.get(key, 0) or 0)
        for key in ("callback_errors", "pipeline_errors", "internal_errors", "start_errors")
    )
    attempts = int(stats.get("pages", 0) or 0) + failures - http_failures
    return errors, attempts


def _int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def evaluate(
    checks: HealthChecks, stats: Mapping[str, Any], probe: HealthProbe
) -> list[CheckResult]:
    """The result of every declared check (an empty list if none is declared)."""
    results = []
    if checks.min_items is not None:
        ok = probe.items >= checks.min_items
        results.append(
            CheckResult(
                "min_items",
                ok,
                f"{probe.items} items produced, at least {checks.min_items} required",
            )
        )
    if checks.max_error_rate is not None:
        errors, attempts = error_counts(stats)
        rate = errors / attempts if attempts else (1.0 if errors else 0.0)
        ok = rate <= checks.max_error_rate
        results.append(
            CheckResult(
                "max_error_rate",
                ok,
                f"{errors} errors in {attempts} requests ({rate:.1%}),"
                f" at most {checks.max_error_rate:.1%} allowed",
            )
        )
    for name, share in checks.required_fields.items():
        have = probe.present.get(name, 0)
        actual = have / probe.items if probe.items else 0.0
        ok = actual >= share or probe.items == 0  # no items: min_items is the check for that
        results.append(
            CheckResult(
                f"required_fields.{name}",
                ok,
                f"{name!r} present in {have} of {probe.items} items ({actual:.1%}),"
                f" at least {share:.1%} required",
            )
        )
    return results
