"""The path pattern language shared by routes and statement resources.

``*`` matches one segment (or, inside a segment, any run of non-``/`` characters),
``**`` (a whole segment) matches zero or more segments, ``{name}`` matches one segment and
captures it. Everything else is literal. Patterns are compiled once, at config load.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_NAME = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
_VARIABLE = re.compile(r"\$\{([a-z]+)(?::([^}]*))?\}")


class PatternError(ValueError):
    pass


def _segment_regex(seg: str, names: list[str]) -> str:
    """Regex for one segment: ``*`` globs, ``{name}`` captures, the rest literal."""
    if seg == "**":
        raise AssertionError("handled by caller")
    m = _NAME.fullmatch(seg)
    if m:
        name = m.group(1)
        if name in names:
            raise PatternError(f"capture {{{name}}} appears twice")
        names.append(name)
        return f"(?P<{name}>[^/]+)"
    if "{" in seg or "}" in seg:
        raise PatternError(f"segment {seg!r}: a capture must be a whole segment like {{name}}")
    if "**" in seg:
        raise PatternError(f"segment {seg!r}: ** must be a whole segment")
    if seg == "*":
        return "[^/]+"
    return "[^/]*".join(re.escape(part) for part in seg.split("*"))


def pattern_regex(pattern: str) -> tuple[str, tuple[str, ...]]:
    """Translate a path pattern into an anchored regex source and its capture names."""
    if not pattern.startswith("/"):
        raise PatternError(f"pattern {pattern!r} must start with '/'")
    names: list[str] = []
    out = []
    for seg in pattern.split("/")[1:]:
        if seg == "**":
            out.append("(?:/[^/]*)*")
        else:
            out.append("/" + _segment_regex(seg, names))
    return "^" + "".join(out) + "$", tuple(names)


@dataclass(frozen=True)
class PathPattern:
    """A compiled path pattern; ``match`` returns the captured segments or None."""

    source: str
    regex: re.Pattern[str] = field(repr=False, compare=False)
    names: tuple[str, ...] = ()

    @classmethod
    def compile(cls, source: str) -> "PathPattern":
        rx, names = pattern_regex(source)
        return cls(source, re.compile(rx), names)

    def match(self, path: str) -> dict[str, str] | None:
        m = self.regex.fullmatch(path)
        if m is None:
            return None
        return m.groupdict() if self.names else {}


def policy_variables(text: str) -> list[tuple[str, str | None]]:
    """The ``${kind:name}`` policy variables in a string, in order (``${role}`` has no name)."""
    return [(m.group(1), m.group(2)) for m in _VARIABLE.finditer(text)]


VARIABLE_RE = _VARIABLE
