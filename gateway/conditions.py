"""Claim values read as strings, policy variables, and the IAM condition subset (compiled once).

Shared by mapping (claims -> role) and policy (statements): one reading of a claim everywhere.
A claim reads as a tuple of strings: a string as itself, an integer or float as ``str(v)``, a
bool as ``"true"``/``"false"``; a list claim element by element (nested objects dropped); the
``scope`` claim is split on spaces. A missing or ``null`` claim reads as ``None``.
"""

from __future__ import annotations

import functools
import ipaddress
import math
import operator
import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from .config import Statement, condition_operator_base
from .errors import ConfigError
from .patterns import VARIABLE_RE, Glob
from .principal import RequestFacts

UNRESOLVED = None     # a variable with no usable value
_LIKE_SPECIAL = re.compile(r"[*?]")


def scalar_text(v: Any) -> str | None:
    """A JSON scalar as the text conditions and rules compare (``None`` for null/objects)."""
    if isinstance(v, str):
        return v
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return str(v)
    return None


def read_claim(claims: Mapping[str, Any], name: str) -> tuple[tuple[str, ...], bool] | None:
    """``(values, is_list)``, or ``None`` when the claim is missing or null."""
    v = claims.get(name)
    if v is None:
        return None
    if isinstance(v, (list, tuple)):
        return tuple(t for t in map(scalar_text, v) if t is not None), True
    t = scalar_text(v)
    if t is None:                   # an object: present, but nothing to compare
        return (), False
    if name == "scope":
        return tuple(s for s in t.split(" ") if s), True
    return (t,), False


def claim_values(claims: Mapping[str, Any], name: str) -> tuple[str, ...] | None:
    """The claim's values; ``None`` when missing, null, an object or an empty list."""
    r = read_claim(claims, name)
    return r[0] if r is not None and r[0] else None


def variable_values(kind: str, name: str | None, *, role: str | None,
                    claims: Mapping[str, Any], tags: Mapping[str, str],
                    path_params: Mapping[str, str]) -> tuple[str, ...] | None:
    """The values of ``${kind:name}`` (several for a list claim), or ``None`` if unresolved."""
    if kind == "jwt" and name:
        return claim_values(claims, name)
    if kind == "tag" and name:
        t = tags.get(name)
        return (t,) if t is not None else None
    if kind == "path" and name:
        p = path_params.get(name)
        return (p,) if p is not None else None
    if kind == "role" and name is None and role is not None:
        return (role,)
    return None


class Context:
    """Everything a statement may read about one request (built once per evaluate)."""

    __slots__ = ("claims", "facts", "path_params", "role", "tags")

    def __init__(self, role: str | None, claims: Mapping[str, Any], tags: Mapping[str, str],
                 path_params: Mapping[str, str], facts: RequestFacts) -> None:
        self.role, self.claims, self.tags = role, claims, tags
        self.path_params, self.facts = path_params, facts

    def variable(self, kind: str, name: str | None) -> tuple[str, ...] | None:
        return variable_values(kind, name, role=self.role, claims=self.claims, tags=self.tags,
                               path_params=self.path_params)


# --------------------------------------------------------------------------- condition keys

Reader = Callable[[Context], "tuple[str, ...] | None"]


def _reader(key: str) -> Reader:
    kind, _, name = key.partition(":")
    if kind == "jwt":
        return lambda c: claim_values(c.claims, name)
    if kind == "tag":
        return lambda c: (c.tags[name],) if name in c.tags else None
    if kind == "path":
        return lambda c: (c.path_params[name],) if name in c.path_params else None
    if key == "req:source_ip":
        return lambda c: (c.facts.source_ip,) if c.facts.source_ip else None
    if key == "req:secure":
        return lambda c: ("true" if c.facts.secure else "false",)
    if key == "req:time":
        return lambda c: (repr(float(c.facts.now)),)
    if key.startswith("req:header/"):
        header = header_key(key)
        return lambda c: (c.facts.headers[header],) if header in c.facts.headers else None
    raise ValueError(key)


def header_key(key: str) -> str:
    """The canonical header name a ``req:header/<name>`` key reads (``X_Tenant.Id`` ->
    ``x-tenant-id``): every spelling of a name is one header (LIMITS.md "Policy inputs")."""
    return key[len("req:header/"):].lower().replace("_", "-").replace(".", "-")


# --------------------------------------------------------------------------- value parsing

def _number(text: str) -> float | None:
    try:
        v = float(text)
    except ValueError:
        return None
    return v if math.isfinite(v) else None


def _date(text: str) -> float | None:
    """ISO 8601 (naive = UTC) or epoch seconds."""
    v = _number(text)
    if v is not None:
        return v
    try:
        d = datetime.fromisoformat(text.strip())
    except ValueError:
        return None
    if d.tzinfo is None:
        d = d.replace(tzinfo=UTC)
    return d.timestamp()


def like_glob(parts: list[tuple[bool, str]]) -> Glob:
    """IAM ``*``/``?`` glob (crossing ``/``); parts flagged True are literal (substituted).
    Matched in linear time (patterns.Glob), never as a regex: values are request data."""
    return Glob(parts)


@functools.lru_cache(maxsize=4096)   # pure: the same few client addresses recur
def _parse_ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _ip_in(k: str, net: Any) -> bool:
    ip = _parse_ip(k)
    return ip is not None and ip.version == net.version and ip in net


def _cmp(prep: Callable[[str], float | None],
         test: Callable[[float, float], bool]) -> Callable[[str, Any], bool]:
    def run(k: str, v: Any) -> bool:
        a = prep(k)
        return a is not None and v is not None and test(a, v)
    return run


