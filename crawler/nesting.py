"""The nesting guard: cut an HTML page before it nests deep enough to make parsing crawl.

Lexbor's tree builder walks its stack of open elements (and its list of active formatting
elements) for many tags, so parsing time grows with depth x tags: 100,000 nested <div> take
~9 s, a 16 MiB page of them hours. Before a page with more than _SCAN_MIN_TAGS '<' is
parsed, cap_nesting() replays that stack from the tag names alone (the WHATWG rules, cut
down so that they never pop more than the real parser: the estimate errs deep) and cuts the
page before the tag that would nest deeper than _MAX_DEPTH or push the walks over
_STEPS_PER_TAG per tag. Fewer tags than _SCAN_MIN_TAGS cannot walk more than _FREE_STEPS.
"""

from __future__ import annotations

import re
from collections.abc import Collection

__all__ = ["cap_nesting"]

_SCAN_MIN_TAGS = 4096
_FREE_STEPS = _SCAN_MIN_TAGS**2  # ~30 ms of Lexbor walking
_STEPS_PER_TAG = 128  # ~0.25 µs per tag: a page at most ~3x slower than a flat one
_MAX_DEPTH = 512  # Blink's limit; keeps recursive tree walkers within Python's
_WALK = 64  # how far down the stack our own end-tag search looks before giving up

_WS = r"\t\n\f\r "
# One token: a comment, a bogus comment or doctype, or a tag with its attributes (quoted
# values may hold '>' or '<'). Groups: end-tag slash, tag name, self-closing slash.
_TOKEN = re.compile(
    rf"""<(?:!--(?:-?>|.*?--!?>|.*)
      |[!?][^>]*+>?
      |/(?![A-Za-z])[^>]*+>?
      |(/?)([A-Za-z][^{_WS}/>]*+)
       (?:[{_WS}]++|/(?!>)
         |[^{_WS}/>][^{_WS}/>=]*+(?:[{_WS}]*+=[{_WS}]*+(?:"[^"]*+"|'[^']*+'|[^{_WS}>]*+))?
       )*+(/?)>?)""",
    re.DOTALL | re.VERBOSE,
)
_SCRIPT_TOKEN = re.compile(rf"<!--|-->|</?script[{_WS}/>]", re.IGNORECASE)
_RAW_TEXT = {
    name: re.compile(rf"</{name}[{_WS}/>]", re.IGNORECASE)
    for name in ("iframe", "noembed", "noframes", "style", "textarea", "title", "xmp")
}


def _names(words: str) -> frozenset[str]:
    return frozenset(words.split())


_NO_PUSH = _names(
    "area base basefont bgsound body br col embed frame head hr html image img input keygen"
    " link meta param source track wbr"
)
_FOREIGN_DOORS = _names("~annotation-xml ~desc ~foreignobject ~mi ~mn ~mo ~ms ~mtext ~title")
_SCOPE = _FOREIGN_DOORS | _names("applet caption html marquee object table td template th")
_BUTTON_SCOPE = _SCOPE | {"button"}
_LIST_SCOPE = _SCOPE | {"ol", "ul"}
_TABLE_SCOPE = _names("html table template")
_SPECIAL = _SCOPE | _names(
    "address article aside blockquote body button center colgroup dd details dir div dl dt"
    " fieldset figcaption figure footer form frameset h1 h2 h3 h4 h5 h6 head header hgroup"
    " iframe li listing main menu nav noembed noframes noscript ol p plaintext pre script"
    " search section select style summary tbody textarea tfoot thead title tr ul xmp"
)
_LI_STOP = _SPECIAL - _names("address div p")
_HEADINGS = _names("h1 h2 h3 h4 h5 h6")
_CLOSES_P = _HEADINGS | _names(
    "address article aside blockquote center dd details dialog dir div dl dt fieldset"
    " figcaption figure footer form header hgroup li listing main menu nav ol p pre search"
    " section summary ul"
)
_TABLE_PARTS = _names("caption colgroup table tbody td tfoot th thead tr")
_ROW_GROUPS = _names("tbody tfoot thead")
_CELLS = _names("td th")
_FORMATTING = _names("a b big code em font i nobr s small strike strong tt u")
_MARKERS = _names("applet caption marquee object td template th")
_BREAKOUT = _HEADINGS | _names(
    "b big blockquote body br center code dd div dl dt em embed head hr i img li listing menu"
    " meta nobr ol p pre ruby s small span strike strong sub sup table tt u ul var"
)
# Tags that need more than a push or a pop (the rest take the fast path).
_SLOW_START = (_NO_PUSH | _CLOSES_P | _ROW_GROUPS | _CELLS | _MARKERS | set(_RAW_TEXT)) | _names(
    "button math option plaintext script svg tr"
)
_ONE_OPEN = _names("a nobr")
_END_SLOW = _MARKERS | {"body", "html"}


