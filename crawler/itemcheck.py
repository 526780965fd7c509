"""``is_item`` that imports itemadapter (and pydantic, attrs...) only when first asked.

Most spiders yield plain dicts, which the hot path recognises without asking; a
crawl that never yields anything else never pays for itemadapter's import (~45 ms).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["is_item"]

_is_item: Callable[[Any], bool] | None = None


def is_item(obj: Any) -> bool:
    """``itemadapter.is_item``: True for dicts, dataclasses, attrs and pydantic models..."""
    global _is_item
    if _is_item is None:
        from itemadapter import is_item as loaded

        _is_item = loaded
    return _is_item(obj)
