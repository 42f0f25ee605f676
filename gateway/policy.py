"""Step 4b, authorize: a role's statements, variables, conditions and guardrails -> Decision. Pure.

Everything is compiled once from the config; per request only linear-time matchers run (no
regular expression sees request data). A resource with policy variables compares each
variable's value, literally, against the percent-decoded path segment (patterns.py).
"""

from __future__ import annotations

import fnmatch
import itertools
import re
from collections.abc import Mapping
from typing import Any

from .conditions import Condition, Context, compile_conditions, conditions_hold
from .config import Config, Route, Statement
from .errors import BadRequest, ConfigError, GatewayError
from .patterns import (VARIABLE_RE, Glob, PathPattern, PatternError, decoded_segment,
                       segment_value_ok, split_path)
from .principal import Decision, RequestFacts

__all__ = ["PolicyEngine", "scopes_satisfied"]

_MAX_EXPANSIONS = 64
_PERMS_CACHE = 1024                           # per (role, upstream) plan
_UNSAFE_IN_PERMS = re.compile(r"[*{}?\[\]]")    # would read as a wildcard downstream


def _glob(patterns: tuple[str, ...], flags: int = 0) -> re.Pattern[str]:
    return re.compile("|".join(fnmatch.translate(p) for p in patterns), flags)


def scopes_satisfied(route: Route, scopes: tuple[str, ...], token_use: str | None) -> bool:
    """Route ``required_scopes`` (any-of), from an access token's ``scope`` only.

    ``token_use`` None (generic OIDC, which has no such claim) is judged by its scopes.
    """
    if not route.required_scopes:
        return True
    if token_use not in (None, "access"):
        return False
    return any(s in route.required_scopes for s in scopes)


class _Resource:
    """One ``<upstream glob>:<path pattern>``; variables are compared against decoded segments."""

    __slots__ = ("path", "pattern", "raw", "upstream", "vars")

    def __init__(self, raw: str, where: str) -> None:
        self.raw = raw
        self.upstream, _, self.path = raw.partition(":")
        self.pattern: PathPattern | None = None      # None: "<upstream>:*", every path
        if "${" in self.upstream:
            raise ConfigError(where, "policy variables are not allowed in the upstream part")
        self.vars: tuple[tuple[str, str | None], ...] = ()
        if self.path == "*":
            return
        try:
            self.pattern = PathPattern.compile(self.path, variables=True)
        except PatternError as e:
            raise ConfigError(where, str(e))
        self.vars = self.pattern.variables

    def expansions(self, ctx: Context) -> list[tuple[str, ...] | None]:
        """Value tuples for the variables (one per list-claim combination); None = unresolved
        or a value that can never name a path segment (``/``, control characters, empty)."""
        values = []
        for kind, name in self.vars:
            v = ctx.variable(kind, name)
            if v is None:
                return [None]
            if kind == "path":                   # a captured segment: compare it decoded too
                v = tuple(d if (d := decoded_segment(x)) is not None else "" for x in v)
            values.append(v)
        total = 1
        for v in values:
            total *= len(v)
        if total > _MAX_EXPANSIONS:
            return [None]
        return [combo if all(segment_value_ok(x) for x in combo) else None
                for combo in itertools.product(*values)]

    def text(self, combo: tuple[str, ...]) -> str:
        it = iter(combo)
        return self.upstream + ":" + VARIABLE_RE.sub(lambda m: next(it), self.path)


class _Compiled:
    __slots__ = ("actions", "conditions", "deny", "label", "resources", "st")

    def __init__(self, st: Statement) -> None:
        self.st, self.label, self.deny = st, st.label, st.effect == "deny"
        # the method is request data: linear globs, never a regex (case-insensitive)
        self.actions = tuple(Glob.of(a.lower()) for a in st.actions)
        self.resources = tuple(_Resource(r, f"{st.path}.resource[{j}]")
                               for j, r in enumerate(st.resources))
        self.conditions: tuple[Condition, ...] = compile_conditions(st)

    def for_upstream(self, upstream: str) -> tuple[_Resource, ...]:
        return tuple(r for r in self.resources if fnmatch.fnmatchcase(upstream, r.upstream))


