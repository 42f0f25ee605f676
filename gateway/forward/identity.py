"""Identity headers (``X-Auth-Sub``, ``X-Auth-Role``, ...) rendered from a principal, for simple services.

Templates are compiled once from config. A template mixes literal text with ``${jwt:<claim>}``,
``${tag:<key>}`` and ``${role}``. A header whose variables do not all resolve (``${jwt:sub}``
for a guest, a missing tag, a null claim) is left out, never an error.

Values are made safe for a header line: strings pass unchanged when they are visible ASCII or
inner spaces; anything else (non-ASCII as UTF-8, controls, CR/LF, leading or trailing spaces
that HTTP would strip) is percent-encoded, and so is ``%`` itself, so percent-decoding gives
back the exact claim value and a claim can never smuggle a header line. Numbers and bools are
rendered as JSON text, objects as compact JSON, lists joined with ``,`` (a ``,`` inside an
element is encoded as ``%2C``, so splitting on ``,`` then decoding is exact).
"""

from __future__ import annotations

import json
import math
import re
from typing import Any, Mapping

from ..errors import ConfigError
from ..principal import Principal

__all__ = ["IdentityHeaders", "render_identity_headers"]

_CONFIG_PATH = "downstream_credential.identity_headers"
_VAR = re.compile(r"\$\{([^{}]*)\}")
_LITERAL_OK = re.compile(r"^[\x20-\x7e]*$")
_UNRESOLVED = object()

# bytes a value may keep as-is: visible ASCII and space, minus the escape character
_SAFE = frozenset(range(0x20, 0x7F)) - {ord("%")}
_SAFE_IN_LIST = _SAFE - {ord(",")}

# One compiled part: a literal (str) or a variable (kind, name); kind is "jwt", "tag" or "role".
_Part = str | tuple[str, str]

# the header stripper's canonical form (forward/headers.py): `X_Auth.Sub` ~ `x-auth-sub`
_CANON = bytes.maketrans(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ_.", b"abcdefghijklmnopqrstuvwxyz--")


def _compile(name: str, template: str) -> tuple[_Part, ...]:
    path = f"{_CONFIG_PATH}.{name}"
    parts: list[_Part] = []
    pos = 0
    for m in _VAR.finditer(template):
        parts.append(template[pos:m.start()])
        parts.append(_variable(m.group(1), path))
        pos = m.end()
    parts.append(template[pos:])
    for p in parts:
        if isinstance(p, str):
            if "${" in p:
                raise ConfigError(path, f"unterminated or nested variable in {template!r}")
            if not _LITERAL_OK.match(p):
                raise ConfigError(path, "literal text must be visible ASCII or spaces "
                                        "(no control characters, CR/LF or non-ASCII)")
    return tuple(p for p in parts if p != "")


def _variable(body: str, path: str) -> tuple[str, str]:
    if body == "role":
        return ("role", "")
    kind, sep, key = body.partition(":")
    if sep and kind in ("jwt", "tag") and key:
        return (kind, key)
    raise ConfigError(path, f"unknown variable ${{{body}}}: identity headers understand "
                            "${jwt:<claim>}, ${tag:<key>} and ${role}")


def _text(value: Any, safe: frozenset[int]) -> str | object:
    """A claim/tag value as header-safe text, or ``_UNRESOLVED`` (null, NaN, odd types)."""
    if isinstance(value, str):
        return _encode(value, safe)
    if isinstance(value, (bool, int, float)):
        if isinstance(value, float) and not math.isfinite(value):
            return _UNRESOLVED
        return json.dumps(value)
    if isinstance(value, (list, tuple)):
        return ",".join(_element(v) for v in value)
    if isinstance(value, Mapping):
        return _encode(_compact(value), safe)
    return _UNRESOLVED


def _element(value: Any) -> str:
    """One list element: strings and scalars as above; null, lists and objects as JSON text."""
    text = _text(value, _SAFE_IN_LIST) if not isinstance(value, (list, tuple)) else _UNRESOLVED
    if text is _UNRESOLVED:
        return _encode(_compact(value), _SAFE_IN_LIST)
    return text  # type: ignore[return-value]


def _compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), default=str)


def _encode(s: str, safe: frozenset[int]) -> str:
    if s.isascii() and s.isprintable() and "%" not in s and (safe is _SAFE or "," not in s) \
            and not (s.startswith(" ") or s.endswith(" ")):
        return s                      # the common case: nothing to do
    data = s.encode("utf-8", "surrogatepass")
    out = []
    last = len(data) - 1
    for i, b in enumerate(data):
        if b in safe and not (b == 0x20 and (i == 0 or i == last)):
            out.append(chr(b))
        else:
            out.append(f"%{b:02X}")
    return "".join(out)


class IdentityHeaders:
    """Compiled identity-header templates: build once from config, ``render`` per request."""

    __slots__ = ("_compiled", "names")

    def __init__(self, templates: tuple[tuple[str, str], ...]) -> None:
        compiled: list[tuple[bytes, tuple[_Part, ...]]] = []
        seen: set[bytes] = set()
        for name, template in templates:
            lname = name.lower().encode("ascii")
            canon = lname.translate(_CANON)
            if canon in seen:
                raise ConfigError(f"{_CONFIG_PATH}.{name}", "header named twice (names compare "
                                  "case-insensitively, with _ and . read as -)")
            seen.add(canon)
            compiled.append((lname, _compile(name, template)))
        self._compiled = tuple(compiled)
        # canonical forms (lower-case, `_` and `.` read as `-`), as the header stripper compares
        self.names: frozenset[bytes] = frozenset(seen)

    def render(self, principal: Principal) -> list[tuple[bytes, bytes]]:
        out: list[tuple[bytes, bytes]] = []
        for name, parts in self._compiled:
            pieces: list[str] = []
            for part in parts:
                if isinstance(part, str):
                    pieces.append(part)
                    continue
                text = _resolve(part, principal)
                if text is _UNRESOLVED:
                    break
                pieces.append(text)  # type: ignore[arg-type]
            else:
                out.append((name, "".join(pieces).encode("ascii")))
        return out

    def __repr__(self) -> str:
        return f"IdentityHeaders({sorted(n.decode() for n in self.names)})"


def _resolve(part: tuple[str, str], principal: Principal) -> str | object:
    kind, key = part
    if kind == "role":
        return _UNRESOLVED if principal.role is None else _text(principal.role, _SAFE)
    source = principal.claims if kind == "jwt" else principal.tags
    return _text(source.get(key), _SAFE)


def render_identity_headers(templates: tuple[tuple[str, str], ...], *,
                            principal: Principal) -> list[tuple[bytes, bytes]]:
    """One-off rendering; the gateway compiles ``IdentityHeaders`` once instead."""
    return IdentityHeaders(templates).render(principal)
