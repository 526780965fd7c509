"""Items that validate themselves: pydantic models, attrs classes with validators, dataclasses
whose ``__post_init__`` checks their fields.

A validation error drops the item it concerns (:class:`InvalidItem`, counted as
``items_dropped/validation``, one log line naming the class, the field(s) and the
bad value(s)); the crawl goes on. Where the error can come from:

* the callback, while it builds the item (pydantic validates in the constructor,
  attrs runs validators in ``__init__``, a dataclass runs ``__post_init__``):
  crawler/outputs.py asks :func:`invalid_item` whether what the callback raised is
  such an error. Python cannot resume a generator that raised: what the callback
  yielded before is kept (items processed, requests queued), its later outputs are
  lost and the log line says so. A callback keeps them by yielding its requests
  before its items, or by catching the error per item itself;
* before the first pipeline, for a class that asks to be validated again
  (:func:`revalidator`);
* a pipeline assigning a bad value to a model with ``validate_assignment`` (or an
  attrs class with on-setattr validators): crawler/pipeline.py.

pydantic and attrs are never imported here: an item of theirs exists only if the
user's code imported them, so ``sys.modules`` says whether to look.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable
from typing import Any

from .errors import DropItem

__all__ = ["InvalidItem", "invalid_item", "revalidator"]


class InvalidItem(DropItem):
    """An item failed its own validation (``items_dropped/validation``); the message names
    the item class, the field(s) and the bad value(s), bounded."""


def _value(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def invalid_item(exc: BaseException) -> InvalidItem | None:
    """``exc`` as an item validation failure, or None if it is anything else.

    Recognised: a pydantic ``ValidationError`` (a model or pydantic dataclass being
    built or assigned), a ``ValueError``/``TypeError`` raised by an attrs validator
    or by a dataclass's ``__post_init__``. Only called when something was raised.
    """
    core = sys.modules.get("pydantic_core")  # not imported: no pydantic item exists
    if core is not None and isinstance(exc, core.ValidationError):
        return InvalidItem(_pydantic_message(exc))
    if not isinstance(exc, (ValueError, TypeError)):
        return None
    field = _attrs_field(exc)
    if field is not None:
        return InvalidItem(field)
    tb = exc.__traceback__
    while tb is not None:
        frame = tb.tb_frame
        if frame.f_code.co_name == "__post_init__":
            owner = frame.f_locals.get("self")
            if dataclasses.is_dataclass(owner):
                return InvalidItem(f"{type(owner).__name__}: {exc!s:.200}")
        tb = tb.tb_next
    return None


def _pydantic_message(exc: Any) -> str:
    """``Model: field=value (why); ...`` for at most three errors."""
    errors = exc.errors(include_url=False)
    parts = []
    for error in errors[:3]:
        where = ".".join(str(part) for part in error.get("loc", ())) or "(item)"
        parts.append(f"{where}={_value(error.get('input'))} ({error.get('msg', '')!s:.100})")
    more = f"; +{len(errors) - 3} more" if len(errors) > 3 else ""
    return f"{exc.title}: {'; '.join(parts)}{more}"


def _attrs_field(exc: BaseException) -> str | None:
    """``Class: field=value (why)`` if an attrs validator raised ``exc``, else None (the
    innermost frame holding an ``attrs.Attribute`` is the validator's)."""
    attr = sys.modules.get("attr")
    if attr is None:
        return None
    found = None
    tb = exc.__traceback__
    while tb is not None:
        local = tb.tb_frame.f_locals
        for value in local.values():
            if isinstance(value, attr.Attribute):
                found = (value.name, local)
                break
        tb = tb.tb_next
    if found is None:
        return None
    name, local = found
    owner = local.get("inst", local.get("instance", local.get("self")))
    bad = local.get("value", local.get("new_value", "?"))
    why = exc.args[0] if exc.args else exc
    return f"{type(owner).__name__}: {name}={_value(bad)} ({why!s:.120})"


def revalidator(cls: type) -> Callable[[Any], Any] | None:
    """What validates an item of ``cls`` again before the pipelines, if its class asks.

    attrs classes with validators: ``attrs.validate`` (an assignment may have skipped
    them). pydantic models with ``revalidate_instances`` not 'never': ``model_validate``
    of the instance (its own fields, no dump). Other models were validated when built.
    """
    fields = getattr(cls, "__attrs_attrs__", None)
    if fields is not None and any(f.validator is not None for f in fields):
        validate = sys.modules["attr"].validate

        def check_attrs(item: Any) -> Any:
            try:
                validate(item)
            except (ValueError, TypeError) as exc:
                raise InvalidItem(_attrs_field(exc) or f"{cls.__name__}: {exc!s:.200}") from exc
            return item

        return check_attrs
    config = getattr(cls, "model_config", None)
    if isinstance(config, dict) and config.get("revalidate_instances", "never") != "never":
        return getattr(cls, "model_validate", None)
    return None