class _Bound:
    """A statement restricted to the resources that name one upstream."""

    __slots__ = ("c", "deny", "label", "resources")

    def __init__(self, c: _Compiled, resources: tuple[_Resource, ...]) -> None:
        self.c, self.resources, self.label, self.deny = c, resources, c.label, c.deny

    def matches(self, ctx: Context, actions: tuple[str, ...], segs: list[str]) -> bool:
        globs = self.c.actions
        if not any(g.match(a) for a in actions for g in globs):
            return False
        if not self._resource_matches(ctx, segs):
            return False
        return not self.c.conditions or conditions_hold(self.c.conditions, ctx, self.deny)

    def _resource_matches(self, ctx: Context, segs: list[str]) -> bool:
        for r in self.resources:
            pattern = r.pattern
            if pattern is None:
                return True
            if not r.vars:
                if pattern.match_segments(segs):
                    return True
                continue
            for combo in r.expansions(ctx):
                if combo is None:
                    if self.deny:                # fail closed
                        return True
                    continue
                if pattern.match_segments(segs, None, combo):
                    return True
        return False


class _Plan:
    """Per (role, upstream): the statements that can matter, split by kind."""

    __slots__ = ("allows", "denies", "guard_allows", "headers", "own", "perms", "perms_cache",
                 "variables")

    def __init__(self, own: tuple[_Bound, ...], denies: tuple[_Bound, ...],
                 guard_allows: tuple[tuple[str, tuple[_Bound, ...]], ...]) -> None:
        self.own, self.denies, self.guard_allows = own, denies, guard_allows
        self.allows = tuple(b for b in own if not b.deny)
        self.perms: tuple[dict[str, Any], ...] | None = None     # static roles: computed once
        self.variables = tuple(dict.fromkeys(v for b in own for r in b.resources for v in r.vars))
        self.perms_cache: dict[tuple[Any, ...], tuple[dict[str, Any], ...]] = {}
        # the headers any condition here reads: several values for one of them is a 400
        self.headers = frozenset(
            c.header for b in (*own, *denies, *(x for _, g in guard_allows for x in g))
            for c in b.c.conditions if c.header is not None)

    def permissions(self, ctx: Context) -> tuple[dict[str, Any], ...]:
        """Dynamic permissions, cached per the values of the variables they use (bounded)."""
        key = tuple(ctx.variable(kind, name) for kind, name in self.variables)
        perms = self.perms_cache.get(key)
        if perms is None:
            if len(self.perms_cache) >= _PERMS_CACHE:
                self.perms_cache.clear()
            perms = self.perms_cache[key] = PolicyEngine._perms(self.own, ctx)
        return perms


