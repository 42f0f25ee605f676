"""The path pattern language shared by routes and statement resources, matched in linear time.

``*`` matches one segment (or, inside a segment, any run of non-``/`` characters),
``**`` (a whole segment) matches zero or more segments, ``{name}`` matches one segment and
captures it; in statement resources ``${kind:name}`` is a policy variable, compared against the
percent-DECODED segment (LIMITS.md "Policy inputs"). Everything else is literal.

No regular expression ever runs on request data here: a pattern compiles once into blocks of
per-segment tests separated by ``**``; the first block is anchored at the start, the last at
the end, the middle ones are found leftmost-first (the greedy-safe glob algorithm, one level
up), and a ``*`` inside a segment is matched the same way with ``str.find``. Matching is
O(pattern size x path length) for every pattern, so no path can make it slow.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence
from urllib.parse import unquote

__all__ = ["Glob", "PathPattern", "PatternError", "VARIABLE_RE", "decoded_segment",
           "policy_variables", "segment_value_ok"]

_NAME = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
_VARIABLE = re.compile(r"\$\{([a-z]+)(?::([^}]*))?\}")
_PH = "\ue000{}\ue001"                        # a variable's place while a pattern compiles
_PH_RE = re.compile("\ue000(\\d+)\ue001")

# segment test kinds
_LIT, _ANY, _CAP, _GLOB, _VAR = range(5)


class PatternError(ValueError):
    pass


# --------------------------------------------------------------------------- globs

class Glob:
    """``*`` (any run) and ``?`` (one character) over a string, in linear time.

    Built from parts ``(literal, text)``: a literal part's ``*`` and ``?`` are plain
    characters (a substituted claim value ``*`` matches only ``*``). Pieces between stars are
    anchored first and last, and the middle ones found leftmost-first: for ``*``-globs this
    is exact, and never backtracks.
    """

    __slots__ = ("first", "last", "match", "middles", "minlen", "star")

    def __init__(self, parts: Sequence[tuple[bool, str]]) -> None:
        pieces: list[list[str | None]] = [[]]      # None = '?'
        for literal, text in parts:
            for ch in text:
                if literal:
                    pieces[-1].append(ch)
                elif ch == "*":
                    pieces.append([])
                else:
                    pieces[-1].append(None if ch == "?" else ch)
        frozen = [p if None in p else "".join(p) for p in pieces]   # type: ignore[arg-type]
        self.star = len(frozen) > 1
        self.first = frozen[0]
        self.last = frozen[-1] if self.star else ""
        self.middles = tuple(frozen[1:-1])
        self.minlen = sum(len(p) for p in frozen)
        plain = all(p.__class__ is str for p in frozen)
        # ``match(s) -> bool``: the cheapest of the three below that is exact for this glob
        self.match: Callable[[str], bool] = (self._exact if not self.star else
                                             self._plain if plain else self._general)

    @classmethod
    def of(cls, text: str) -> "Glob":
        return cls([(False, text)])

    def _exact(self, s: str) -> bool:
        return len(s) == self.minlen and _at(s, 0, self.first)

    def _plain(self, s: str) -> bool:
        """No ``?``: str methods only (the path-segment case)."""
        n = len(s)
        first, last = self.first, self.last
        if n < self.minlen or not s.startswith(first) or not s.endswith(last):
            return False
        pos, end = len(first), n - len(last)
        for piece in self.middles:
            i = s.find(piece, pos, end)
            if i < 0:
                return False
            pos = i + len(piece)
        return True

    def _general(self, s: str) -> bool:
        n = len(s)
        if n < self.minlen:
            return False
        first, last = self.first, self.last
        if not _at(s, 0, first) or not _at(s, n - len(last), last):
            return False
        pos, end = len(first), n - len(last)
        for piece in self.middles:
            pos = _find(s, piece, pos, end)
            if pos < 0:
                return False
        return True


def _at(s: str, i: int, piece: Any) -> bool:
    """``piece`` (a str, or a list with None for ``?``) occurs in ``s`` at ``i``."""
    if piece.__class__ is str:
        return s.startswith(piece, i)
    if i + len(piece) > len(s):
        return False
    for j, ch in enumerate(piece):
        if ch is not None and s[i + j] != ch:
            return False
    return True


def _find(s: str, piece: Any, pos: int, end: int) -> int:
    """End index of the leftmost occurrence of ``piece`` in ``s[pos:end]``, or -1."""
    if piece.__class__ is str:
        i = s.find(piece, pos, end)
        return -1 if i < 0 else i + len(piece)
    k = len(piece)
    for i in range(pos, end - k + 1):             # O(len * |piece|): |piece| is config-sized
        if _at(s, i, piece):
            return i + k
    return -1


# --------------------------------------------------------------------------- segments

def decoded_segment(seg: str) -> str | None:
    """A normalised path segment, percent-decoded as UTF-8 (None if it is not UTF-8)."""
    if "%" not in seg:
        return seg
    try:
        return unquote(seg, errors="strict")
    except UnicodeDecodeError:
        return None


def segment_value_ok(v: str) -> bool:
    """A variable value that may stand for (part of) one decoded path segment: non-empty, no
    ``/``, no control character, not a dot segment."""
    if not v or "/" in v or v in (".", ".."):
        return False
    return not any(unicodedata.category(c) == "Cc" for c in v)


def _var_template(seg: str) -> tuple[tuple[tuple[str | int, ...], ...], bool]:
    """A segment holding variables: pieces between ``*`` of (decoded literal | variable index)."""
    pieces: list[list[str | int]] = [[]]
    pos = 0
    for m in _PH_RE.finditer(seg):
        _literal_into(pieces, seg[pos:m.start()])
        pieces[-1].append(int(m.group(1)))
        pos = m.end()
    _literal_into(pieces, seg[pos:])
    return tuple(tuple(p) for p in pieces), len(pieces) > 1


def _literal_into(pieces: list[list[str | int]], text: str) -> None:
    for i, chunk in enumerate(text.split("*")):
        if i:
            pieces.append([])
        if chunk:
            pieces[-1].append(unquote(chunk))


def _compile_segment(seg: str, names: list[str]) -> tuple[int, Any]:
    if _PH_RE.search(seg):
        return _VAR, _var_template(seg)
    m = _NAME.fullmatch(seg)
    if m:
        name = m.group(1)
        if name in names:
            raise PatternError(f"capture {{{name}}} appears twice")
        names.append(name)
        return _CAP, name
    if "{" in seg or "}" in seg:
        raise PatternError(f"segment {seg!r}: a capture must be a whole segment like {{name}}")
    if "**" in seg:
        raise PatternError(f"segment {seg!r}: ** must be a whole segment")
    if seg == "*":
        return _ANY, None
    if "*" in seg:
        return _GLOB, Glob([(True, p) if i % 2 == 0 else (False, "*")
                            for i, p in enumerate(_interleave(seg.split("*")))])
    return _LIT, seg


def _interleave(pieces: list[str]) -> list[str]:
    out: list[str] = []
    for i, p in enumerate(pieces):
        if i:
            out.append("*")
        out.append(p)
    return out


def _var_match(template: Any, seg: str, values: Sequence[str]) -> bool:
    pieces, star = template
    d = decoded_segment(seg)
    if d is None:
        return False
    texts = ["".join(x if x.__class__ is str else values[x] for x in p) for p in pieces]
    if not star:
        return d == texts[0]
    return Glob([(True, t) if i % 2 == 0 else (False, "*")
                 for i, t in enumerate(_interleave(texts))]).match(d)


# --------------------------------------------------------------------------- blocks

class _Block:
    """A run of per-segment tests with no ``**`` in it: matches exactly ``len`` segments."""

    __slots__ = ("anchored", "len", "tests")

    def __init__(self, tests: list[tuple[int, Any]], anchor: int) -> None:
        """``anchor`` 1: indexes from the start; -1: from the end; 0: test at any offset."""
        self.tests, self.len = tuple(tests), len(tests)
        # match at the block's anchor (start or end of the segments); middle blocks use `at`
        self.anchored = self._generate(anchor)

    def _generate(self, anchor: int) -> Callable[..., bool]:
        """The anchored test as one generated function (built once, at config load): a chain
        of comparisons, ~4x faster than interpreting the tests. Literals enter as ``repr``."""
        names: dict[str, Any] = {"_var_match": _var_match}
        conds, assigns = [], []
        for j, (kind, data) in enumerate(self.tests):
            i = j if anchor >= 0 else j - self.len
            seg = f"segs[{i}]"
            if kind == _LIT:
                conds.append(f"{seg} != {data!r}")
            elif kind == _ANY:
                conds.append(f"not {seg}")
            elif kind == _CAP:
                conds.append(f"not {seg}")
                assigns.append(f"caps[{data!r}] = {seg}")
            elif kind == _GLOB:
                names[f"g{j}"] = data.match
                conds.append(f"not g{j}({seg})")
            else:
                names[f"t{j}"] = data
                conds.append(f"not _var_match(t{j}, {seg}, values)")
        body = ["def anchored(segs, caps, values):"]
        if conds:
            body.append(f"    if {' or '.join(conds)}:")
            body.append("        return False")
        if assigns:
            body.append("    if caps is not None:")
            body += [f"        {a}" for a in assigns]
        body.append("    return True")
        exec("\n".join(body), names)        # noqa: S102 -- source built above from repr()s
        return names["anchored"]  # type: ignore[no-any-return]

    def at(self, segs: list[str], off: int, caps: dict[str, str] | None,
           values: Sequence[str]) -> bool:
        """Match at ``off`` (a middle block)."""
        for j, (kind, data) in enumerate(self.tests):
            s = segs[off + j]
            if kind == _LIT:
                ok = s == data
            elif kind == _ANY or kind == _CAP:
                ok = s != ""
            elif kind == _GLOB:
                ok = data.match(s)
            else:
                ok = _var_match(data, s, values)
            if not ok:
                return False
        if caps is not None:
            for j, (kind, data) in enumerate(self.tests):
                if kind == _CAP:
                    caps[data] = segs[off + j]
        return True


# --------------------------------------------------------------------------- patterns

def split_path(path: str) -> list[str]:
    """The segments a pattern is matched against (the path starts with ``/``)."""
    return path.split("/")[1:]


@dataclass(frozen=True)
class PathPattern:
    """A compiled path pattern; ``match`` returns the captured segments or None."""

    source: str
    names: tuple[str, ...] = ()
    variables: tuple[tuple[str, str | None], ...] = ()
    blocks: tuple[_Block, ...] = field(default=(), repr=False, compare=False)
    double: bool = field(default=False, repr=False, compare=False)   # has a `**`
    minsegs: int = field(default=0, repr=False, compare=False)

    @classmethod
    def compile(cls, source: str, *, variables: bool = False) -> "PathPattern":
        """Compile ``source``; with ``variables`` it may hold ``${kind:name}`` (resources)."""
        if not source.startswith("/"):
            raise PatternError(f"pattern {source!r} must start with '/'")
        found: list[tuple[str, str | None]] = []
        masked = source
        if variables:
            found = [(m.group(1), m.group(2)) for m in _VARIABLE.finditer(source)]
            counter = iter(range(len(found)))
            masked = _VARIABLE.sub(lambda m: _PH.format(next(counter)), source)
        names: list[str] = []
        groups: list[list[tuple[int, Any]]] = [[]]
        for seg in masked.split("/")[1:]:
            if seg == "**":
                groups.append([])
            else:
                groups[-1].append(_compile_segment(seg, names))
        last = len(groups) - 1
        blocks = tuple(_Block(g, 1 if i == 0 else -1 if i == last else 0)
                       for i, g in enumerate(groups))
        return cls(source, tuple(names), tuple(found), blocks, last > 0,
                   sum(b.len for b in blocks))

    def match(self, path: str) -> dict[str, str] | None:
        caps: dict[str, str] = {}
        return caps if self.match_segments(split_path(path), caps) else None

    def match_segments(self, segs: list[str], caps: dict[str, str] | None = None,
                       values: Sequence[str] = ()) -> bool:
        """Whether the split path matches; fills ``caps``; ``values`` are the variables'."""
        n = len(segs)
        blocks = self.blocks
        if not self.double:
            return n == self.minsegs and blocks[0].anchored(segs, caps, values)
        if n < self.minsegs:
            return False
        head, tail = blocks[0], blocks[-1]
        if not head.anchored(segs, caps, values) or not tail.anchored(segs, caps, values):
            return False
        pos, end = head.len, n - tail.len
        for b in blocks[1:-1]:                    # leftmost-first: exact for `**` globs
            k = b.len
            first = b.tests[0] if k else None
            while pos + k <= end:
                if first is not None and first[0] == _LIT:    # skip ahead at C speed
                    try:
                        pos = segs.index(first[1], pos, end - k + 1)
                    except ValueError:
                        return False
                if b.at(segs, pos, caps, values):
                    break
                pos += 1
            else:
                return False
            pos += k
        return True


def policy_variables(text: str) -> list[tuple[str, str | None]]:
    """The ``${kind:name}`` policy variables in a string, in order (``${role}`` has no name)."""
    return [(m.group(1), m.group(2)) for m in _VARIABLE.finditer(text)]


VARIABLE_RE = _VARIABLE
