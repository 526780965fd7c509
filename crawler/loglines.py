"""Bounded, secret-free log lines.

A hostile page can hand the crawl a 200,000-character URL, a server can send a
status line that aiohttp quotes byte for byte, and a link can carry
``user:password@``. Whatever the input, a framework log line stays under
:data:`MAX_LINE` characters and never shows URL userinfo, ``Authorization``,
``Proxy-Authorization``, ``Cookie`` or ``Set-Cookie`` values.

* :func:`short_url` - a URL fit to quote in a message or an exception;
* :func:`scrub` - credentials removed from free text;
* :class:`SafeLogFilter` - applies both (and a cap) to every log record;
* :func:`get_logger` - a logger with that filter attached: every framework module
  takes its logger from here, because a logger's filters only see the records
  created on that very logger, not its children's.
"""

from __future__ import annotations

import logging
import re

__all__ = ["MAX_LINE", "SafeLogFilter", "cap", "get_logger", "scrub", "short_url"]

MAX_LINE = 4096
# Room for what a handler's format puts before the message (time, level, logger name).
_MAX_MESSAGE = MAX_LINE - 512
# A traceback keeps its first and last lines within this many characters.
_MAX_TRACEBACK = 32 * 1024

# The userinfo of a URL: from "://" to the last "@" before the path, query or fragment
# (a password may hold a raw "@"; the greedy class backtracks to the last one).
_USERINFO = re.compile(r"(?<=://)[^/?#\s]*@")
# A credential header and its value: "Name: value" (a raw header line), "'Name': 'value'"
# (a dict or multidict repr) or "('Name', 'value')" (a header pair). A quoted value ends
# at its closing quote; a bare one at the end of the line, a quote, or a "\r"/"\n" escape
# (aiohttp quotes raw bytes with repr()).
_HEADER = re.compile(
    r"""(?ix)
    \b(?P<name>(?:proxy-)?authorization|(?:set-)?cookie)
    (?P<sep>['"]\s*[:,]\s*|\s*[:=]\s*)
    (?:
        (?P<quote>['"])(?:\\.|(?!(?P=quote))[^\\])*(?P=quote)
      | (?:(?!\\[rn])[^\r\n'"])+
    )
    """
)


def scrub(text: str) -> str:
    """``text`` without credentials: URL userinfo becomes ``***@``, credential headers ``***``."""
    if "@" in text:
        text = _USERINFO.sub("***@", text)
    lowered = text.lower()  # two substring tests are ~20x cheaper than the header regex
    if "authorization" in lowered or "cookie" in lowered:
        text = _HEADER.sub(_hide_header, text)
    return text


def _hide_header(match: re.Match[str]) -> str:
    quote = match.group("quote") or ""
    return f"{match.group('name')}{match.group('sep')}{quote}***{quote}"


def short_url(url: object, limit: int = 200) -> str:
    """``url`` without userinfo, cut to ``limit`` characters with an ellipsis.

    The cut keeps the start, so the scheme, the host and the start of the path stay
    readable. Works on any text, so a URL too malformed to parse can be quoted too.
    """
    text = str(url)
    if "@" in text:
        text = _USERINFO.sub("", text)
    if len(text) <= limit:
        return text
    return text[: max(limit - 1, 0)] + "…"


def cap(text: str, limit: int = _MAX_MESSAGE) -> str:
    """``text`` cut to at most ``limit`` characters, saying how many were cut.

    The head and the tail are kept: a message usually names the URL first and
    says what went wrong last.
    """
    if len(text) <= limit:
        return text
    marker_room = 32  # "… [N chars cut] …" for any N that fits in memory
    keep = max(limit - marker_room, 0)
    head, tail = keep * 3 // 4, keep // 4
    cut = len(text) - head - tail
    return f"{text[:head]}… [{cut} chars cut] …{text[len(text) - tail :] if tail else ''}"


def _cap_traceback(text: str) -> str:
    """Each line capped, then the whole cut in the middle (keeping where it began and ended)."""
    text = "\n".join(cap(line) for line in text.splitlines())
    if len(text) <= _MAX_TRACEBACK:
        return text
    head = text[: _MAX_TRACEBACK // 4].rsplit("\n", 1)[0]
    tail = text[-(_MAX_TRACEBACK * 3 // 4) :].split("\n", 1)[-1]
    cut = len(text) - len(head) - len(tail)
    return f"{head}\n… [{cut} chars cut] …\n{tail}"


# Tracebacks are rendered (then scrubbed) with the standard layout.
_FORMATTER = logging.Formatter()


class SafeLogFilter(logging.Filter):
    """Renders each record's message once, scrubbed and capped (its traceback too).

    After this filter ``record.msg`` is the final text and ``record.args`` is empty,
    so no handler formats the raw arguments again. Running it twice (on a logger
    and on a handler) changes nothing the second time.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrite ``record`` in place; never drops a record."""
        try:
            message = record.getMessage()
        except Exception:  # a bad format string must not crash the code that logged it
            message = f"{record.msg} (arguments that do not fit the format: {record.args!r})"
        record.msg = cap(scrub(message))
        record.args = ()
        if record.exc_info and not record.exc_text:
            record.exc_text = _FORMATTER.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = _cap_traceback(scrub(record.exc_text))
        if record.stack_info:
            record.stack_info = _cap_traceback(scrub(record.stack_info))
        return True


_FILTER = SafeLogFilter()


def get_logger(name: str) -> logging.Logger:
    """``logging.getLogger(name)`` with :class:`SafeLogFilter` attached (once)."""
    logger = logging.getLogger(name)
    if not any(isinstance(existing, SafeLogFilter) for existing in logger.filters):
        logger.addFilter(_FILTER)
    return logger
