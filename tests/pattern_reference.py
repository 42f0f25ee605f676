"""The regex translation of path patterns that poolgate used before the linear matcher: an
oracle for tests (same answers on every path) and the "before" of tests/bench/micro_match.py.
Never used by the gateway: it backtracks (issue 11 item 8)."""

from __future__ import annotations

import re

_NAME = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


def _segment(seg: str) -> str:
    m = _NAME.fullmatch(seg)
    if m:
        return f"(?P<{m.group(1)}>[^/]+)"
    if seg == "*":
        return "[^/]+"
    return "[^/]*".join(re.escape(part) for part in seg.split("*"))


def reference_regex(pattern: str) -> re.Pattern[str]:
    out = []
    for seg in pattern.split("/")[1:]:
        out.append("(?:/[^/]*)*" if seg == "**" else "/" + _segment(seg))
    return re.compile("".join(out))


def reference_match(pattern: str, path: str) -> dict[str, str] | None:
    m = reference_regex(pattern).fullmatch(path)
    return None if m is None else m.groupdict()