class PolicyEngine:
    """Evaluates a role's statements and the applicable guardrails for one request."""

    def __init__(self, config: Config, *, cache_size: int = 4096) -> None:
        self._roles = {name: tuple(_Compiled(s) for s in role.statements)
                       for name, role in config.roles.items()}
        self._guardrails = tuple((g.name, _glob(g.roles), tuple(_Compiled(s) for s in g.statements))
                                 for g in config.guardrails)
        self._plans: dict[tuple[str, str], _Plan] = {}
        del cache_size                       # kept for callers: nothing is compiled per request

    # ------------------------------------------------------------------ building plans

    def _plan(self, role: str, upstream: str) -> _Plan:
        plan = self._plans.get((role, upstream))
        if plan is None:
            plan = self._plans[(role, upstream)] = self._build_plan(role, upstream)
        return plan

    def _build_plan(self, role: str, upstream: str) -> _Plan:
        def bind(cs: tuple[_Compiled, ...]) -> list[_Bound]:
            return [_Bound(c, rs) for c in cs if (rs := c.for_upstream(upstream))]
        own = bind(self._roles.get(role, ()))
        denies = [b for b in own if b.deny]
        guard_allows = []
        for name, applies, stmts in self._guardrails:
            if not applies.match(role):
                continue
            bound = bind(stmts)
            denies += [b for b in bound if b.deny]
            if any(not c.deny for c in stmts):
                guard_allows.append((name, tuple(b for b in bound if not b.deny)))
        plan = _Plan(tuple(own), tuple(denies), tuple(guard_allows))
        if all(not r.vars for b in own for r in b.resources):
            plan.perms = self._perms(plan.own, None)
        return plan

    # ------------------------------------------------------------------ evaluation

    def evaluate(self, *, role: str | None, route: Route, upstream: str, facts: RequestFacts,
                 claims: Mapping[str, Any], tags: Mapping[str, str],
                 path_params: Mapping[str, str], scopes: tuple[str, ...],
                 token_use: str | None, decision_id: str) -> Decision:
        """The decision for one request; pure, never raises for a request."""
        if route.required_scopes and not scopes_satisfied(route, scopes, token_use):
            return Decision(decision_id, False, role, "missing_scope",
                            detail=f"route {route.id} requires one of the scopes "
                                   f"{', '.join(route.required_scopes)} in an access token")
        if role is None:
            return Decision(decision_id, False, None, "no_role",
                            detail="no role was mapped for this caller")
        try:
            return self._decide(role, route, upstream, facts, claims, tags, path_params,
                                decision_id)
        except GatewayError:
            raise
        except Exception as e:  # noqa: BLE001 -- a bug must fail closed, never 5xx or allow
            return Decision(decision_id, False, role, "policy_error",
                            detail=f"policy evaluation failed ({type(e).__name__}): denied")

    def _decide(self, role: str, route: Route, upstream: str, facts: RequestFacts,
                claims: Mapping[str, Any], tags: Mapping[str, str],
                path_params: Mapping[str, str], decision_id: str) -> Decision:
        method = facts.method
        plan = self._plan(role, upstream)
        if plan.headers and facts.ambiguous and not plan.headers.isdisjoint(facts.ambiguous):
            names = ", ".join(sorted(plan.headers & facts.ambiguous))
            raise BadRequest(f"more than one value for {names}, which this route's policy reads",
                             code="ambiguous_header")
        actions = ("http:" + method.lower(),) if route.action is None else (
            "http:" + method.lower(), route.action.lower())
        ctx = Context(role, claims, tags, path_params, facts)
        path = facts.path
        segs = split_path(path)                  # once: every statement reads these segments
        denies = tuple(b.label for b in plan.denies if b.matches(ctx, actions, segs))
        if denies:
            return Decision(decision_id, False, role, "explicit_deny", statements=denies,
                            detail=f"{', '.join(denies)} denies {method} {path} on {upstream}")
        allows = tuple(b.label for b in plan.allows if b.matches(ctx, actions, segs))
        if not allows:
            return Decision(decision_id, False, role, "no_allow",
                            detail=f"no statement of role {role} allows {method} {path} "
                                   f"on {upstream}")
        for name, stmts in plan.guard_allows:
            g = tuple(b.label for b in stmts if b.matches(ctx, actions, segs))
            if not g:
                return Decision(decision_id, False, role, "no_allow", statements=allows,
                                detail=f"guardrail {name} does not allow {method} {path} "
                                       f"on {upstream}")
            allows += g
        perms = plan.perms if plan.perms is not None else plan.permissions(ctx)
        return Decision(decision_id, True, role, "allowed", statements=allows,
                        detail=f"{', '.join(allows)} allows {method} {path} on {upstream}",
                        permissions=perms)

    # ------------------------------------------------------------------ permissions

    def permissions(self, role: str, upstream: str, claims: Mapping[str, Any],
                    tags: Mapping[str, str], path_params: Mapping[str, str]) -> tuple[dict[str, Any], ...]:
        """The role's statements naming ``upstream``, variables substituted (credential ``perms``).

        Treat the returned dicts as read-only: static roles share them between requests.
        """
        plan = self._plan(role, upstream)
        if plan.perms is not None:
            return plan.perms
        ctx = Context(role, claims, tags, path_params,
                      RequestFacts(method="GET", path="/", source_ip="", secure=False, now=0.0))
        return plan.permissions(ctx)

    @staticmethod
    def _perms(bound: tuple[_Bound, ...], ctx: Context | None) -> tuple[dict[str, Any], ...]:
        out = []
        for b in bound:
            res: list[str] = []
            for r in b.resources:
                if not r.vars:
                    res.append(r.raw)
                    continue
                assert ctx is not None
                for combo in r.expansions(ctx):
                    if combo is not None and not any(_UNSAFE_IN_PERMS.search(v) for v in combo):
                        res.append(r.text(combo))
                    elif b.deny:                 # shown as broad as it is enforced
                        res.append(r.upstream + ":/**")
            if res:
                st = b.c.st
                perm: dict[str, Any] = {"sid": b.label, "effect": st.effect,
                                        "action": list(st.actions),
                                        "resource": list(dict.fromkeys(res))}
                if st.condition:
                    # as configured (variables unsubstituted): never broader than enforced
                    perm["condition"] = {op: {k: [str(v) for v in vals] for k, vals in keys}
                                         for op, keys in st.condition}
                out.append(perm)
        return tuple(out)
