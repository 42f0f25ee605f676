"""Config lint: legal configs that probably do not do what their author meant (``poolgate check``).

Every finding is one string that starts with the key path it is about; findings that are
informational rather than suspicious say ``info:`` after the path. Hard errors (undefined
references, bad patterns) are ``ConfigError`` at load time, not lint.
"""

from __future__ import annotations

import fnmatch
import re

from .config import Config, Statement
from .patterns import PathPattern, PatternError, policy_variables

__all__ = ["ALWAYS_PRESENT_CLAIMS", "lint", "slow_regex"]

# claims every verified token carries (verification requires them)
ALWAYS_PRESENT_CLAIMS = frozenset({"sub", "iss", "exp"})
_MATCH_ALL = frozenset({".*", "(?s).*", "^.*$", ".*?", "(.*)"})
_KNOWN_KINDS = {"jwt", "tag", "path"}


def lint(config: Config) -> list[str]:
    out: list[str] = []
    _mappings(config, out)
    reach = _reachability(config, out)
    _roles(config, reach, out)
    _guardrails(config, out)
    _routes(config, out)
    return out


# --------------------------------------------------------------------------- mappings

def _always_true(claim: str, op: str, value: object) -> bool:
    if claim not in ALWAYS_PRESENT_CLAIMS:
        return False
    if op == "exists":
        return True
    return op == "regex" and getattr(value, "pattern", value) in _MATCH_ALL


def slow_regex(source: str) -> bool:
    """Whether a regex can backtrack super-linearly: a quantified group that itself holds an
    unbounded quantifier (``(a+)+``), or two unbounded quantifiers (``.*-.*``: O(n^2)).

    The one place poolgate still runs a configured regex on request data is a mapping rule's
    ``op: regex`` on a claim (path patterns, actions and StringLike are linear matchers).
    """
    unbounded, depth, in_class, esc = 0, 0, False, False
    group_unbounded: list[int] = []
    closed_with = -1
    for ch in source:
        if esc:
            esc = False
            continue
        if ch == "\\":
            esc = True
            continue
        if in_class:
            in_class = ch != "]"
            continue
        if ch == "[":
            in_class = True
        elif ch == "(":
            depth += 1
            group_unbounded.append(unbounded)
        elif ch == ")" and depth:
            depth -= 1
            closed_with = unbounded - group_unbounded.pop()
            continue
        elif ch in "*+" or ch == "{":
            if closed_with > 0:
                return True
            unbounded += 1
        closed_with = -1
    return unbounded >= 2


def _mappings(cfg: Config, out: list[str]) -> None:
    for src, m in cfg.mappings.items():
        base = f"mappings.{src}"
        for r in m.rules:
            src_text = getattr(r.value, "pattern", None)
            if r.op == "regex" and isinstance(src_text, str) and slow_regex(src_text):
                out.append(f"{r.path}.value: regex may backtrack (time super-linear in the "
                           "claim length); use starts_with/ends_with/any_of or a simpler regex")
        if m.mode != "rules" and m.rules:
            out.append(f"{base}.rules: ignored because mode is {m.mode}")
        if m.mode == "rules":
            catch_all = None
            for r in m.rules:
                if catch_all is not None:
                    out.append(f"{r.path}: unreachable: {catch_all} always matches first "
                               "(its role can still be requested through the role-request header)")
                elif _always_true(r.claim, r.op, r.value):
                    catch_all = r.path
        if m.mode == "token":
            t = m.token
            if t.source == "groups" and not t.group_to_role:
                out.append(f"{base}.token.group_to_role: empty: no user gets a role from groups")
            if t.source == "roles" and not t.role_arn_to_role:
                out.append(f"{base}.token.role_arn_to_role: empty: no user gets a role from "
                           "cognito:preferred_role / cognito:roles")
            mapped = {r for _, r in (t.group_to_role if t.source == "groups" else t.role_arn_to_role)}
            for i, role in enumerate(t.precedence):
                if role not in mapped:
                    out.append(f"{base}.token.precedence[{i}]: role {role!r} is never a "
                               "candidate (no group or ARN maps to it)")
        if (m.mode == "default" or m.on_ambiguous == "default_role") and cfg.default_role is None:
            out.append(f"{base}: falls back to default_role, which is not set: those users "
                       "get 403 no_role")


def _reachability(cfg: Config, out: list[str]) -> dict[str, set[str]]:
    """role -> how it can be reached: {"authenticated", "guest"}."""
    reach: dict[str, set[str]] = {name: set() for name in cfg.roles}

    def mark(role: str | None, how: str) -> None:
        if role in reach:
            reach[role].add(how)
    mark(cfg.default_role, "authenticated")
    mark(cfg.guest_role, "guest")
    for m in cfg.mappings.values():
        for r in m.rules:
            mark(r.role, "authenticated")
        for _, role in (*m.token.group_to_role, *m.token.role_arn_to_role):
            mark(role, "authenticated")
    for name, how in reach.items():
        if not how:
            out.append(f"roles.{name}: info: not referenced by any mapping, default_role or "
                       "guest_role: never assumed")
    return reach