class _OpenElements:
    """The tree builder's stack of open elements, replayed from tag names (``~`` = SVG/MathML).

    ``fmt`` counts the active formatting elements since the last marker (``td``,
    ``object``...): the list the parser walks back over to reopen them.
    """

    __slots__ = ("fmt", "marks", "names", "stack")

    def __init__(self) -> None:
        self.stack: list[str] = []
        self.fmt = 0
        self.names: dict[str, int] = {}
        self.marks: list[tuple[int, int, dict[str, int]]] = []

    def in_foreign(self) -> bool:
        """True inside SVG or MathML (not inside one of its HTML islands)."""
        stack = self.stack
        return bool(stack) and stack[-1][0] == "~" and stack[-1] not in _FOREIGN_DOORS

    def pop_to(self, index: int) -> None:
        """Close every element from ``index`` up; a closed marker ends its formatting scope."""
        del self.stack[index:]
        marks = self.marks
        while marks and marks[-1][0] >= index:
            _, self.fmt, self.names = marks.pop()

    def close(self, targets: Collection[str], stops: frozenset[str]) -> None:
        """Close the nearest open element in ``targets`` unless a ``stops`` element is nearer."""
        stack = self.stack
        for index in range(len(stack) - 1, max(len(stack) - 1 - _WALK, -1), -1):
            node = stack[index]
            if node in targets:
                self.pop_to(index)
                return
            if node in stops:
                return

    def start(self, name: str, self_closing: bool, text: str, pos: int) -> int | None:
        """Open ``name``; if its content is raw text, return where markup resumes (-1: never)."""
        stack = self.stack
        if self.in_foreign():
            if name == "font":  # a breakout only with attributes: keep it, pop nothing
                stack.append(name)
                return None
            if name not in _BREAKOUT:
                if not self_closing:
                    stack.append("~" + name)
                return None
            while self.in_foreign():
                stack.pop()
        if name in _NO_PUSH:
            return None
        if name == "svg" or name == "math":
            if not self_closing:
                stack.append("~" + name)
            return None
        self._close_implied(name)
        if name in _FORMATTING:
            self.remember(name)
        if name in _MARKERS:
            self.marks.append((len(stack), self.fmt, self.names))
            self.fmt, self.names = 0, {}
        stack.append(name)
        if name == "script":
            return _script_end(text, pos)
        if name in _RAW_TEXT:
            found = _RAW_TEXT[name].search(text, pos)
            return len(text) if found is None else found.start()
        return -1 if name == "plaintext" else None

    def _close_implied(self, name: str) -> None:
        """What a start tag closes first (a <p> closes an open <p>, a <td> the cell...)."""
        stack = self.stack
        if name in _CLOSES_P:
            self.close(("p",), _BUTTON_SCOPE)
            if name == "li":
                self.close(("li",), _LI_STOP)
            elif name == "dd" or name == "dt":
                self.close(("dd", "dt"), _LI_STOP)
            elif name in _HEADINGS and stack and stack[-1] in _HEADINGS:
                self.pop_to(len(stack) - 1)
        elif name in _CELLS:
            self.close(_CELLS, _TABLE_SCOPE)
        elif name == "tr":
            self.close(("tr",), _TABLE_SCOPE)
        elif name in _ROW_GROUPS:
            self.close(_ROW_GROUPS, _TABLE_SCOPE)
        elif name in ("a", "nobr", "button", "option") and stack and stack[-1] == name:
            self.pop_to(len(stack) - 1)

    def remember(self, name: str) -> None:
        """A formatting element opens: the parser adds it to its list (an <a> replaces one)."""
        names = self.names
        count = names.get(name, 0)
        if not count or name not in _ONE_OPEN:
            names[name] = count + 1
            self.fmt += 1

    def forget(self, name: str) -> None:
        """A formatting end tag: the parser drops that element from its list, if listed."""
        names = self.names
        if names.get(name):
            names[name] -= 1
            self.fmt -= 1

    def end(self, name: str) -> None:
        """Close what an end tag closes (never more than the parser does)."""
        stack = self.stack
        if stack and stack[-1] == name and name not in ("body", "html"):
            self.pop_to(len(stack) - 1)
            return
        if self.in_foreign():
            foreign = "~" + name
            for index in range(len(stack) - 1, max(len(stack) - 1 - _WALK, -1), -1):
                if stack[index] == foreign:
                    self.pop_to(index)
                    return
                if stack[index][0] != "~":
                    break
        if name in _TABLE_PARTS:
            self.close((name,), _TABLE_SCOPE)
        elif name == "li":
            self.close(("li",), _LIST_SCOPE)
        elif name == "p":
            self.close(("p",), _BUTTON_SCOPE)
        elif name in _SPECIAL:
            if name not in ("body", "html", "form"):
                self.close((name,), _SCOPE)
        else:
            self.close((name,), _SPECIAL)


