"""A verified token's claims, frozen: cheap to keep by the ten thousand, safe to share.

The verifier caches every token it verifies and each request with that token reads the same
claims. As the decoded dict (with its lists) every cached token cost several GC-tracked
objects, each scanned by every full collection of the cyclic GC (10,000 cached tokens: tens
of milliseconds a collection, under load), and a reader could change a list that the next
request sees. Frozen, a token's claims are

- a *layout* (claim name -> position) shared by every token with the same claim names, and
- one tuple of values: strings, numbers, booleans, None, and tuples for arrays and objects
  (an object as ``(_OBJECT, name, value, name, value, ...)``),

and the GC stops tracking a tuple of such values the first time it sees it. Strings that the
tokens of a pool share (issuer, audience, scopes, groups, tenant) are interned, one copy for
all. ``Claims`` reads them back with the JSON types: an array as a fresh list, an object as a
fresh dict.
"""

from __future__ import annotations

import gc
from collections import abc
from sys import intern
from typing import Any, Iterator, Mapping

__all__ = ["Claims", "Layout", "freeze", "thaw"]

Layout = dict[str, int]             # claim name -> position in the values tuple

# values unique to a user or a token: interning them would only grow the intern table
_UNSHARED = frozenset({"sub", "jti", "origin_jti", "event_id", "username", "cognito:username",
                       "email", "phone_number", "name", "at_hash", "c_hash", "nonce"})
# heads a frozen JSON object: a bare object() is neither a JSON value nor GC-tracked, so the
# tuple stays untrackable and is never taken for an array
_OBJECT = object()
_ATOMS = frozenset({int, float, bool, type(None)})
_PLAIN = _ATOMS | {str}
_LAYOUTS: dict[tuple[str, ...], tuple[Layout, tuple[int, ...]]] = {}
MAX_LAYOUTS = 1024                  # distinct claim-name tuples remembered (then start over)


def _freeze(value: Any) -> Any:
    t = type(value)
    if t is str:
        return intern(value)
    if t in _ATOMS:
        return value
    if t is list or t is tuple:
        try:
            return tuple(map(intern, value))     # the usual array: strings (groups, roles)
        except TypeError:
            return tuple([_freeze(v) for v in value])
    if t is dict or isinstance(value, abc.Mapping):
        flat: list[Any] = [_OBJECT]
        for k, v in value.items():
            flat += (intern(k) if type(k) is str else k, _freeze(v))
        return tuple(flat)
    return value


def thaw(value: Any) -> Any:
    """A frozen value with its JSON type, as fresh containers."""
    if type(value) is not tuple:
        return value
    if value and value[0] is _OBJECT:
        return {value[i]: thaw(value[i + 1]) for i in range(1, len(value), 2)}
    return [thaw(v) for v in value]


def _layout(names: tuple[str, ...]) -> tuple[Layout, tuple[int, ...]]:
    found = _LAYOUTS.get(names)
    if found is None:
        if len(_LAYOUTS) >= MAX_LAYOUTS:
            _LAYOUTS.clear()             # the tokens holding a layout keep it alive
        names = tuple(intern(n) if type(n) is str else n for n in names)
        found = ({n: i for i, n in enumerate(names)},
                 tuple(i for i, n in enumerate(names) if n not in _UNSHARED))
        _LAYOUTS[names] = found
    return found


def freeze(claims: Mapping[str, Any]) -> tuple[Layout, tuple[Any, ...]]:
    """(layout, values) for these claims; nothing of ``claims`` is kept but atoms."""
    if type(claims) is not dict:
        claims = dict(claims.items())
    layout, shared = _layout(tuple(claims))
    values = list(claims.values())
    # a dict holding only atoms is never GC-tracked: only a tracked one has arrays or objects
    if gc.is_tracked(claims):
        values = [v if type(v) in _PLAIN else _freeze(v) for v in values]
    for i in shared:
        v = values[i]
        if type(v) is str:
            values[i] = intern(v)
    return layout, tuple(values)


_NONE = object()


class Claims(Mapping[str, Any]):
    """A verified token's claims, read-only, with their JSON types: an array reads as a list
    and an object as a dict, each a fresh copy, so no reader changes what the next request
    with the same (cached) token reads."""

    __slots__ = ("_layout", "_values")

    def __init__(self, layout: Layout, values: tuple[Any, ...]) -> None:
        self._layout = layout
        self._values = values

    def __getitem__(self, key: str) -> Any:
        v = self._values[self._layout[key]]
        return thaw(v) if type(v) is tuple else v

    def get(self, key: str, default: Any = None) -> Any:
        i = self._layout.get(key)
        if i is None:
            return default
        v = self._values[i]
        return thaw(v) if type(v) is tuple else v

    def __contains__(self, key: object) -> bool:
        return key in self._layout

    def __iter__(self) -> Iterator[str]:
        return iter(self._layout)

    def __len__(self) -> int:
        return len(self._layout)

    def __repr__(self) -> str:
        return f"Claims({dict(self)!r})"