# --------------------------------------------------------------------------- statements

def _route_captures(cfg: Config, upstream_glob: str) -> set[str]:
    names: set[str] = set()
    for r in cfg.routes:
        if r.upstream is not None and fnmatch.fnmatchcase(r.upstream, upstream_glob):
            names.update(r.path.names)
    return names


def _statement(cfg: Config, st: Statement, guest_only: bool, out: list[str]) -> None:
    tags = {t for pairs in cfg.principal_tags.values() for t, _ in pairs}
    globs = [r.partition(":")[0] for r in st.resources]
    for j, res in enumerate(st.resources):
        up, _, pat = res.partition(":")
        known = [*cfg.upstreams, *([cfg.middleware.service] if cfg.middleware.service else [])]
        if not any(fnmatch.fnmatchcase(u, up) for u in known):
            out.append(f"{st.path}.resource[{j}]: no upstream matches {up!r}")
        if "${" not in pat:
            try:
                PathPattern.compile(pat) if pat != "*" else None
            except PatternError as e:
                out.append(f"{st.path}.resource[{j}]: {e}")
    texts = [(f"{st.path}.resource[{j}]", r.partition(":")[2]) for j, r in enumerate(st.resources)]
    for op, keys in st.condition:
        for key, values in keys:
            where = f"{st.path}.condition.{op}.{key}"
            texts += [(where, v) for v in values if isinstance(v, str)]
            texts.append((where, f"${{{key}}}" if key.split(":")[0] in _KNOWN_KINDS else ""))
            if op.startswith("ForAllValues:") and key.split(":")[0] in _KNOWN_KINDS \
                    and key.partition(":")[2] not in ALWAYS_PRESENT_CLAIMS:
                out.append(f"{where}: ForAllValues is true when {key} is missing or empty; "
                           "add a Null condition or use ForAnyValue")
    seen: set[tuple[str, str, str | None]] = set()
    for where, text in texts:
        for kind, name in policy_variables(text):
            if (where, kind, name) in seen:
                continue
            seen.add((where, kind, name))
            var = f"${{{kind}}}" if name is None else f"${{{kind}:{name}}}"
            if kind not in ("jwt", "tag", "path", "role") or (kind == "role") != (name is None):
                out.append(f"{where}: unknown policy variable {var}: never resolves")
            elif kind == "path" and not any(name in _route_captures(cfg, g) for g in globs):
                out.append(f"{where}: {var} never resolves: no route to "
                           f"{'/'.join(sorted(set(globs)))} captures {{{name}}}")
            elif kind == "tag" and name not in tags:
                out.append(f"{where}: {var} never resolves: no principal_tags entry defines "
                           f"{name!r}")
            elif kind in ("jwt", "tag") and guest_only:
                out.append(f"{where}: {var} never resolves: this role is only assumed by "
                           "guests, who have no claims")


def _sids(statements: tuple[Statement, ...], out: list[str]) -> None:
    seen: dict[str, str] = {}
    for st in statements:
        if st.sid is None:
            continue
        if st.sid in seen:
            out.append(f"{st.path}.sid: duplicate sid {st.sid!r} (also {seen[st.sid]}): "
                       "decision traces cannot tell them apart")
        else:
            seen[st.sid] = st.path


def _roles(cfg: Config, reach: dict[str, set[str]], out: list[str]) -> None:
    for name, role in cfg.roles.items():
        if not role.statements:
            out.append(f"roles.{name}: has no statements: every policy route denies it")
        _sids(role.statements, out)
        for st in role.statements:
            _statement(cfg, st, reach.get(name) == {"guest"}, out)


def _guardrails(cfg: Config, out: list[str]) -> None:
    for i, g in enumerate(cfg.guardrails):
        if not any(fnmatch.fnmatchcase(r, pat) for r in cfg.roles for pat in g.roles):
            out.append(f"guardrails[{i}].applies_to.roles: info: matches no role")
        _sids(g.statements, out)
        for st in g.statements:
            _statement(cfg, st, False, out)


# --------------------------------------------------------------------------- routes

def _routes(cfg: Config, out: list[str]) -> None:
    named = [r.partition(":")[0] for role in cfg.roles.values() for st in role.statements
             for r in st.resources]
    for i, route in enumerate(cfg.routes):
        up = route.upstream or ""
        if route.auth == "policy" and not any(fnmatch.fnmatchcase(up, g) for g in named):
            out.append(f"routes[{i}].upstream: no role's statements mention upstream {up!r}: "
                       "this policy route denies everyone")
        if route.required_scopes:
            ids = route.identity_sources or tuple(s.id for s in cfg.identity_sources)
            for s in cfg.identity_sources:
                if s.id in ids and s.cognito and set(s.token_use) == {"id"}:
                    out.append(f"routes[{i}].required_scopes: identity source {s.id} accepts "
                               "only id tokens, which carry no scope: always 403 missing_scope")
        if route.action is not None and not re.fullmatch(r"[^:\s]+:[^:\s]+", route.action):
            out.append(f"routes[{i}].action: {route.action!r} is not <service>:<Action>")