def _script_end(text: str, pos: int) -> int:
    """Where a <script> that starts at ``pos`` ends, through its <!-- escapes."""
    state = 0  # 0: script data, 1: escaped (<!--), 2: double escaped (<!--<script>)
    while True:
        found = _SCRIPT_TOKEN.search(text, pos)
        if found is None:
            return len(text)
        token = found.group().lower()
        pos = found.end()
        if token == "<!--":
            if state == 0:
                state, pos = 1, found.start() + 2  # "<!-->" escapes and ends at once
        elif token == "-->":
            state = 0
        elif token[1] == "/":
            if state != 2:
                return found.start()
            state = 1
        elif state == 1:
            state = 2


def cap_nesting(text: str, tags: int = -1) -> int:
    """Where to cut ``text`` so that Lexbor parses it in bounded time, or -1 to keep it all.

    ``tags``: ``text.count("<")`` if the caller knows it already (-1: count here)."""
    # A tag takes 3 characters at least ("<a>"): short texts cannot hold too many.
    if len(text) <= 3 * _SCAN_MIN_TAGS:
        return -1
    if (tags if tags >= 0 else text.count("<")) <= _SCAN_MIN_TAGS:
        return -1
    tree = _OpenElements()
    stack = tree.stack
    push, pop = stack.append, stack.pop
    tags = steps = 0
    tokens = _TOKEN.finditer(text)
    while True:
        for match in tokens:
            end_slash, name, self_closing = match.groups()
            if name is None:  # comment, doctype; CDATA only counts inside SVG/MathML
                if text.startswith("<![CDATA[", match.start()) and tree.in_foreign():
                    end = text.find("]]>", match.start())
                    tokens = _TOKEN.finditer(text, len(text) if end < 0 else end)
                    break
                continue
            name = name.lower()
            tags += 1
            steps += len(stack) + tree.fmt
            if steps > _FREE_STEPS + _STEPS_PER_TAG * tags:
                return match.start()
            # The common cases are inlined: a plain tag, a formatting tag, a matching end tag.
            if end_slash:
                if name in _FORMATTING:
                    tree.forget(name)
                if stack and stack[-1] == name and name not in _END_SLOW:
                    pop()
                else:
                    tree.end(name)
                continue
            if len(stack) >= _MAX_DEPTH:
                return match.start()
            if (stack and stack[-1][0] == "~") or name in _SLOW_START:
                resume = tree.start(name, bool(self_closing), text, match.end())
                if resume is not None:
                    if resume < 0:
                        return -1
                    tokens = _TOKEN.finditer(text, resume)
                    break
            elif name in _FORMATTING:
                if stack and stack[-1] == name and name in _ONE_OPEN:  # an <a> closes an <a>
                    pop()
                tree.remember(name)
                push(name)
            else:
                push(name)
        else:
            return -1
