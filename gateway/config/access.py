"""Config sections for access decisions: mapping rules, statements and their conditions."""

from __future__ import annotations

import ipaddress
import re
from typing import Any

from ..errors import ConfigError
from .reader import _Node, _kind, _pairs
from .schema import OPS, MappingConfig, Rule, Statement, TokenMapping, _HEADER


def _rule(value: Any, path: str) -> Rule:
    n = _Node(value, path)
    op = n.str("op", "equals", choices=OPS)
    claim = n.str("claim")
    role = n.str("role")
    if op == "exists":
        val = n.raw("value", None)
    elif op == "any_of":
        val = n.strs("value", nonempty=True)
    else:
        val = n.str("value", nonempty=op != "equals")
        if op == "regex":
            try:
                val = re.compile(val)
            except re.error as e:
                raise ConfigError(n.sub("value"), f"invalid regex: {e}")
    n.done()
    return Rule(claim=claim, op=op, value=val, role=role, path=path)


def _mapping(n: _Node) -> MappingConfig:
    mode = n.str("mode", "default", choices=("rules", "token", "default"))
    rules_raw = n.raw("rules", [])
    if not isinstance(rules_raw, list):
        raise ConfigError(n.sub("rules"), f"expected a list of rules, got {_kind(rules_raw)}")
    rules = tuple(_rule(r, f"{n.sub('rules')}[{i}]") for i, r in enumerate(rules_raw))
    t = n.node("token")
    token = TokenMapping(source=t.str("source", "groups", choices=("groups", "roles")),
                         groups_claim=t.str("groups_claim", "cognito:groups"),
                         group_to_role=_pairs(t, "group_to_role"),
                         role_arn_to_role=_pairs(t, "role_arn_to_role"),
                         precedence=t.strs("precedence", ()))
    t.done()
    rr = n.raw("role_request", {"header": "X-Gateway-Role"})
    header: str | None
    if rr is False:
        header = None
    else:
        rn = _Node(rr, n.sub("role_request"))
        header = rn.str("header", "X-Gateway-Role")
        if not _HEADER.match(header):
            raise ConfigError(rn.sub("header"), f"{header!r} is not a header name")
        rn.done()
    if mode == "rules" and not rules:
        raise ConfigError(n.sub("rules"), "mode: rules needs at least one rule")
    cfg = MappingConfig(mode=mode, on_ambiguous=n.str("on_ambiguous", "default_role",
                                                      choices=("default_role", "deny")),
                        rules=rules, token=token,
                        role_request_header=header.lower() if header else None)
    n.done()
    return cfg


_COND_BASE = ("StringEquals", "StringNotEquals", "StringLike", "StringNotLike",
              "StringEqualsIgnoreCase", "StringNotEqualsIgnoreCase",
              "NumericEquals", "NumericNotEquals", "NumericLessThan", "NumericLessThanEquals",
              "NumericGreaterThan", "NumericGreaterThanEquals",
              "DateEquals", "DateNotEquals", "DateLessThan", "DateLessThanEquals",
              "DateGreaterThan", "DateGreaterThanEquals",
              "Bool", "IpAddress", "NotIpAddress", "Null")
_COND_KEY = re.compile(r"^(jwt:.+|tag:.+|path:.+|req:source_ip|req:secure|req:time|req:header/.+)$")


def condition_operator_base(op: str) -> str:
    """Strip ``ForAnyValue:``/``ForAllValues:`` and ``IfExists`` from a condition operator."""
    base = op.split(":", 1)[1] if op.startswith(("ForAnyValue:", "ForAllValues:")) else op
    return base[:-len("IfExists")] if base.endswith("IfExists") else base


def _condition(value: Any, path: str) -> tuple[tuple[str, tuple[tuple[str, tuple[Any, ...]], ...]], ...]:
    n = _Node(value, path)
    out = []
    for op in n.data:
        n.seen.add(op)
        base = condition_operator_base(op)
        if base not in _COND_BASE or (base == "Null" and op != "Null"):
            raise ConfigError(f"{path}.{op}", f"unknown condition operator (supported: "
                                              f"{', '.join(_COND_BASE)}, with ForAnyValue:/"
                                              "ForAllValues: and ...IfExists)")
        kn = _Node(n.data[op], f"{path}.{op}")
        keys = []
        for key, vals in kn.data.items():
            kn.seen.add(key)
            kp = f"{path}.{op}.{key}"
            if not _COND_KEY.match(key):
                raise ConfigError(kp, "unknown condition key (jwt:<claim>, tag:<key>, "
                                      "path:<name>, req:source_ip, req:secure, req:time, "
                                      "req:header/<name>)")
            vals = vals if isinstance(vals, list) else [vals]
            for v in vals:
                if isinstance(v, (dict, list)) or v is None:
                    raise ConfigError(kp, "values must be scalars or a list of scalars")
            if base in ("IpAddress", "NotIpAddress"):
                try:
                    vals = [ipaddress.ip_network(str(v), strict=False) for v in vals]
                except ValueError as e:
                    raise ConfigError(kp, f"not an IP network: {e}")
            keys.append((key, tuple(vals)))
        out.append((op, tuple(keys)))
    return tuple(out)


def _statements(value: Any, path: str) -> tuple[Statement, ...]:
    if not isinstance(value, list):
        raise ConfigError(path, f"expected a list of statements, got {_kind(value)}")
    out = []
    for i, raw in enumerate(value):
        sp = f"{path}[{i}]"
        n = _Node(raw, sp)
        acts = n.raw("action")
        acts = [acts] if isinstance(acts, str) else acts
        res = n.raw("resource")
        res = [res] if isinstance(res, str) else res
        n.data["action"], n.data["resource"] = acts, res
        actions = n.strs("action", nonempty=True)
        resources = n.strs("resource", nonempty=True)
        for j, r in enumerate(resources):
            up, sep, pat = r.partition(":")
            if not sep or not pat.startswith("/") and pat != "*":
                raise ConfigError(f"{sp}.resource[{j}]", f"{r!r} must be <upstream id>:<path "
                                                         "pattern>, e.g. orders:/tenants/**")
        cond = n.raw("condition", {})
        st = Statement(sid=n.str("sid", None), effect=n.str("effect", choices=("allow", "deny")),
                       actions=tuple(a.lower() for a in actions), resources=resources,
                       condition=_condition(cond, n.sub("condition")), path=sp)
        n.done()
        out.append(st)
    return tuple(out)