_ORDER: dict[str, Callable[[float, float], bool]] = {
    "Equals": operator.eq, "LessThan": operator.lt, "LessThanEquals": operator.le,
    "GreaterThan": operator.gt, "GreaterThanEquals": operator.ge}

# positive base -> (prepare a condition value, test(key text, prepared value))
_POSITIVE: dict[str, tuple[Callable[[Any], Any], Callable[[str, Any], bool]]] = {
    "StringEquals": (lambda v: v, lambda k, v: k == v),
    "StringEqualsIgnoreCase": (lambda v: v.casefold(), lambda k, v: k.casefold() == v),
    "StringLike": (lambda v: like_glob([(False, v)]), lambda k, v: v.match(k)),
    "Bool": (lambda v: v.lower() if v.lower() in ("true", "false") else None,
             lambda k, v: v is not None and k.lower() == v),
    "IpAddress": (lambda v: v, _ip_in),
}
for _suffix, _test in _ORDER.items():
    _POSITIVE["Numeric" + _suffix] = (_number, _cmp(_number, _test))
    _POSITIVE["Date" + _suffix] = (_date, _cmp(_date, _test))
_NULL: tuple[Callable[[Any], Any], Callable[[str, Any], bool]] = (
    lambda v: v, lambda k, v: False)     # Null is judged on presence, not by a predicate
_NEGATED = {"StringNotEquals": "StringEquals", "StringNotEqualsIgnoreCase": "StringEqualsIgnoreCase",
            "StringNotLike": "StringLike", "NumericNotEquals": "NumericEquals",
            "DateNotEquals": "DateEquals", "NotIpAddress": "IpAddress"}


class Condition:
    """One ``operator: {key: values}`` pair. ``test`` answers True, False or None (unresolved)."""

    __slots__ = ("header", "if_exists", "key", "like", "negated", "null", "op", "pred", "prep",
                 "read", "set_op", "static", "templates")

    def __init__(self, op: str, key: str, values: tuple[Any, ...], path: str) -> None:
        self.op, self.key = op, key
        base = condition_operator_base(op)
        self.set_op = op.split(":", 1)[0] if op.startswith(("ForAnyValue:", "ForAllValues:")) else None
        self.if_exists = op.endswith("IfExists")
        self.null = base == "Null"
        self.negated = base in _NEGATED
        self.like = base in ("StringLike", "StringNotLike")
        self.prep: Callable[[Any], Any]
        self.pred: Callable[[str, Any], bool]
        self.prep, self.pred = _POSITIVE.get(_NEGATED.get(base, base), _NULL)
        self.read = _reader(key)
        self.header = header_key(key) if key.startswith("req:header/") else None
        texts = [v if not isinstance(v, (str, int, float, bool)) else scalar_text(v)
                 for v in values]
        self.templates = tuple(t for t in texts if isinstance(t, str) and VARIABLE_RE.search(t))
        static = [t for t in texts if t not in self.templates]
        if self.null:
            self.static = tuple(str(t).lower() == "true" for t in static)
        else:
            self.static = tuple(self.prep(t) for t in static)
            if any(p is None for p in self.static):
                raise ConfigError(path, f"{op}: value not valid for this operator")

    def _values(self, ctx: Context) -> list[Any] | None:
        if not self.templates:
            return list(self.static)
        out: list[Any] = list(self.static)
        for t in self.templates:
            texts = substitute(t, ctx, literal_for_like=self.like)
            if texts is None:
                return None
            for text in texts:
                out.append(text if self.like else self.prep(text))
        return out

    def test(self, ctx: Context) -> bool | None:
        keyvals = self.read(ctx)
        if self.null:
            return any((keyvals is None) == want for want in self.static)
        if not keyvals:
            if self.if_exists or self.set_op == "ForAllValues":
                return True
            return False if self.set_op == "ForAnyValue" else self.negated
        values = self._values(ctx)
        if values is None:
            return None
        pred = self.pred

        def elem(k: str) -> bool:
            hit = any(pred(k, v) for v in values)
            return not hit if self.negated else hit
        if self.set_op == "ForAllValues" or (self.set_op is None and self.negated):
            return all(elem(k) for k in keyvals)
        return any(elem(k) for k in keyvals)


def substitute(template: str, ctx: Context, *, literal_for_like: bool = False,
               limit: int = 64) -> list[Any] | None:
    """Every expansion of ``template`` (one per list-claim value); None if any is unresolved.

    With ``literal_for_like`` the result is a StringLike ``Glob`` whose substituted parts are
    literal (a claim value ``*`` matches only ``*``).
    """
    pos = 0
    combos: list[list[tuple[bool, str]]] = [[]]
    for m in VARIABLE_RE.finditer(template):
        vals = ctx.variable(m.group(1), m.group(2))
        if vals is None or len(combos) * len(vals) > limit:
            return None
        lit = template[pos:m.start()]
        combos = [c + [(False, lit), (True, v)] for c in combos for v in vals]
        pos = m.end()
    tail = (False, template[pos:])
    if literal_for_like:
        return [like_glob(c + [tail]) for c in combos]
    return ["".join(t for _, t in c) + tail[1] for c in combos]


def compile_conditions(st: Statement) -> tuple[Condition, ...]:
    out = []
    for op, keys in st.condition:
        for key, values in keys:
            out.append(Condition(op, key, values, f"{st.path}.condition.{op}.{key}"))
    return tuple(out)


def conditions_hold(conds: tuple[Condition, ...], ctx: Context, deny: bool) -> bool:
    """All conditions true; an unresolved one counts as true for a deny, false for an allow."""
    for c in conds:
        r = c.test(ctx)
        if r is None:
            r = deny
        if not r:
            return False
    return True
