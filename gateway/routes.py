"""Step 0: the raw request path -> one normalised path -> the first matching route, or 404.

The normalised path is what is matched, what statement resources see, and what is forwarded:
one string, so the gateway and the upstream can never disagree about which resource it names.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from .config import Route
from .errors import BadRequest, NotFound
from .patterns import split_path

__all__ = ["Router", "normalise_path"]

_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
_HEX = frozenset("0123456789abcdefABCDEF")
# Visible ASCII that RFC 3986 does not allow in a path: percent-encoded, so `{` and `%7b`
# are one resource. `\` and `;` are refused instead (see _REFUSED).
_ENCODE = frozenset('"<>^`{|}[]# ')
# Literal characters, and decoded escapes, that are 400: `\` and `/` smuggled past the
# matcher (IIS, Windows upstreams), `;` path parameters (Tomcat, Spring strip them).
_REFUSED = frozenset("\\;")
_REFUSED_ESCAPES = frozenset({"2F", "5C", "3B"})
# A path that is already normal: pchar-only segments, no escapes, no `//`, no dot segments.
_NORMAL = re.compile(r"(?:/(?!\.\.?(?:/|$))[A-Za-z0-9\-._~!$&'()*+,=:@]+)*/?")


def _bad(description: str) -> BadRequest:
    return BadRequest(description, code="bad_path")


def normalise_path(raw_path: bytes | str) -> str:
    """The canonical form of a raw request path (without query), or ``BadRequest(bad_path)``.

    Percent-encoded unreserved characters are decoded (so ``%2e%2e`` is a dot segment), other
    escapes get upper-case hex, ``//`` collapses, dot segments resolve (RFC 3986 5.2.4).
    """
    if isinstance(raw_path, bytes):
        try:
            path = raw_path.decode("ascii")
        except UnicodeDecodeError:
            raise _bad("non-ASCII byte in path") from None
    else:
        path = raw_path
    if not path.startswith("/"):
        raise _bad("path must start with '/'")
    if _NORMAL.fullmatch(path):
        return path                      # the common case: nothing to do
    return _resolve_dots(_decode(path))


def _decode(path: str) -> str:
    out: list[str] = []
    i, n = 0, len(path)
    while i < n:
        c = path[i]
        if c == "%":
            hx = path[i + 1:i + 3]
            if len(hx) != 2 or hx[0] not in _HEX or hx[1] not in _HEX:
                raise _bad("invalid percent-escape in path")
            hx = hx.upper()
            code = int(hx, 16)
            if hx in _REFUSED_ESCAPES:
                raise _bad(f"encoded %{hx} in path")
            if code < 0x20 or code == 0x7F:
                raise _bad("encoded control character in path")
            ch = chr(code)
            out.append(ch if ch in _UNRESERVED else "%" + hx)
            i += 3
            continue
        o = ord(c)
        if o <= 0x20 and c != " " or o >= 0x7F:
            raise _bad("control or non-ASCII character in path")
        if c in _REFUSED:
            raise _bad(f"{c!r} in path")
        out.append(f"%{o:02X}" if c in _ENCODE else c)
        i += 1
    return "".join(out)


def _resolve_dots(path: str) -> str:
    """Collapse empty segments and resolve ``.``/``..``; ``..`` above the root is refused."""
    segments = path.split("/")[1:]
    last = len(segments) - 1
    out: list[str] = []
    for i, seg in enumerate(segments):
        if seg == "..":
            if not out:
                raise _bad("'..' above the root")
            out.pop()
        elif seg and seg != ".":
            out.append(seg)
            continue
        if i == last:                    # a trailing '', '.' or '..' leaves a trailing slash
            out.append("")
    return "/" + "/".join(out)


def _literal_prefix(source: str) -> tuple[str, ...]:
    """The leading whole-literal segments of a pattern (no ``*``, no ``{name}``)."""
    prefix = []
    for seg in source.split("/")[1:]:
        if "*" in seg or "{" in seg:
            break
        prefix.append(seg)
    return tuple(prefix)


class _Node:
    __slots__ = ("children", "routes")

    def __init__(self) -> None:
        self.children: dict[str, _Node] = {}
        self.routes: list[int] = []      # indexes of routes whose literal prefix ends here


class Router:
    """Routes compiled once into a trie of literal prefix segments; first match wins.

    A route can only match paths that start with its literal prefix, so a lookup walks the
    path's segments, gathers the routes hanging off the visited nodes, and tries just those,
    in configuration order.
    """

    def __init__(self, routes: Sequence[Route]) -> None:
        self._routes = tuple(routes)
        self._root = _Node()
        for index, route in enumerate(self._routes):
            node = self._root
            for seg in _literal_prefix(route.path.source):
                node = node.children.setdefault(seg, _Node())
            node.routes.append(index)

    def __len__(self) -> int:
        return len(self._routes)

    def _candidates(self, segs: list[str]) -> list[int]:
        node = self._root
        found = list(node.routes)
        for seg in segs:
            child = node.children.get(seg)
            if child is None:
                break
            node = child
            found.extend(node.routes)
        found.sort()
        return found

    def match_or_none(self, method: str, path: str) -> tuple[Route, dict[str, str]] | None:
        """The first route whose pattern and methods match (GET does not imply HEAD)."""
        routes = self._routes
        segs = split_path(path)                  # once: every candidate matches these segments
        for index in self._candidates(segs):
            route = routes[index]
            if route.methods is not None and method not in route.methods:
                continue
            captures: dict[str, str] = {}
            if route.path.match_segments(segs, captures):
                return route, captures
        return None

    def match(self, method: str, path: str) -> tuple[Route, dict[str, str]]:
        found = self.match_or_none(method, path)
        if found is None:
            raise NotFound(f"no route for {method} {path}", code="no_route")
        return found
