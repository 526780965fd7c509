"""Comparing two Requests field by field, as a user sees them."""

from __future__ import annotations

from typing import Any

from crawler import Request

_LAZY = ("_url", "_host")  # parsed on first use for a plain link: compared as yarl_url, host


def request_state(request: Request) -> dict[str, Any]:
    """Every dataclass field of ``request``, its URL and host as parsed when asked."""
    state = {n: getattr(request, n) for n in Request.__dataclass_fields__ if n not in _LAZY}
    state["yarl_url"] = request.yarl_url
    state["host"] = request.host
    return state
