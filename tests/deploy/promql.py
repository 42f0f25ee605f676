"""A small, strict PromQL parser for the tests of deploy/grafana and deploy/prometheus.

promtool is not on PyPI, so the expressions are checked here: the grammar of the Prometheus
docs (selectors with matchers, range vectors, subqueries, offset, functions, aggregations with
by/without, binary operators by precedence with bool/on/ignoring/group_left/group_right).
``parse(expr)`` raises ``PromQLError`` or returns the selectors: [(metric, {label, ...})].
"""

from __future__ import annotations

import re

FUNCTIONS = {
    "abs", "absent", "absent_over_time", "avg_over_time", "ceil", "changes", "clamp",
    "clamp_max", "clamp_min", "count_over_time", "delta", "deriv", "exp", "floor",
    "histogram_quantile", "holt_winters", "idelta", "increase", "irate", "label_join",
    "label_replace", "last_over_time", "ln", "log10", "log2", "max_over_time", "min_over_time",
    "predict_linear", "quantile_over_time", "rate", "resets", "round", "scalar", "sgn", "sort",
    "sort_desc", "sqrt", "stddev_over_time", "sum_over_time", "time", "timestamp", "vector",
}
AGGREGATIONS = {"sum", "min", "max", "avg", "group", "stddev", "stdvar", "count",
                "count_values", "bottomk", "topk", "quantile"}
PARAM_AGGS = {"count_values", "bottomk", "topk", "quantile"}
LEVELS = [{"or"}, {"and", "unless"}, {"==", "!=", ">", "<", ">=", "<="}, {"+", "-"},
          {"*", "/", "%", "atan2"}, {"^"}]
KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "offset"}

_TOKEN = re.compile(r"""
    (?P<ws>\s+)
  | (?P<duration>(?:\d+(?:ms|s|m|h|d|w|y))+)
  | (?P<number>(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?|0x[0-9a-fA-F]+|Inf|NaN)
  | (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
  | (?P<ident>[a-zA-Z_][a-zA-Z0-9_:]*)
  | (?P<op>==|!=|>=|<=|=~|!~|[-+*/%^<>=(){}\[\],:])
""", re.X)


class PromQLError(ValueError):
    pass


def _tokens(text: str) -> list[tuple[str, str]]:
    out, pos = [], 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m:
            raise PromQLError(f"unexpected character at {pos}: {text[pos:pos + 20]!r}")
        pos = m.end()
        if m.lastgroup != "ws":
            out.append((m.lastgroup or "", m.group()))
    return out + [("eof", "")]


class _Parser:
    def __init__(self, text: str) -> None:
        self.toks = _tokens(text)
        self.i = 0
        self.selectors: list[tuple[str, set[str]]] = []

    def peek(self, ahead: int = 0) -> tuple[str, str]:
        return self.toks[min(self.i + ahead, len(self.toks) - 1)]

    def take(self, value: str | None = None, kind: str | None = None) -> str:
        k, v = self.peek()
        if (value is not None and v != value) or (kind is not None and k != kind):
            raise PromQLError(f"expected {value or kind}, got {v!r} at token {self.i}")
        self.i += 1
        return v

    def accept(self, value: str) -> bool:
        if self.peek()[1] == value:
            self.i += 1
            return True
        return False

    def labels(self) -> list[str]:
        self.take("(")
        names: list[str] = []
        while not self.accept(")"):
            names.append(self.take(kind="ident"))
            if self.peek()[1] != ")":
                self.take(",")
        return names

    def expr(self, level: int = 0) -> None:
        if level == len(LEVELS):
            return self.unary()
        self.expr(level + 1)
        while self.peek()[1] in LEVELS[level]:
            self.i += 1
            self.accept("bool")
            if self.peek()[1] in ("on", "ignoring"):
                self.i += 1
                self.labels()
                if self.peek()[1] in ("group_left", "group_right"):
                    self.i += 1
                    if self.peek()[1] == "(":
                        self.labels()
            self.expr(level if LEVELS[level] == {"^"} else level + 1)

    def unary(self) -> None:
        while self.peek()[1] in ("-", "+"):
            self.i += 1
        self.primary()
        self.suffix()

    def suffix(self) -> None:
        if self.accept("["):
            self.take(kind="duration")
            if self.accept(":"):
                if self.peek()[0] == "duration":
                    self.i += 1
            self.take("]")
        if self.accept("offset"):
            self.accept("-")
            self.take(kind="duration")

    def primary(self) -> None:
        kind, value = self.peek()
        if kind in ("number", "string"):
            self.i += 1
            return
        if value == "(":
            self.i += 1
            self.expr()
            self.take(")")
            return
        if value == "{":
            return self.selector(None)
        if kind != "ident" or value in KEYWORDS:
            raise PromQLError(f"unexpected {value!r} at token {self.i}")
        if value in AGGREGATIONS and self.peek(1)[1] in ("(", "by", "without"):
            return self.aggregation()
        if self.peek(1)[1] == "(":
            if value not in FUNCTIONS:
                raise PromQLError(f"unknown function {value!r}")
            self.i += 2
            while not self.accept(")"):
                self.expr()
                if self.peek()[1] != ")":
                    self.take(",")
            return
        self.i += 1
        self.selector(value)

    def aggregation(self) -> None:
        name = self.take(kind="ident")
        if self.peek()[1] in ("by", "without"):
            self.i += 1
            self.labels()
        self.take("(")
        if name in PARAM_AGGS:
            self.expr()
            self.take(",")
        self.expr()
        self.take(")")
        if self.peek()[1] in ("by", "without"):
            self.i += 1
            self.labels()

    def selector(self, metric: str | None) -> None:
        used: set[str] = set()
        if self.accept("{"):
            while not self.accept("}"):
                label = self.take(kind="ident")
                if self.peek()[1] not in ("=", "!=", "=~", "!~"):
                    raise PromQLError(f"bad matcher operator after {label!r}")
                self.i += 1
                value = self.take(kind="string")
                if label == "__name__":
                    metric = value.strip("\"'")
                else:
                    used.add(label)
                if self.peek()[1] != "}":
                    self.take(",")
        if metric is None:
            raise PromQLError("a selector needs a metric name")
        self.selectors.append((metric, used))


def parse(text: str) -> list[tuple[str, set[str]]]:
    p = _Parser(text)
    p.expr()
    if p.peek()[0] != "eof":
        raise PromQLError(f"trailing input at token {p.i}: {p.peek()[1]!r}")
    return p.selectors
